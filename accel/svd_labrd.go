package accel

import (
	"gonum.org/v1/gonum/blas"
	blasgonum "gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/lapack/gonum"
)

// labrd is lapack dlabrd for m ≥ n (upper bidiagonal), row-major, as gonum's
// Dlabrd computes it: it reduces the first nb rows and columns of the m×n
// matrix a to bidiagonal form, Qᵀ·A·P, returning d, e, tauQ, tauP, the
// reflectors in a, and X (m×nb, row stride ldx) and Y (n×nb, row stride
// ldy) for the trailing update A₂₂ −= V·Yᵀ + X·Uᵀ.
//
// Its two products with the whole trailing matrix per column (Aᵀ·v and A·u,
// half of the flops of the bidiagonalization, and bound by memory bandwidth)
// run on the team tm (nil: on the caller alone), each worker on bands of
// rows; the small products
// with the nb-wide panels are gonum's Dgemv.
func labrd(tm *team, m, n, nb int, a []float64, lda int, d, e, tauQ, tauP, x []float64, ldx int, y []float64, ldy int) {
	var impl gonum.Implementation
	var bi blasgonum.Implementation
	for i := 0; i < nb; i++ {
		// Update A[i:m, i]: −= A[i:m, :i]·Y[i, :i]ᵀ + X[i:m, :i]·A[:i, i].
		bi.Dgemv(blas.NoTrans, m-i, i, -1, a[i*lda:], lda, y[i*ldy:], 1, 1, a[i*lda+i:], lda)
		bi.Dgemv(blas.NoTrans, m-i, i, -1, x[i*ldx:], ldx, a[i:], lda, 1, a[i*lda+i:], lda)

		// Reflector H_i annihilating A[i+1:m, i].
		aii, tq := impl.Dlarfg(m-i, a[i*lda+i], a[min(i+1, m-1)*lda+i:], lda)
		d[i], tauQ[i] = aii, tq
		if i >= n-1 {
			continue
		}
		a[i*lda+i] = 1
		v := a[i*lda+i:] // v = A[i:m, i], stride lda

		// Y[i+1:n, i] = τ·(A[i:m, i+1:n]ᵀ·v − Y[i+1:n, :i]·(A[i:m, :i]ᵀ·v)
		//                 − A[:i, i+1:n]ᵀ·(X[i:m, :i]ᵀ·v))
		yi := y[(i+1)*ldy+i:] // column i of Y from row i+1, stride ldy
		gemvTPar(tm, m-i, n-i-1, a[i*lda+i+1:], lda, v, lda, yi, ldy)
		bi.Dgemv(blas.Trans, m-i, i, 1, a[i*lda:], lda, v, lda, 0, y[i:], ldy)
		bi.Dgemv(blas.NoTrans, n-i-1, i, -1, y[(i+1)*ldy:], ldy, y[i:], ldy, 1, yi, ldy)
		bi.Dgemv(blas.Trans, m-i, i, 1, x[i*ldx:], ldx, v, lda, 0, y[i:], ldy)
		bi.Dgemv(blas.Trans, i, n-i-1, -1, a[i+1:], lda, y[i:], ldy, 1, yi, ldy)
		bi.Dscal(n-i-1, tq, yi, ldy)

		// Update A[i, i+1:n] −= Y[i+1:n, :i+1]·A[i, :i+1]ᵀ + A[:i, i+1:n]ᵀ·X[i, :i]ᵀ.
		bi.Dgemv(blas.NoTrans, n-i-1, i+1, -1, y[(i+1)*ldy:], ldy, a[i*lda:], 1, 1, a[i*lda+i+1:], 1)
		bi.Dgemv(blas.Trans, i, n-i-1, -1, a[i+1:], lda, x[i*ldx:], 1, 1, a[i*lda+i+1:], 1)

		// Reflector G_i annihilating A[i, i+2:n].
		aij, tp := impl.Dlarfg(n-i-1, a[i*lda+i+1], a[i*lda+min(i+2, n-1):], 1)
		e[i], tauP[i] = aij, tp
		a[i*lda+i+1] = 1
		u := a[i*lda+i+1:] // u = A[i, i+1:n], stride 1

		// X[i+1:m, i] = τ·(A[i+1:m, i+1:n]·u − A[i+1:m, :i+1]·(Y[i+1:n, :i+1]ᵀ·u)
		//                 − X[i+1:m, :i]·(A[:i, i+1:n]·u))
		xi := x[(i+1)*ldx+i:] // column i of X from row i+1, stride ldx
		gemvNPar(tm, m-i-1, n-i-1, a[(i+1)*lda+i+1:], lda, u, xi, ldx)
		bi.Dgemv(blas.Trans, n-i-1, i+1, 1, y[(i+1)*ldy:], ldy, u, 1, 0, x[i:], ldx)
		bi.Dgemv(blas.NoTrans, m-i-1, i+1, -1, a[(i+1)*lda:], lda, x[i:], ldx, 1, xi, ldx)
		bi.Dgemv(blas.NoTrans, i, n-i-1, 1, a[i+1:], lda, u, 1, 0, x[i:], ldx)
		bi.Dgemv(blas.NoTrans, m-i-1, i, -1, x[(i+1)*ldx:], ldx, x[i:], ldx, 1, xi, ldx)
		bi.Dscal(m-i-1, tp, xi, ldx)
	}
}

// gemvParMin is the smallest matrix (entries) whose product labrd splits
// across goroutines.
const gemvParMin = 1 << 17

// splitRows runs f(worker, r0, r1) over bands of the rows 0…r−1 on the team
// tm (team.run): the bands are several per worker, each worker starts on its
// own share (so the same rows stay in the same core's cache from one call to
// the next) and takes over the others' when it is done, and the caller does
// not wait for a helper the OS has not yet run. It reports the number of
// workers that may have run (f's worker index is below it).
func splitRows(tm *team, r, c int, f func(worker, r0, r1 int)) int {
	workers := min(tm.workers(), max(1, r*c/gemvParMin))
	if workers <= 1 || r < 8*workers {
		f(0, 0, r)
		return 1
	}
	bands := 4 * tm.workers()
	tm.run(bands, func(w, b int) {
		f(w, b*r/bands, (b+1)*r/bands)
	})
	return tm.workers()
}

// gemvTPar computes y = Aᵀ·v for the r×c matrix a (row stride lda), v of
// length r (stride incV) and y of length c (stride incY), splitting the rows
// of A across goroutines (splitRows) and summing their partial products. The
// products run on accel's Dgemv kernels (Implementation.Dgemv) on
// unit-stride copies of the vectors.
func gemvTPar(tm *team, r, c int, a []float64, lda int, v []float64, incV int, y []float64, incY int) {
	var impl Implementation
	if c == 0 {
		return
	}
	if r == 0 {
		for j := 0; j < c; j++ {
			y[j*incY] = 0
		}
		return
	}
	vvBuf := getScratch[float64](r)
	defer putScratch(vvBuf)
	vv := *vvBuf
	for i := range vv {
		vv[i] = v[i*incV]
	}
	maxW := tm.workers()
	partialBuf := getScratch[float64](maxW * c)
	defer putScratch(partialBuf)
	partial := *partialBuf
	used := make([]bool, maxW)
	workers := splitRows(tm, r, c, func(w, r0, r1 int) {
		beta := 1.0
		if !used[w] {
			beta, used[w] = 0, true
		}
		impl.Dgemv(blas.Trans, r1-r0, c, 1, a[r0*lda:], lda, vv[r0:r1], 1, beta, partial[w*c:(w+1)*c], 1)
	})
	for j := 0; j < c; j++ {
		s := 0.0
		for w := 0; w < workers; w++ {
			if used[w] {
				s += partial[w*c+j]
			}
		}
		y[j*incY] = s
	}
}

// gemvNPar computes x = A·u for the r×c matrix a (row stride lda), u of
// length c (stride 1) and x of length r (stride incX), bands of rows on
// goroutines (splitRows), on accel's Dgemv kernels.
func gemvNPar(tm *team, r, c int, a []float64, lda int, u []float64, x []float64, incX int) {
	var impl Implementation
	if r == 0 {
		return
	}
	if c == 0 {
		for i := 0; i < r; i++ {
			x[i*incX] = 0
		}
		return
	}
	xxBuf := getScratch[float64](r)
	defer putScratch(xxBuf)
	xx := *xxBuf
	splitRows(tm, r, c, func(_, r0, r1 int) {
		impl.Dgemv(blas.NoTrans, r1-r0, c, 1, a[r0*lda:], lda, u[:c], 1, 0, xx[r0:r1], 1)
	})
	for i, v := range xx {
		x[i*incX] = v
	}
}
