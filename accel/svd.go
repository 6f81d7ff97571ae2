package accel

import (
	"context"
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// SVD is a thin singular value decomposition A = U·diag(S)·VT of an m×n
// matrix, p = min(m,n): U is m×p with orthonormal columns, S (length p) is
// non-negative and descending, VT is p×n with orthonormal rows.
//
// Sign convention: every entry point returns each singular pair (u_i, v_i)
// with the entry of largest magnitude of u_i positive (the first such entry
// on ties); v_i carries the matching sign so that A = U·diag(S)·VT holds.
//
// When p = 0, U and VT are zero-value (empty) matrices and S is empty.
//
// Residual is set by TruncatedSVD only (zero otherwise): a probabilistic upper
// bound on the spectral norm ‖A − U·diag(S)·VT‖₂, which holds with probability
// at least 1 − 10⁻¹⁰ (Halko, Martinsson & Tropp 2011, Lemma 4.1, with 10 probe
// vectors). Each returned S[i] is at most σ_i(A) and
// σ_i(A) − S[i] ≤ ‖(I − QQᵀ)A‖₂ ≤ Residual, so Residual/S[i] bounds the
// relative error of S[i].
type SVD struct {
	U        *mat.Dense
	S        []float64
	VT       *mat.Dense
	Residual float64
}

// ErrNoConvergence is returned (wrapped) when the bidiagonal SVD iteration
// fails to converge. It is a data-dependent failure, not a programmer error.
var ErrNoConvergence = errors.New("accel: SVD did not converge")

// NonFiniteError is returned by the SVD entry points when the input holds a
// NaN or an infinity; the decomposition of such a matrix is not defined.
type NonFiniteError struct {
	Op       string  // the entry point, e.g. "ThinSVD"
	Row, Col int     // the first non-finite entry found (row-major order)
	Value    float64 // its value (NaN, +Inf or -Inf)
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("accel: %s: input holds %v at (%d,%d)", e.Op, e.Value, e.Row, e.Col)
}

// SVDArgError is the panic value of an SVD entry point called with an argument
// out of range (a rank k outside [1, min(m,n)], negative options), naming the
// shape of the matrix. It is a programmer error.
type SVDArgError struct {
	Op   string // the entry point, e.g. "TruncatedSVD"
	M, N int    // the shape of the matrix
	Msg  string // what is wrong and the allowed range
}

func (e SVDArgError) Error() string {
	return fmt.Sprintf("accel: %s: matrix %d×%d: %s", e.Op, e.M, e.N, e.Msg)
}

// ThinSVD returns the thin SVD A = U·diag(S)·VT of the m×n matrix a
// (U m×p, S p, VT p×n, p = min(m,n)), computed as LAPACK's dgesvd does, on
// accel's GEMM: Householder bidiagonalization (QR first when m ≥ 1.6n),
// the bidiagonal SVD by divide and conquer (Gu & Eisenstat, LAPACK's
// dbdsdc; from min(m,n) = 64) or by the QR iteration (Demmel & Kahan) with
// its rotations applied in cache-resident panels by the assembly kernels,
// and blocked back-transformation; see svd_driver.go. The result is backward stable:
// ‖A − U·diag(S)·VT‖ and the departures of U and V from orthonormality are
// a modest multiple of p·ε (tested at 1e-12 up to 400×400 in
// accel/acceltest). It does not depend on accel.Use().
//
// It returns ctx.Err() if ctx is cancelled before it completes (checked
// between panels and batches of rotations), a *NonFiniteError if a holds NaN
// or Inf, and an error wrapping ErrNoConvergence if the iteration does not
// converge.
func ThinSVD(ctx context.Context, a mat.Matrix) (SVD, error) {
	return thinSVD(ctx, "ThinSVD", a, true)
}

// SingularValues returns the singular values of the m×n matrix a in
// descending order (length min(m,n)), without computing vectors: the
// bidiagonalization of ThinSVD followed by the dqds algorithm (LAPACK
// dlasq1), which computes the values of the bidiagonal to high relative
// accuracy. Errors are those of ThinSVD.
func SingularValues(ctx context.Context, a mat.Matrix) ([]float64, error) {
	r, err := thinSVD(ctx, "SingularValues", a, false)
	return r.S, err
}

// thinSVD is the entry point shared by ThinSVD and SingularValues.
func thinSVD(ctx context.Context, op string, a mat.Matrix, wantVectors bool) (SVD, error) {
	if err := ctx.Err(); err != nil {
		return SVD{}, err
	}
	m, n := a.Dims()
	p := min(m, n)
	if p == 0 {
		return SVD{U: &mat.Dense{}, S: []float64{}, VT: &mat.Dense{}}, nil
	}
	ad := mat.DenseCopyOf(a)
	if err := checkFinite(op, ad); err != nil {
		return SVD{}, err
	}
	return svdFast(ctx, op, ad, wantVectors)
}

// checkFinite returns a *NonFiniteError naming the first NaN or Inf of a.
func checkFinite(op string, a *mat.Dense) error {
	raw := a.RawMatrix()
	for i := 0; i < raw.Rows; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+raw.Cols]
		for j, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return &NonFiniteError{Op: op, Row: i, Col: j, Value: v}
			}
		}
	}
	return nil
}

// fixSigns applies the sign convention: for each column i of u (m×p), the
// entry of largest magnitude (the first on ties) is made positive by negating
// column i of u and row i of vt.
func fixSigns(u, vt *mat.Dense) {
	ur := u.RawMatrix()
	vr := vt.RawMatrix()
	for i := 0; i < ur.Cols; i++ {
		best, big := 0.0, -1.0
		for r := 0; r < ur.Rows; r++ {
			x := ur.Data[r*ur.Stride+i]
			if math.Abs(x) > big {
				big, best = math.Abs(x), x
			}
		}
		if best >= 0 {
			continue
		}
		for r := 0; r < ur.Rows; r++ {
			ur.Data[r*ur.Stride+i] = -ur.Data[r*ur.Stride+i]
		}
		row := vr.Data[i*vr.Stride : i*vr.Stride+vr.Cols]
		for j := range row {
			row[j] = -row[j]
		}
	}
}
