package accel

import (
	"context"

	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/gonum"
)

// Blocked application of Householder reflectors as GEMMs (compact WY form,
// Schreiber & Van Loan 1989): the product of kb reflectors H_j = I − τ_j·v_j·v_jᵀ
// is I − V·T·Vᵀ with V the (unit lower trapezoidal) matrix of the v_j and T
// an upper triangular kb×kb matrix (lapack dlarft), so applying it to C costs
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
// positions i…n−1, and t (kb×kb) with their triangular factor.
func (h reflectors) block(i, kb int, v, t []float64) {
	r := h.n - i
	for p := 0; p < r; p++ {
		row := v[p*kb : p*kb+kb]
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
	clear(t[:kb*kb])
	var impl gonum.Implementation
	impl.Dlarft(lapack.Forward, lapack.ColumnWise, r, kb, v, kb, h.tau[i:], t, kb)
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
		h.block(i, kb, v, t)
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
// columns by lapack dgeqr2, the trailing columns updated by the panel's
// block reflector through accel.Dgemm.
func geqrfBlocked(ctx context.Context, m, n int, a []float64, lda int, tau []float64) error {
	var impl gonum.Implementation
	work := make([]float64, n)
	for i := 0; i < n; i += reflBlock {
		if err := ctx.Err(); err != nil {
			return err
		}
		kb := min(reflBlock, n-i)
		impl.Dgeqr2(m-i, kb, a[i*lda+i:], lda, tau[i:i+kb], work)
		if i+kb < n {
			h := reflectors{n: m - i, k: kb, a: a[i*lda+i:], lda: lda, tau: tau[i : i+kb]}
			if err := h.applyLeft(ctx, a[i*lda+i+kb:], lda, n-i-kb, true); err != nil {
				return err
			}
		}
	}
	return nil
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
	w := make([]float64, nr*nb)
	w2 := make([]float64, nr*nb)
	for i := ((h.k - 1) / nb) * nb; i >= 0; i -= nb {
		if err := ctx.Err(); err != nil {
			return err
		}
		kb := min(nb, h.k-i)
		r := h.n - i
		h.block(i, kb, v, t)
		ci := c[i:]
		// C[:, i:] −= ((C[:, i:]·V)·Tᵀ)·Vᵀ
		Dgemm(false, false, nr, kb, r, 1, ci, ldc, v, kb, 0, w, kb)
		Dgemm(false, true, nr, kb, kb, 1, w, kb, t, kb, 0, w2, kb)
		Dgemm(false, true, nr, r, kb, -1, w2, kb, v, kb, 1, ci, ldc)
	}
	return nil
}
