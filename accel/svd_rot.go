package accel

// Rotation kernels of the bidiagonal QR iteration (see svd_bdsqr.go). A
// sequence of count plane rotations runs down (forward) or up (backward) a
// strip of adjacent rows; the row shared by consecutive rotations is carried
// in registers by the assembly kernels, so each rotation costs one load and
// one store per entry. rotStrip is the strip width of the kernels.

// rotSeqFwdGeneric is
//
//	for k := 0; k < len(cs)/2; k++ {
//		c, s := cs[2*k], cs[2*k+1]
//		for i := 0; i < w; i++ {
//			x, y := a[k*lda+i], a[(k+1)*lda+i]
//			a[k*lda+i], a[(k+1)*lda+i] = c*x+s*y, c*y-s*x
//		}
//	}
func rotSeqFwdGeneric(a []float64, lda, w int, cs []float64) {
	count := len(cs) / 2
	for k := 0; k < count; k++ {
		c, s := cs[2*k], cs[2*k+1]
		if s == 0 && c == 1 {
			continue
		}
		rotPair(c, s, a[k*lda:k*lda+w], a[(k+1)*lda:(k+1)*lda+w])
	}
}

// rotSeqBwdGeneric is rotSeqFwdGeneric with k running from len(cs)/2−1
// down to 0.
func rotSeqBwdGeneric(a []float64, lda, w int, cs []float64) {
	for k := len(cs)/2 - 1; k >= 0; k-- {
		c, s := cs[2*k], cs[2*k+1]
		if s == 0 && c == 1 {
			continue
		}
		rotPair(c, s, a[k*lda:k*lda+w], a[(k+1)*lda:(k+1)*lda+w])
	}
}

// rotPair is
//
//	for i := range x {
//		x[i], y[i] = c*x[i]+s*y[i], c*y[i]-s*x[i]
//	}
func rotPair(c, s float64, x, y []float64) {
	y = y[:len(x)]
	for i, a := range x {
		b := y[i]
		x[i] = c*a + s*b
		y[i] = c*b - s*a
	}
}
