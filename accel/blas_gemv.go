package accel

// This file holds the matrix-vector products behind Implementation.Dgemv and
// the rank-one update behind Implementation.Dger. gonum's LAPACK calls Dgemv
// for half the work of a bidiagonal or tridiagonal reduction (Dlabrd,
// Dlatrd), and both for every Householder reflection applied one at a time
// (Dlarf: the unblocked QR and bidiagonal panels).

// minParallelGemv is the size m·n from which matrix-vector products are
// split across goroutines: 1 MiB of A, about 100 µs of work.
const minParallelGemv = 1 << 17

// gemvThreads returns how many goroutines a matrix-vector product of the
// given size (m·n) should use to split total rows or columns, and when that
// is more than one, claims the parallel slot: the caller must then run
// gemvSplit and release it with parallelBusy.Store(false).
func gemvThreads(size, total int) int {
	nt := min(Threads(), total/16)
	if nt < 2 || size < minParallelGemv || !parallelBusy.CompareAndSwap(false, true) {
		return 1
	}
	return nt
}

// gemvSplit splits [0, total) into nt chunks, multiples of 16 long, and
// runs f on each in parallel.
func gemvSplit(nt, total int, f func(lo, hi int)) {
	step := (total + nt - 1) / nt
	step = (step + 15) &^ 15
	parallel(nt, nil, func(t int) {
		if lo, hi := t*step, min(total, (t+1)*step); lo < hi {
			f(lo, hi)
		}
	})
}

// gemvN computes y = alpha·A·x + beta·y for a row-major m×n matrix A with
// stride lda and unit-stride x (n) and y (m), not reading y when beta == 0.
// Arguments are checked, m, n > 0. Large products split the rows across
// goroutines.
func gemvN(m, n int, alpha float64, a []float64, lda int, x []float64, beta float64, y []float64) {
	if nt := gemvThreads(m*n, m); nt > 1 {
		defer parallelBusy.Store(false)
		gemvSplit(nt, m, func(lo, hi int) {
			gemvNSerial(hi-lo, n, alpha, a[lo*lda:], lda, x, beta, y[lo:hi])
		})
		return
	}
	gemvNSerial(m, n, alpha, a, lda, x, beta, y)
}

// gemvNSerial is gemvN on the caller's goroutine.
func gemvNSerial(m, n int, alpha float64, a []float64, lda int, x []float64, beta float64, y []float64) {
	var dots [4]float64
	i := 0
	for ; i+4 <= m; i += 4 {
		gemvDot4(n, a[i*lda:], lda, x, &dots)
		for r, d := range dots {
			if beta == 0 {
				y[i+r] = alpha * d
			} else {
				y[i+r] = alpha*d + beta*y[i+r]
			}
		}
	}
	for ; i < m; i++ {
		var d float64
		for j, v := range a[i*lda : i*lda+n] {
			d += v * x[j]
		}
		if beta == 0 {
			y[i] = alpha * d
		} else {
			y[i] = alpha*d + beta*y[i]
		}
	}
}

// gemvT computes y = alpha·Aᵀ·x + beta·y for a row-major m×n matrix A with
// stride lda and unit-stride x (m) and y (n), not reading y when beta == 0.
// Arguments are checked, m, n > 0. Large products split the columns of A
// (the elements of y) across goroutines.
func gemvT(m, n int, alpha float64, a []float64, lda int, x []float64, beta float64, y []float64) {
	if nt := gemvThreads(m*n, n); nt > 1 {
		defer parallelBusy.Store(false)
		gemvSplit(nt, n, func(lo, hi int) {
			gemvTSerial(m, hi-lo, alpha, a[lo:], lda, x, beta, y[lo:hi])
		})
		return
	}
	gemvTSerial(m, n, alpha, a, lda, x, beta, y)
}

// gemvTSerial is gemvT on the caller's goroutine.
func gemvTSerial(m, n int, alpha float64, a []float64, lda int, x []float64, beta float64, y []float64) {
	y = y[:n]
	switch beta {
	case 0:
		clear(y)
	case 1:
	default:
		for j := range y {
			y[j] *= beta
		}
	}
	var s [4]float64
	i := 0
	for ; i+4 <= m; i += 4 {
		s = [4]float64{alpha * x[i], alpha * x[i+1], alpha * x[i+2], alpha * x[i+3]}
		gemvAxpy4(n, a[i*lda:], lda, &s, y)
	}
	for ; i < m; i++ {
		xi := alpha * x[i]
		for j, v := range a[i*lda : i*lda+n] {
			y[j] += xi * v
		}
	}
}

// gemvDot4Generic is
//
//	for r := 0; r < 4; r++ {
//		dst[r] = 0
//		for j := 0; j < n; j++ {
//			dst[r] += a[r*lda+j] * x[j]
//		}
//	}
func gemvDot4Generic(n int, a []float64, lda int, x []float64, dst *[4]float64) {
	a0, a1, a2, a3 := a[:n], a[lda:lda+n], a[2*lda:2*lda+n], a[3*lda:3*lda+n]
	x = x[:n]
	var s0, s1, s2, s3 float64
	for j, xj := range x {
		s0 += a0[j] * xj
		s1 += a1[j] * xj
		s2 += a2[j] * xj
		s3 += a3[j] * xj
	}
	*dst = [4]float64{s0, s1, s2, s3}
}

// gemvAxpy4Generic is
//
//	for j := 0; j < n; j++ {
//		y[j] += s[0]*a[j] + s[1]*a[lda+j] + s[2]*a[2*lda+j] + s[3]*a[3*lda+j]
//	}
func gemvAxpy4Generic(n int, a []float64, lda int, s *[4]float64, y []float64) {
	a0, a1, a2, a3 := a[:n], a[lda:lda+n], a[2*lda:2*lda+n], a[3*lda:3*lda+n]
	y = y[:n]
	s0, s1, s2, s3 := s[0], s[1], s[2], s[3]
	for j := range y {
		y[j] += s0*a0[j] + s1*a1[j] + s2*a2[j] + s3*a3[j]
	}
}

// ger computes A += alpha·x·yᵀ for a row-major m×n matrix A with stride lda
// and unit-stride x (m) and y (n). Arguments are checked, m, n > 0. Large
// updates split the rows across goroutines.
func ger(m, n int, alpha float64, x, y, a []float64, lda int) {
	if nt := gemvThreads(m*n, m); nt > 1 {
		defer parallelBusy.Store(false)
		gemvSplit(nt, m, func(lo, hi int) {
			gerSerial(hi-lo, n, alpha, x[lo:hi], y, a[lo*lda:], lda)
		})
		return
	}
	gerSerial(m, n, alpha, x, y, a, lda)
}

// gerSerial is ger on the caller's goroutine.
func gerSerial(m, n int, alpha float64, x, y, a []float64, lda int) {
	var s [4]float64
	i := 0
	for ; i+4 <= m; i += 4 {
		s = [4]float64{alpha * x[i], alpha * x[i+1], alpha * x[i+2], alpha * x[i+3]}
		gemvGer4(n, a[i*lda:], lda, &s, y)
	}
	for ; i < m; i++ {
		xi := alpha * x[i]
		row := a[i*lda : i*lda+n]
		for j, v := range y[:n] {
			row[j] += xi * v
		}
	}
}

// gemvGer4Generic is
//
//	for r := 0; r < 4; r++ {
//		for j := 0; j < n; j++ {
//			a[r*lda+j] += s[r] * y[j]
//		}
//	}
func gemvGer4Generic(n int, a []float64, lda int, s *[4]float64, y []float64) {
	a0, a1, a2, a3 := a[:n], a[lda:lda+n], a[2*lda:2*lda+n], a[3*lda:3*lda+n]
	y = y[:n]
	s0, s1, s2, s3 := s[0], s[1], s[2], s[3]
	for j, v := range y {
		a0[j] += s0 * v
		a1[j] += s1 * v
		a2[j] += s2 * v
		a3[j] += s3 * v
	}
}
