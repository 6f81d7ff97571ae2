package accel

import "fmt"

// ArgError is the value accel panics with when a routine is called with
// arguments that cannot describe valid matrices: a negative size, a leading
// dimension smaller than a row, a slice too short for its matrix.
type ArgError struct {
	Func string // routine, e.g. "Dgemm"
	Arg  string // offending argument, e.g. "lda"
	Msg  string // what is wrong, with the values
}

func (e ArgError) Error() string {
	return fmt.Sprintf("accel: %s: bad %s: %s", e.Func, e.Arg, e.Msg)
}

// Dgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// op(X) = X or Xᵀ per tA/tB. op(A) is m×k, op(B) is k×n, C is m×n;
// lda/ldb/ldc are row strides.
//
// A is stored m×k (k×m when tA) and B k×n (n×k when tB), so lda must be at
// least the stored row width (max(1, k) or max(1, m)), and likewise ldb and
// ldc ≥ max(1, n). It is
//
//	for i := 0; i < m; i++ {
//		for j := 0; j < n; j++ {
//			var s float64
//			for p := 0; p < k; p++ {
//				s += opA(i, p) * opB(p, j)
//			}
//			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
//		}
//	}
//
// except that when beta == 0, C is not read (it may hold NaN), and when
// alpha == 0 or k == 0, A and B are not read and C is only scaled by beta.
// The sums are formed in a blocked order, so results may differ from the
// loop above in the last bits. Large products run on up to [SetThreads]
// goroutines.
func Dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	checkGemm("Dgemm", tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Sgemm is [Dgemm] for float32: C = alpha·op(A)·op(B) + beta·C with the same
// shapes, strides, argument checks and special cases. Products are
// accumulated in float32.
func Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm("Sgemm", tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGemm panics with an ArgError if the arguments cannot describe
// op(A) m×k, op(B) k×n and C m×n stored row-major with the given strides.
func checkGemm(fn string, tA, tB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) {
	bad := func(arg, format string, args ...any) {
		panic(ArgError{Func: fn, Arg: arg, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case m < 0:
		bad("m", "m = %d < 0", m)
	case n < 0:
		bad("n", "n = %d < 0", n)
	case k < 0:
		bad("k", "k = %d < 0", k)
	}
	// Stored shapes: A is ra×ca, B is rb×cb.
	ra, ca := m, k
	if tA {
		ra, ca = k, m
	}
	rb, cb := k, n
	if tB {
		rb, cb = n, k
	}
	if lda < max(1, ca) {
		bad("lda", "lda = %d < max(1, %d), the row width of A stored %d×%d (tA=%t)", lda, ca, ra, ca, tA)
	}
	if ldb < max(1, cb) {
		bad("ldb", "ldb = %d < max(1, %d), the row width of B stored %d×%d (tB=%t)", ldb, cb, rb, cb, tB)
	}
	if ldc < max(1, n) {
		bad("ldc", "ldc = %d < max(1, %d), the row width of C %d×%d", ldc, n, m, n)
	}
	if m == 0 || n == 0 {
		return
	}
	// A and B are only read when k > 0; C is always touched.
	if k > 0 {
		if need := (ra-1)*lda + ca; lenA < need {
			bad("a", "len(a) = %d < %d needed for A stored %d×%d with lda = %d", lenA, need, ra, ca, lda)
		}
		if need := (rb-1)*ldb + cb; lenB < need {
			bad("b", "len(b) = %d < %d needed for B stored %d×%d with ldb = %d", lenB, need, rb, cb, ldb)
		}
	}
	if need := (m-1)*ldc + n; lenC < need {
		bad("c", "len(c) = %d < %d needed for C %d×%d with ldc = %d", lenC, need, m, n, ldc)
	}
}

// scaleC sets C = beta·C, writing zeros without reading C when beta == 0.
func scaleC[T float32 | float64](m, n int, beta T, c []T, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
