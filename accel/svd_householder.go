package accel

import (
	"context"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/lapack/gonum"
)

// Blocked application of Householder reflectors as GEMMs (compact WY form,
// Schreiber & Van Loan 1989): the product of kb reflectors H_j = I − τ_j·v_j·v_jᵀ
// is I − V·T·Vᵀ with V the (unit lower trapezoidal) matrix of the v_j and T
// an upper triangular kb×kb matrix (lapack dlarft; larftGram), so applying it to C costs
// three accel.Dgemm calls instead of kb rank-one updates.

const reflBlock = 64 // reflectors per block

// reflectors describes k Householder vectors of length n stored LAPACK-style
// in a row-major array: vector j is zero above position j, one at j, and
// below it holds a[p*lda+j] for p > j (column storage, as dgeqrf and the Q of
// dgebrd leave them) or a[j*lda+p] (row storage, as the P of dgebrd).
type reflectors struct {
	n, k      int
	a         []float64
	lda       int
	rowStored bool
	tau       []float64
}

// block fills v (r×kb, r = n−i) with vectors i…i+kb−1 restricted to
// positions i…n−1, and t (kb×kb) with their triangular factor (larftGram);
// g is kb×kb scratch.
func (h reflectors) block(i, kb int, v, t, g []float64) {
	r := h.n - i
	for p := 0; p < r; p++ {
		row := v[p*kb : p*kb+kb]
		if p >= kb && !h.rowStored {
			// Below the unit triangle a row of V is a row of a.
			copy(row, h.a[(i+p)*h.lda+i:(i+p)*h.lda+i+kb])
			continue
		}
		for q := range row {
			switch {
			case p < q:
				row[q] = 0
			case p == q:
				row[q] = 1
			case h.rowStored:
				row[q] = h.a[(i+q)*h.lda+i+p]
			default:
				row[q] = h.a[(i+p)*h.lda+i+q]
			}
		}
	}
	larftGram(r, kb, v, h.tau[i:i+kb], t, g)
}

// larftGram forms the upper triangular factor T (kb×kb) of the block
// reflector H_0·…·H_{kb−1} = I − V·T·Vᵀ, V r×kb with its unit diagonal
// and zeros above it stored, as lapack dlarft (forward, columnwise) does:
//
//	T[j, j] = τ_j,   T[0:j, j] = −τ_j · T[0:j, 0:j] · (V[:, 0:j]ᵀ·v_j)
//
// but with the inner products V[:, 0:j]ᵀ·v_j of all j taken at once as the
// Gram matrix G = VᵀV (kb×kb, into g) by one Dgemm, 2·r·kb² flops in the
// GEMM rather than in kb matrix-vector products.
func larftGram(r, kb int, v, tau, t, g []float64) {
	Dgemm(true, false, kb, kb, r, 1, v, kb, v, kb, 0, g, kb)
	clear(t[:kb*kb])
	for j := 0; j < kb; j++ {
		tj := tau[j]
		t[j*kb+j] = tj
		if tj == 0 {
			continue // H_j = I: column j of T stays zero above the diagonal
		}
		// T[0:j, j] = −τ_j · T[0:j, 0:j] · G[0:j, j], T upper triangular.
		for a := 0; a < j; a++ {
			var s float64
			for b := a; b < j; b++ {
				s += t[a*kb+b] * g[b*kb+j]
			}
			t[a*kb+j] = -tj * s
		}
	}
}

// applyLeft computes C = H_0·H_1·…·H_{k−1}·C, or C = (H_0·…·H_{k−1})ᵀ·C when
// trans, for the n×nc matrix c (row stride ldc), checking ctx between
// blocks.
func (h reflectors) applyLeft(ctx context.Context, c []float64, ldc, nc int, trans bool) error {
	if h.k == 0 || nc == 0 {
		return nil
	}
	nb := reflBlock
	v := make([]float64, h.n*nb)
	t := make([]float64, nb*nb)
	g := make([]float64, nb*nb)
	w := make([]float64, nb*nc)
	w2 := make([]float64, nb*nc)
	nblocks := (h.k + nb - 1) / nb
	for b := 0; b < nblocks; b++ {
		// Q·C applies the last block first; Qᵀ·C the first.
		i := (nblocks - 1 - b) * nb
		if trans {
			i = b * nb
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		kb := min(nb, h.k-i)
		r := h.n - i
		h.block(i, kb, v, t, g)
		ci := c[i*ldc:]
		// C[i:, :] −= V·(op(T)·(Vᵀ·C[i:, :])), op(T) = T or Tᵀ.
		Dgemm(true, false, kb, nc, r, 1, v, kb, ci, ldc, 0, w, nc)
		Dgemm(trans, false, kb, nc, kb, 1, t, kb, w, nc, 0, w2, nc)
		Dgemm(false, false, r, nc, kb, -1, v, kb, w2, nc, 1, ci, ldc)
	}
	return nil
}

// geqrfBlocked computes the QR factorization A = Q·R of the m×n matrix a
// (m ≥ n, row stride lda) in place, with lapack dgeqrf's output layout (R on
// and above the diagonal, the reflectors below it, tau): panels of reflBlock
// columns by geqrfPanel, the trailing columns updated by the panel's block
// reflector through accel.Dgemm.
func geqrfBlocked(ctx context.Context, m, n int, a []float64, lda int, tau []float64) error {
	v := make([]float64, m)
	w := make([]float64, reflBlock)
	for i := 0; i < n; i += reflBlock {
		if err := ctx.Err(); err != nil {
			return err
		}
		kb := min(reflBlock, n-i)
		if err := geqrfPanel(ctx, m-i, kb, a[i*lda+i:], lda, tau[i:i+kb], v, w); err != nil {
			return err
		}
		if i+kb < n {
			h := reflectors{n: m - i, k: kb, a: a[i*lda+i:], lda: lda, tau: tau[i : i+kb]}
			if err := h.applyLeft(ctx, a[i*lda+i+kb:], lda, n-i-kb, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// geqrfPanel factors a tall m×n panel (m ≥ n) like geqr2, recursively
// (Elmroth & Gustavson 2000): the left half, then the right half updated by
// the left half's block reflector through GEMMs, then the right half's
// lower part; columns at a time only below geqr2Cols. Column by column, a
// 4096×64 panel (2 MiB) is read from L3 twice per column; halving it keeps
// the unblocked work in panels of 16 columns (512 KiB), which stay in L2.
func geqrfPanel(ctx context.Context, m, n int, a []float64, lda int, tau, v, w []float64) error {
	if n <= geqr2Cols {
		geqr2(m, n, a, lda, tau, v, w)
		return nil
	}
	n1 := n / 2
	if err := geqrfPanel(ctx, m, n1, a, lda, tau[:n1], v, w); err != nil {
		return err
	}
	h := reflectors{n: m, k: n1, a: a, lda: lda, tau: tau[:n1]}
	if err := h.applyLeft(ctx, a[n1:], lda, n-n1, true); err != nil {
		return err
	}
	return geqrfPanel(ctx, m-n1, n-n1, a[n1*lda+n1:], lda, tau[n1:], v, w)
}

// geqr2Cols is the widest panel geqrfPanel factors a column at a time.
const geqr2Cols = 16

// geqr2 computes the QR factorization of the m×n panel a (row stride lda)
// one column at a time, with lapack dgeqr2's output (R on and above the
// diagonal, the reflectors below it, tau): column j's reflector H_j =
// I − τ_j·v·vᵀ (lapack dlarfg) is applied to the columns right of it as
//
//	w = A[j:, j+1:]ᵀ·v,   A[j:, j+1:] −= τ_j·v·wᵀ
//
// through accel's Dgemv and Dger, with v copied out of its column so that
// both run on unit strides (gonum's Dgeqr2 goes through the blas64 in use,
// which is not accel's unless Use was called, with v at stride lda). v has
// room for m values, w for n.
func geqr2(m, n int, a []float64, lda int, tau, v, w []float64) {
	var impl gonum.Implementation
	var bl Implementation
	for j := 0; j < min(m, n); j++ {
		// The column below the diagonal is read into v once and written
		// back once; lapack dlarfg then runs on the contiguous copy.
		vj := v[:m-j]
		for p := 1; p < m-j; p++ {
			vj[p] = a[(j+p)*lda+j]
		}
		beta, t := impl.Dlarfg(m-j, a[j*lda+j], vj[1:], 1)
		for p := 1; p < m-j; p++ {
			a[(j+p)*lda+j] = vj[p]
		}
		vj[0] = 1
		tau[j] = t
		if j+1 < n && t != 0 {
			wj := w[:n-j-1]
			bl.Dgemv(blas.Trans, m-j, n-j-1, 1, a[j*lda+j+1:], lda, vj, 1, 0, wj, 1)
			bl.Dger(m-j, n-j-1, -t, vj, 1, wj, 1, a[j*lda+j+1:], lda)
		}
		a[j*lda+j] = beta
	}
}

// applyRightT computes C = C·(H_0·H_1·…·H_{k−1})ᵀ for the nr×n matrix c (row
// stride ldc), checking ctx between blocks.
func (h reflectors) applyRightT(ctx context.Context, c []float64, ldc, nr int) error {
	if h.k == 0 || nr == 0 {
		return nil
	}
	nb := reflBlock
	v := make([]float64, h.n*nb)
	t := make([]float64, nb*nb)
	g := make([]float64, nb*nb)
	w := make([]float64, nr*nb)
	w2 := make([]float64, nr*nb)
	for i := ((h.k - 1) / nb) * nb; i >= 0; i -= nb {
		if err := ctx.Err(); err != nil {
			return err
		}
		kb := min(nb, h.k-i)
		r := h.n - i
		h.block(i, kb, v, t, g)
		ci := c[i:]
		// C[:, i:] −= ((C[:, i:]·V)·Tᵀ)·Vᵀ
		Dgemm(false, false, nr, kb, r, 1, ci, ldc, v, kb, 0, w, kb)
		Dgemm(false, true, nr, kb, kb, 1, w, kb, t, kb, 0, w2, kb)
		Dgemm(false, true, nr, r, kb, -1, w2, kb, v, kb, 1, ci, ldc)
	}
	return nil
}
