package accel

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
)

// Implementation is gonum's pure-Go blas.Float64 with Dgemm, and Dgemv and
// Dger with unit increments, replaced by accel's. Install it with [Use].
type Implementation struct{ gonum.Implementation }

var _ blas.Float64 = Implementation{}

// Use installs Implementation as gonum's float64 BLAS (blas64.Use), so that
// mat.Dense.Mul and gonum's QR, eigen and SVD factorizations run on accel.
func Use() { blas64.Use(Implementation{}) }

// Dgemm computes C = alpha·op(A)·op(B) + beta·C as gonum's blas.Float64
// specifies (row-major, op per tA/tB), using [Dgemm]. Bad arguments panic
// with gonum's own messages, so gonum's callers see what they expect.
func (impl Implementation) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	ta, tb, ok := checkGonumGemm(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if !ok {
		return
	}
	Dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGonumGemm applies gonum's Dgemm argument checks, in gonum's order and
// with gonum's panic strings, and reports the transposes and whether there is
// anything to compute.
func checkGonumGemm(tA, tB blas.Transpose, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) (ta, tb, ok bool) {
	for _, t := range [2]blas.Transpose{tA, tB} {
		if t != blas.NoTrans && t != blas.Trans && t != blas.ConjTrans {
			panic("blas: illegal transpose")
		}
	}
	switch {
	case m < 0:
		panic("blas: m < 0")
	case n < 0:
		panic("blas: n < 0")
	case k < 0:
		panic("blas: k < 0")
	}
	ta, tb = tA != blas.NoTrans, tB != blas.NoTrans
	ra, ca := m, k
	if ta {
		ra, ca = k, m
	}
	rb, cb := k, n
	if tb {
		rb, cb = n, k
	}
	switch {
	case lda < max(1, ca):
		panic("blas: bad leading dimension of A")
	case ldb < max(1, cb):
		panic("blas: bad leading dimension of B")
	case ldc < max(1, n):
		panic("blas: bad leading dimension of C")
	}
	if m == 0 || n == 0 {
		return ta, tb, false
	}
	switch {
	case lenA < (ra-1)*lda+ca:
		panic("blas: insufficient length of a")
	case lenB < (rb-1)*ldb+cb:
		panic("blas: insufficient length of b")
	case lenC < (m-1)*ldc+n:
		panic("blas: insufficient length of c")
	}
	return ta, tb, true
}

// Dgemv computes y = alpha·A·x + beta·y (tA == NoTrans) or
// y = alpha·Aᵀ·x + beta·y as gonum's blas.Float64 specifies. With unit
// increments it runs accel's AVX-512/AVX2 kernels; any other case, and every
// bad argument, goes to gonum's own Dgemv, so its checks and panics apply.
// As in reference BLAS, y is not read when beta == 0.
func (impl Implementation) Dgemv(tA blas.Transpose, m, n int, alpha float64, a []float64, lda int, x []float64, incX int, beta float64, y []float64, incY int) {
	lenX, lenY := n, m
	if tA != blas.NoTrans {
		lenX, lenY = m, n
	}
	if incX != 1 || incY != 1 || m <= 0 || n <= 0 || alpha == 0 || lda < n ||
		tA != blas.NoTrans && tA != blas.Trans && tA != blas.ConjTrans ||
		len(a) < lda*(m-1)+n || len(x) < lenX || len(y) < lenY {
		impl.Implementation.Dgemv(tA, m, n, alpha, a, lda, x, incX, beta, y, incY)
		return
	}
	if tA == blas.NoTrans {
		gemvN(m, n, alpha, a, lda, x, beta, y)
		return
	}
	gemvT(m, n, alpha, a, lda, x, beta, y)
}

// Dger computes A += alpha·x·yᵀ as gonum's blas.Float64 specifies. With unit
// increments it runs accel's AVX-512/AVX2 kernels; any other case, and every
// bad argument, goes to gonum's own Dger, so its checks and panics apply.
func (impl Implementation) Dger(m, n int, alpha float64, x []float64, incX int, y []float64, incY int, a []float64, lda int) {
	if incX != 1 || incY != 1 || m <= 0 || n <= 0 || alpha == 0 || lda < n ||
		len(x) < m || len(y) < n || len(a) < lda*(m-1)+n {
		impl.Implementation.Dger(m, n, alpha, x, incX, y, incY, a, lda)
		return
	}
	ger(m, n, alpha, x, y, a, lda)
}
