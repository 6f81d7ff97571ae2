package peft

import (
	"github.com/gopeft/gopeft/accel"
	"gonum.org/v1/gonum/mat"
)

// gemm computes C = alpha·op(A)·op(B) + beta·C on row-major slices, op(A)
// m×k, op(B) k×n, C m×n, with row strides lda, ldb, ldc: accel.Dgemm. Every
// matrix product of the autograd goes through it.
func gemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	accel.Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// vals returns m's elements row after row with no gaps: m's own backing
// slice when m is compact (the usual case, no copy), a copy when m is a
// view with a wider stride.
func vals(m *mat.Dense) []float64 {
	rm := m.RawMatrix()
	if rm.Stride == rm.Cols {
		return rm.Data[:rm.Rows*rm.Cols]
	}
	d := make([]float64, rm.Rows*rm.Cols)
	for i := 0; i < rm.Rows; i++ {
		copy(d[i*rm.Cols:(i+1)*rm.Cols], rm.Data[i*rm.Stride:i*rm.Stride+rm.Cols])
	}
	return d
}

// gdata returns t's gradient storage (allocated as zeros if nil), compact,
// for a backward function to add into.
func gdata(t *Tensor) []float64 {
	g := t.grad()
	rm := g.RawMatrix()
	if rm.Stride != rm.Cols {
		// A gradient set by hand as a view: replace it by a compact copy.
		c := mat.DenseCopyOf(g)
		t.Grad = c
		rm = c.RawMatrix()
	}
	return rm.Data[:rm.Rows*rm.Cols]
}

// newDense returns a zero r×c matrix and its backing slice.
func newDense(r, c int) (*mat.Dense, []float64) {
	m := mat.NewDense(r, c, nil)
	return m, m.RawMatrix().Data
}

// newScalar returns a 1×1 matrix holding v.
func newScalar(v float64) *mat.Dense { return mat.NewDense(1, 1, []float64{v}) }
