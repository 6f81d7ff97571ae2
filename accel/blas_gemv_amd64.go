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

// gemvDot4 computes four dot products of rows of A with x: see
// gemvDot4Generic. The kernels take the columns in multiples of their
// width; the rest are added here.
func gemvDot4(n int, a []float64, lda int, x []float64, dst *[4]float64) {
	var nv int
	switch {
	case useAVX512:
		nv = n &^ 15
	case useAVX2:
		nv = n &^ 7
	}
	if nv == 0 {
		gemvDot4Generic(n, a, lda, x, dst)
		return
	}
	_, _ = a[3*lda+n-1], x[n-1] // the kernels do no bounds checks
	if useAVX512 {
		gemvDot4AVX512(nv, &a[0], lda, &x[0], dst)
	} else {
		gemvDot4AVX2(nv, &a[0], lda, &x[0], dst)
	}
	if nv < n {
		var tail [4]float64
		gemvDot4Generic(n-nv, a[nv:], lda, x[nv:], &tail)
		for r := range dst {
			dst[r] += tail[r]
		}
	}
}

// gemvAxpy4 adds four scaled rows of A to y: see gemvAxpy4Generic.
func gemvAxpy4(n int, a []float64, lda int, s *[4]float64, y []float64) {
	var nv int
	switch {
	case useAVX512:
		nv = n &^ 15
	case useAVX2:
		nv = n &^ 7
	}
	if nv > 0 {
		_, _ = a[3*lda+n-1], y[n-1] // the kernels do no bounds checks
		if useAVX512 {
			gemvAxpy4AVX512(nv, &a[0], lda, s, &y[0])
		} else {
			gemvAxpy4AVX2(nv, &a[0], lda, s, &y[0])
		}
	}
	if nv < n {
		gemvAxpy4Generic(n-nv, a[nv:], lda, s, y[nv:])
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
	var nv int
	switch {
	case useAVX512:
		nv = n &^ 15
	case useAVX2:
		nv = n &^ 7
	}
	if nv > 0 {
		_, _ = a[3*lda+n-1], y[n-1] // the kernels do no bounds checks
		if useAVX512 {
			gemvGer4AVX512(nv, &a[0], lda, s, &y[0])
		} else {
			gemvGer4AVX2(nv, &a[0], lda, s, &y[0])
		}
	}
	if nv < n {
		gemvGer4Generic(n-nv, a[nv:], lda, s, y[nv:])
	}
}
