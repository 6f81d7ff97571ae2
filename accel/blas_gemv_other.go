//go:build !amd64 || purego

package accel

// gemvDot4 computes four dot products of rows of A with x: see gemvDot4Generic.
func gemvDot4(n int, a []float64, lda int, x []float64, dst *[4]float64) {
	gemvDot4Generic(n, a, lda, x, dst)
}

// gemvAxpy4 adds four scaled rows of A to y: see gemvAxpy4Generic.
func gemvAxpy4(n int, a []float64, lda int, s *[4]float64, y []float64) {
	gemvAxpy4Generic(n, a, lda, s, y)
}

// gemvGer4 adds s[r]·y to four rows of A: see gemvGer4Generic.
func gemvGer4(n int, a []float64, lda int, s *[4]float64, y []float64) {
	gemvGer4Generic(n, a, lda, s, y)
}
