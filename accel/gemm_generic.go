package accel

// gemmGeneric is the pure-Go implementation of C = alpha·op(A)·op(B) + beta·C
// behind Dgemm and Sgemm. It is always compiled: it is the implementation on
// platforms without assembly and with the purego tag, and tests compare the
// assembly paths against it. Arguments are checked, m, n, k > 0, alpha ≠ 0.
func gemmGeneric[T float32 | float64](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	scaleC(m, n, beta, c, ldc)
	for i := 0; i < m; i++ {
		crow := c[i*ldc : i*ldc+n]
		for p := 0; p < k; p++ {
			var aip T
			if tA {
				aip = a[p*lda+i]
			} else {
				aip = a[i*lda+p]
			}
			aip *= alpha
			if tB {
				for j := range crow {
					crow[j] += aip * b[j*ldb+p]
				}
			} else {
				brow := b[p*ldb : p*ldb+n]
				for j := range crow {
					crow[j] += aip * brow[j]
				}
			}
		}
	}
}

func dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	gemmGeneric(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmGeneric(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
