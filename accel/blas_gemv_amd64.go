//go:build !purego

package accel

// gemvDot4AVX512 is, for n a multiple of 16,
//
//	for r := 0; r < 4; r++ {
//		dst[r] = 0
//		for j := 0; j < n; j++ {
//			dst[r] += a[r*lda+j] * x[j]
//		}
//	}
//
//go:noescape
func gemvDot4AVX512(n int, a *float64, lda int, x *float64, dst *[4]float64)

// gemvDot4AVX2 is gemvDot4AVX512 for n a multiple of 8.
//
//go:noescape
func gemvDot4AVX2(n int, a *float64, lda int, x *float64, dst *[4]float64)

// gemvAxpy4AVX512 is, for n a multiple of 16,
//
//	for j := 0; j < n; j++ {
//		y[j] += s[0]*a[j] + s[1]*a[lda+j] + s[2]*a[2*lda+j] + s[3]*a[3*lda+j]
//	}
//
//go:noescape
func gemvAxpy4AVX512(n int, a *float64, lda int, s *[4]float64, y *float64)

// gemvAxpy4AVX2 is gemvAxpy4AVX512 for n a multiple of 8.
//
//go:noescape
func gemvAxpy4AVX2(n int, a *float64, lda int, s *[4]float64, y *float64)

// gemvCols cuts n columns for the vector kernels: [0, n16) go to the
// AVX-512 kernel (a multiple of 16; none without AVX-512), [n16, n8) to the
// AVX2 one (8 columns at most after the AVX-512 part, a multiple of 8), and
// [n8, n) to the generic loop. A panel of 8–15 columns (the QR's
// reflector updates) so still runs on vectors when AVX-512 is there.
func gemvCols(n int) (n16, n8 int) {
	if useAVX512 {
		n16 = n &^ 15
	}
	n8 = n16
	if useAVX2 {
		n8 = n &^ 7
	}
	return n16, n8
}

// gemvDot4 computes four dot products of rows of A with x: see
// gemvDot4Generic. The kernels take the columns in multiples of their
// width; the rest are added here.
func gemvDot4(n int, a []float64, lda int, x []float64, dst *[4]float64) {
	n16, n8 := gemvCols(n)
	if n8 == 0 {
		gemvDot4Generic(n, a, lda, x, dst)
		return
	}
	_, _ = a[3*lda+n-1], x[n-1] // the kernels do no bounds checks
	if n16 > 0 {
		gemvDot4AVX512(n16, &a[0], lda, &x[0], dst)
	} else {
		*dst = [4]float64{}
	}
	var tail [4]float64
	if n8 > n16 {
		gemvDot4AVX2(n8-n16, &a[n16], lda, &x[n16], &tail)
		for r := range dst {
			dst[r] += tail[r]
		}
	}
	if n8 < n {
		gemvDot4Generic(n-n8, a[n8:], lda, x[n8:], &tail)
		for r := range dst {
			dst[r] += tail[r]
		}
	}
}

// gemvAxpy4 adds four scaled rows of A to y: see gemvAxpy4Generic.
func gemvAxpy4(n int, a []float64, lda int, s *[4]float64, y []float64) {
	gemvRows4(n, a, lda, s, y, gemvAxpy4AVX512, gemvAxpy4AVX2, gemvAxpy4Generic)
}

// gemvRows4 runs a kernel on four rows of A, a scale per row and a vector y
// (gemvAxpy4, gemvGer4) over the columns as gemvCols cuts them: k512 on the
// first, k2 on the next, gen on the rest.
func gemvRows4(n int, a []float64, lda int, s *[4]float64, y []float64,
	k512, k2 func(n int, a *float64, lda int, s *[4]float64, y *float64),
	gen func(n int, a []float64, lda int, s *[4]float64, y []float64)) {
	n16, n8 := gemvCols(n)
	if n8 > 0 {
		_, _ = a[3*lda+n-1], y[n-1] // the kernels do no bounds checks
	}
	if n16 > 0 {
		k512(n16, &a[0], lda, s, &y[0])
	}
	if n8 > n16 {
		k2(n8-n16, &a[n16], lda, s, &y[n16])
	}
	if n8 < n {
		gen(n-n8, a[n8:], lda, s, y[n8:])
	}
}

// gemvGer4AVX512 is, for n a multiple of 16,
//
//	for r := 0; r < 4; r++ {
//		for j := 0; j < n; j++ {
//			a[r*lda+j] += s[r] * y[j]
//		}
//	}
//
//go:noescape
func gemvGer4AVX512(n int, a *float64, lda int, s *[4]float64, y *float64)

// gemvGer4AVX2 is gemvGer4AVX512 for n a multiple of 8.
//
//go:noescape
func gemvGer4AVX2(n int, a *float64, lda int, s *[4]float64, y *float64)

// gemvGer4 adds s[r]·y to four rows of A: see gemvGer4Generic.
func gemvGer4(n int, a []float64, lda int, s *[4]float64, y []float64) {
	gemvRows4(n, a, lda, s, y, gemvGer4AVX512, gemvGer4AVX2, gemvGer4Generic)
}
