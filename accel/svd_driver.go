package accel

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/gonum"
	"gonum.org/v1/gonum/mat"
)

// The thin SVD of an m×n matrix A, m ≥ n (a wide matrix is handled through
// its transpose), in three stages, as LAPACK's dgesvd organises them:
//
//  1. Householder reduction A = Q·B·Pᵀ to an n×n upper bidiagonal B,
//     blocked (gebrdBlocked: dlabrd panels of gebrdBlock columns with their
//     matrix-vector products on all cores, svd_labrd.go; the trailing update
//     as one accel.Dgemm per panel). A tall matrix
//     (m ≥ 1.6n) is first factored A = Q₀·R and R is reduced instead.
//  2. B = Uᵦ·Σ·VTᵦ by divide and conquer from n = bdsdcCross on
//     (bdsdcVectors, svd_bdsdc.go), below it by the bidiagonal QR iteration
//     with deferred, blocked rotations (bdsqrVectors), or, for values only,
//     by dqds (lapack dlasq1).
//  3. Back-transformation U = Q·Uᵦ, VT = VTᵦ·Pᵀ by blocked Householder
//     products in compact WY form on accel.Dgemm (svd_householder.go).
//
// Pieces taken from gonum's lapack (dgebd2 on narrow panels, dlarfg,
// dlartg, dlas2, dlasv2, dlasq1) are O(n²) or O(n·block²); those that call
// BLAS use gonum's installed one, so the speed of the whole does not depend
// on accel.Use(). The QR's panels (geqr2) and the block reflectors' T
// (larftGram) are accel's own, on accel's Dgemv, Dger and Dgemm.

const (
	gebrdBlock = 32  // panel width of the blocked bidiagonalization
	gebrdCross = 128 // below this many remaining columns, reduce unblocked
	tallRatio  = 1.6 // QR first when m ≥ tallRatio·n (LAPACK's mnthr)
)

// svdFast computes the thin SVD of a (m×n), which it may overwrite.
func svdFast(ctx context.Context, op string, a *mat.Dense, wantVectors bool) (SVD, error) {
	m, n := a.Dims()
	if m < n {
		at := mat.DenseCopyOf(a.T())
		r, err := svdFast(ctx, op, at, wantVectors)
		if err != nil || !wantVectors {
			return r, err
		}
		// Aᵀ = U'·Σ·VT'  ⇒  A = VT'ᵀ·Σ·U'ᵀ.
		u := mat.DenseCopyOf(r.VT.T())
		vt := mat.DenseCopyOf(r.U.T())
		r.U, r.VT = u, vt
		fixSigns(r.U, r.VT)
		return r, nil
	}
	raw := a.RawMatrix()
	lda := raw.Stride
	ad := raw.Data

	// Scale A into [smlnum, bignum] if its largest entry is outside, so that
	// squares and products in the reductions neither overflow nor underflow.
	var impl gonum.Implementation
	anrm := maxAbs(raw)
	smlnum := math.Sqrt(0x1p-1022) / 0x1p-53
	bignum := 1 / smlnum
	scale := 0.0
	switch {
	case anrm > 0 && anrm < smlnum:
		scale = smlnum
	case anrm > bignum:
		scale = bignum
	}
	if scale != 0 {
		impl.Dlascl(lapack.General, 0, 0, anrm, scale, m, n, ad, lda)
	}

	fail := func(err error) (SVD, error) {
		if err == ErrNoConvergence {
			return SVD{}, fmt.Errorf("accel: %s (%d×%d): %w", op, m, n, err)
		}
		return SVD{}, err
	}

	// Stage 0 (tall): A = Q₀·R, continue with the n×n R.
	var qrA []float64
	var qrTau []float64
	bm, ba, bld := m, ad, lda
	if float64(m) >= tallRatio*float64(n) {
		qrTau = make([]float64, n)
		if err := geqrfBlocked(ctx, m, n, ad, lda, qrTau); err != nil {
			return SVD{}, err
		}
		qrA = ad
		r := make([]float64, n*n)
		for i := 0; i < n; i++ {
			copy(r[i*n+i:i*n+n], ad[i*lda+i:i*lda+n])
		}
		bm, ba, bld = n, r, n
		if err := ctx.Err(); err != nil {
			return SVD{}, err
		}
	}

	// Stage 1: bm×n → upper bidiagonal (d, e).
	d := make([]float64, n)
	e := make([]float64, max(n-1, 0))
	tauQ := make([]float64, n)
	tauP := make([]float64, n)
	if err := gebrdBlocked(ctx, bm, n, ba, bld, d, e, tauQ, tauP); err != nil {
		return SVD{}, err
	}

	unscale := func(s []float64) {
		if scale != 0 {
			impl.Dlascl(lapack.General, 0, 0, scale, anrm, 1, len(s), s, len(s))
		}
	}
	if !wantVectors {
		if info := impl.Dlasq1(n, d, append(e, 0), make([]float64, 4*n)); info != 0 {
			return fail(ErrNoConvergence)
		}
		unscale(d)
		return SVD{S: d}, nil
	}

	// Stage 2: B = Uᵦ·Σ·VTᵦ, Uᵦ in the first n rows of u: by divide and
	// conquer from bdsdcCross columns on (svd_bdsdc.go), else by the QR
	// iteration (with ut = Uᵦᵀ).
	vt := make([]float64, n*n)
	u := make([]float64, m*n)
	if n >= bdsdcCross {
		if err := bdsdcVectors(ctx, n, d, e, u, n, vt, n); err != nil {
			return fail(err)
		}
	} else {
		ut := make([]float64, n*n)
		if err := bdsqrVectors(ctx, n, d, e, vt, n, ut, n); err != nil {
			return fail(err)
		}
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				u[i*n+j] = ut[j*n+i]
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return SVD{}, err
	}

	// Stage 3: U = (Q₀·)Q·Uᵦ (m×n), VT = VTᵦ·Pᵀ (n×n).
	// U and VT are independent: transform them concurrently (each Dgemm
	// then runs on its own goroutine, see Dgemm's Threads rule).
	err := both(func() error {
		q := reflectors{n: bm, k: n, a: ba, lda: bld, tau: tauQ}
		if err := q.applyLeft(ctx, u, n, n, false); err != nil {
			return err
		}
		if qrA != nil {
			q0 := reflectors{n: m, k: n, a: qrA, lda: lda, tau: qrTau}
			return q0.applyLeft(ctx, u, n, n, false)
		}
		return nil
	}, func() error {
		if n <= 1 {
			return nil
		}
		p := reflectors{n: n - 1, k: n - 1, a: ba[1:], lda: bld, rowStored: true, tau: tauP}
		return p.applyRightT(ctx, vt[1:], n, n)
	})
	if err != nil {
		return SVD{}, err
	}
	unscale(d)
	r := SVD{U: mat.NewDense(m, n, u), S: d, VT: mat.NewDense(n, n, vt)}
	fixSigns(r.U, r.VT)
	return r, nil
}

// gebrdBlocked reduces the m×n matrix a (m ≥ n, row stride lda) to upper
// bidiagonal form Qᵀ·A·P = B, as lapack dgebrd does and with its output
// layout (d, e, the reflectors in a, tauQ, tauP), but with each panel's
// trailing update A₂₂ −= V·Yᵀ + X·Uᵀ done as one accel.Dgemm of inner size
// 2·nb, and with ctx checked between panels.
func gebrdBlocked(ctx context.Context, m, n int, a []float64, lda int, d, e, tauQ, tauP []float64) error {
	var impl gonum.Implementation
	nb := gebrdBlock
	x := make([]float64, m*nb) // X: m×nb
	y := make([]float64, n*nb) // Y: n×nb
	var w1, w2 []float64
	var tm *team // helpers for labrd's matrix-vector products
	i := 0
	if n > gebrdCross {
		tm = newTeam(Threads())
		defer tm.close()
		if tm != nil {
			tm.adaptive = true
		}
		w1 = make([]float64, m*2*nb) // [V X] (m−i−nb)×2nb
		w2 = make([]float64, 2*nb*n) // [Yᵀ; U] 2nb×(n−i−nb)
	}
	for ; n > gebrdCross && i < n-gebrdCross; i += nb {
		if err := ctx.Err(); err != nil {
			return err
		}
		labrd(tm, m-i, n-i, nb, a[i*lda+i:], lda, d[i:], e[i:], tauQ[i:], tauP[i:], x, nb, y, nb)
		// A[i+nb:, i+nb:] −= V·Y[nb:]ᵀ + X[nb:]·U, with V = A[i+nb:, i:i+nb]
		// and U = A[i:i+nb, i+nb:]: one GEMM on [V X]·[Y[nb:]ᵀ; U].
		mr, nr := m-i-nb, n-i-nb
		for r := 0; r < mr; r++ {
			copy(w1[r*2*nb:r*2*nb+nb], a[(i+nb+r)*lda+i:(i+nb+r)*lda+i+nb])
			copy(w1[r*2*nb+nb:r*2*nb+2*nb], x[(nb+r)*nb:(nb+r)*nb+nb])
		}
		for c := 0; c < nr; c++ {
			yr := y[(nb+c)*nb : (nb+c)*nb+nb]
			for k, v := range yr {
				w2[k*nr+c] = v
			}
		}
		for k := 0; k < nb; k++ {
			copy(w2[(nb+k)*nr:(nb+k)*nr+nr], a[(i+k)*lda+i+nb:(i+k)*lda+n])
		}
		Dgemm(false, false, mr, nr, 2*nb, -1, w1, 2*nb, w2, nr, 1, a[(i+nb)*lda+i+nb:], lda)
		for j := i; j < i+nb; j++ {
			a[j*lda+j] = d[j]
			a[j*lda+j+1] = e[j]
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	impl.Dgebd2(m-i, n-i, a[i*lda+i:], lda, d[i:], e[i:], tauQ[i:], tauP[i:], make([]float64, max(m, n)))
	return nil
}

// maxAbs returns the largest absolute entry of g.
func maxAbs(g blas64.General) float64 {
	big := 0.0
	for i := 0; i < g.Rows; i++ {
		for _, v := range g.Data[i*g.Stride : i*g.Stride+g.Cols] {
			big = math.Max(big, math.Abs(v))
		}
	}
	return big
}
