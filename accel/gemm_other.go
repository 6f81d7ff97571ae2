//go:build !amd64 || purego

package accel

// dgemm is Dgemm after the argument checks and special cases.
func dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if tB {
		mr := 4
		if dgemmDotRows(2*mr, tA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
			return
		}
	}
	gemmGeneric(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemm is Sgemm after the argument checks and special cases.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmGeneric(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
