package loldu

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// LDU is the first r steps of the LU factorization with partial pivoting of
// a weight W (m×n), written as lower·diagonal·upper:
//
//	W = P·L·diag(D)·U + P·S        P (m×m) a permutation, given by Perm
//	L: m×r  unit lower-trapezoidal (L_ii = 1, L_ij = 0 for j > i, |L_ij| ≤ 1)
//	D: r    the pivots
//	U: r×n  unit upper-trapezoidal (U_ii = 1, U_ij = 0 for j < i)
//	S: m×n  the Schur complement, zero in its first r rows and columns
//
// At r = min(m, n), S = 0 and W = P·L·diag(D)·U exactly (up to rounding):
// the factorization torch.linalg.lu computes, with its U split into
// diag(D)·U as LoLDU's reference code does.
//
// P is stored as a row permutation, in gonum's mat.LU RowPivots convention
// (so that for a square W the two agree): P_{i,Perm[i]} = 1, so row i of
// P·M is row Perm[i] of M for any M (m×c), M.PermuteRows(Perm, false) is
// P·M, and row i of W is row Perm[i] of L·diag(D)·U + S.
type LDU struct {
	Perm []int      // (m) row i of P·M is row Perm[i] of M
	L    *mat.Dense // (m×r) unit lower-trapezoidal
	D    []float64  // (r) pivots
	U    *mat.Dense // (r×n) unit upper-trapezoidal
	S    *mat.Dense // (m×n) Pᵀ·W − L·diag(D)·U: zero outside rows, columns ≥ r
}

// PivotError is returned when a pivot among the first r is zero, so that U
// cannot be made unit-diagonal (LoLDU's reference divides by it and gets
// inf/NaN): W's leading columns, after pivoting, are linearly dependent.
type PivotError struct {
	Index int // the pivot, from 0
	R     int // the steps asked for
	M, N  int // W's shape
}

func (e *PivotError) Error() string {
	return fmt.Sprintf("pivot %d of the LU factorization of W %s is zero: W's first %d columns are linearly dependent, so the rank-%d LDU factors do not exist",
		e.Index, peft.ShapeOf(e.M, e.N), e.Index+1, e.R)
}

// Factorize returns the first r steps (1 ≤ r ≤ min(m, n)) of the LU
// factorization with partial pivoting of w (m×n): at step j the row, among
// j…m−1, with the largest |entry| in column j (the first such on ties) is
// swapped up, as LAPACK's dgetrf does. It costs O(r·m·n), not the O(m·n·p)
// of the full factorization. It returns a *PivotError if one of the r
// pivots is zero, and an error if w holds a NaN or an infinity. It panics
// if r is out of range.
func Factorize(w mat.Matrix, r int) (LDU, error) {
	m, n := w.Dims()
	if r < 1 || r > min(m, n) {
		panic(peft.ArgError{Op: "loldu.Factorize", Msg: fmt.Sprintf("r = %d out of range for W %s: want 1 ≤ r ≤ %d", r, peft.ShapeOf(m, n), min(m, n))})
	}
	a := mat.DenseCopyOf(w) // overwritten by L below the diagonal, diag(D)·U on and above, S in the rest
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			if v := a.At(i, j); math.IsNaN(v) || math.IsInf(v, 0) {
				return LDU{}, fmt.Errorf("W %s holds %v at (%d, %d)", peft.ShapeOf(m, n), v, i, j)
			}
		}
	}
	rowOf := make([]int, m) // row i of the eliminated matrix is row rowOf[i] of W
	for i := range rowOf {
		rowOf[i] = i
	}
	for j := 0; j < r; j++ {
		// Partial pivoting: the largest |a_ij| of column j at or below row j.
		p := j
		for i := j + 1; i < m; i++ {
			if math.Abs(a.At(i, j)) > math.Abs(a.At(p, j)) {
				p = i
			}
		}
		if p != j {
			rp, rj := a.RawRowView(p), a.RawRowView(j)
			for c := range rp {
				rp[c], rj[c] = rj[c], rp[c]
			}
			rowOf[p], rowOf[j] = rowOf[j], rowOf[p]
		}
		piv := a.At(j, j)
		if piv == 0 {
			return LDU{}, &PivotError{Index: j, R: r, M: m, N: n}
		}
		// Eliminate below the pivot: l_ij = a_ij/a_jj, then the Schur update
		// a_ic −= l_ij·a_jc for the trailing block.
		rj := a.RawRowView(j)
		for i := j + 1; i < m; i++ {
			ri := a.RawRowView(i)
			l := ri[j] / piv
			ri[j] = l
			if l == 0 {
				continue
			}
			for c := j + 1; c < n; c++ {
				ri[c] -= l * rj[c]
			}
		}
	}
	perm := make([]int, m) // Pᵀ = the permutation rowOf, so P is its inverse
	for i, o := range rowOf {
		perm[o] = i
	}
	f := LDU{Perm: perm, L: mat.NewDense(m, r, nil), D: make([]float64, r), U: mat.NewDense(r, n, nil), S: mat.NewDense(m, n, nil)}
	for i := 0; i < m; i++ {
		for j := 0; j < r && j <= i; j++ {
			if j == i {
				f.L.Set(i, j, 1)
			} else {
				f.L.Set(i, j, a.At(i, j))
			}
		}
	}
	for i := 0; i < r; i++ {
		f.D[i] = a.At(i, i)
		f.U.Set(i, i, 1)
		for c := i + 1; c < n; c++ {
			f.U.Set(i, c, a.At(i, c)/f.D[i]) // U ← U/D, unit diagonal
		}
	}
	for i := r; i < m; i++ {
		for c := r; c < n; c++ {
			f.S.Set(i, c, a.At(i, c))
		}
	}
	return f, nil
}

// Permute returns P·M (m×c) for a row permutation perm (see LDU): row i of
// the result is row perm[i] of M. It panics if M does not have len(perm)
// rows.
func Permute(perm []int, m mat.Matrix) *mat.Dense {
	r, c := m.Dims()
	if r != len(perm) {
		panic(peft.ShapeError{Op: "loldu.Permute", Got: fmt.Sprintf("M %s", peft.ShapeOf(r, c)), Want: fmt.Sprintf("%d rows, the permutation's length", len(perm))})
	}
	out := mat.DenseCopyOf(m)
	out.PermuteRows(perm, false) // row perm[i] moves to row i
	return out
}

// checkPerm returns an error if perm is not a permutation of 0…m−1.
func checkPerm(perm []int, m int) error {
	if len(perm) != m {
		return fmt.Errorf("has %d entries, want %d, the weight's rows", len(perm), m)
	}
	seen := make([]bool, m)
	for i, p := range perm {
		if p < 0 || p >= m || seen[p] {
			return fmt.Errorf("entry %d is %d: not a permutation of 0…%d", i, p, m-1)
		}
		seen[p] = true
	}
	return nil
}
