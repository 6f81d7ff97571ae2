package accel

import (
	"context"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/lapack/gonum"
)

// This file holds the divide-and-conquer SVD of an upper bidiagonal matrix
// with vectors, the method of LAPACK's dbdsdc (Gu & Eisenstat 1995, "A
// divide-and-conquer algorithm for the bidiagonal SVD", SIAM J. Matrix Anal.
// Appl. 16(1); Jessup & Sorensen 1994 for the splitting), written from the
// papers and LAPACK's documentation of dbdsdc, dlasd0–dlasd4:
//
// A subproblem is an n×(n+sqre) upper bidiagonal matrix (sqre = 0 or 1: row
// i holds d[i] in column i and e[i] in column i+1). Split at row k:
//
//	    ⎡ B₁  0  ⎤   B₁: rows 0…k−1, columns 0…k      (k×(k+1), sqre 1)
//	B = ⎢ α·e_kᵀ β·e₁ᵀ ⎥   row k: α = d[k] in column k, β = e[k] in column k+1
//	    ⎣ 0   B₂ ⎦   B₂: rows k+1…n−1, columns k+1…   (sqre of B)
//
// With the halves solved, B₁ = U₁·[Σ₁ 0]·W₁ᵀ and B₂ = U₂·[Σ₂ 0]·W₂ᵀ (the
// last column of W is the null vector when sqre = 1),
//
//	B = diag(U₁, 1, U₂)·P·M·diag(W₁, W₂)ᵀ,   M = ⎡ z          ⎤ ,  z = (α·W₁[k,:], β·W₂[0,:]),
//	                                             ⎣ 0  Σ₁ ·  Σ₂ ⎦
//
// P moving row k first: M is the identity-like diagonal plus one dense row,
// with a zero diagonal entry in W₁'s null column (and, when sqre = 1, a
// second one in W₂'s, which a rotation merges into the first). MᵀM = D² +
// zzᵀ, so the singular values of M are the roots σ of the secular equation
//
//	f(σ) = 1 + Σⱼ zⱼ²/(dⱼ² − σ²) = 0,   0 = d₀ < σ₀ < d₁ < σ₁ < … < d_{K−1} < σ_{K−1},
//
// found by dcRoot (a rational model of f matching its value and slope on
// each side of the root, Li's "middle way", inside a bisection bracket;
// each σ is kept as an offset μ from its nearer pole, σ² = d_o² + μ, so
// that every difference dⱼ² − σ² is computed to high relative accuracy).
// Deflation first (dlasd2): entries of z below tol = 8ε·‖M‖ make dⱼ a
// singular value with unit vectors, and two dⱼ closer than tol are rotated
// so that one of their z entries vanishes. The vectors of the remaining
// K×K problem are
//
//	vᵢ ∝ (ẑⱼ/(dⱼ² − σᵢ²))ⱼ,   uᵢ ∝ (−1, dⱼ·ẑⱼ/(dⱼ² − σᵢ²), …),
//
// where ẑ is not the computed z but the vector for which the computed σ are
// exact singular values, by Löwner's theorem
//
//	ẑⱼ² = (σ_{K−1}² − dⱼ²)·∏_{k<j} (σ_k² − dⱼ²)/(d_k² − dⱼ²)·∏_{j≤k<K−1} (σ_k² − dⱼ²)/(d_{k+1}² − dⱼ²)
//
// (Gu & Eisenstat's device: the vectors are then orthogonal to working
// precision however close the σ are, and M̂ differs from M by O(ε‖M‖)).
// The new vectors diag(U₁, 1, U₂)·Û and diag(W₁, W₂)·V̂ are four accel.Dgemm
// calls per merge; that is where the O(n³) work is, and at the top merges
// it runs on all threads. Subproblems of at most bdsdcLeaf rows are solved
// by the bidiagonal QR iteration (bdsqrVectorsOn, svd_bdsqr.go), after the
// extra column of an sqre = 1 block is chased out by n rotations (as
// dlasdq does).

// bdsdcLeaf is the largest subproblem (rows) solved by the QR iteration.
const bdsdcLeaf = 32

// bdsdcCross is the smallest n for which svdFast uses the divide-and-conquer
// solver for the vectors rather than the QR iteration (a variable so that
// tests can move it).
var bdsdcCross = 64

// dcNode is the SVD of a subproblem of n rows and nc = n+sqre columns:
// B = U·[diag(s) 0]·Vᵀ, U n×n and V nc×nc row-major, column j of U and of V
// pairing with s[j] (in no particular order); when sqre = 1, column n of V
// spans the null space of B.
type dcNode struct {
	s    []float64
	u, v []float64
}

// bdsdcVectors computes the SVD B = Uᵦ·diag(σ)·VTᵦ of the n×n upper
// bidiagonal B (diagonal d, superdiagonal e of length n−1) by divide and
// conquer, overwriting d with σ (non-negative, descending), u (row stride
// ldu) with Uᵦ and vt (row stride ldvt) with VTᵦ. e is left unchanged. It
// returns ErrNoConvergence (unwrapped) if the QR iteration fails on a leaf,
// or ctx.Err() when ctx is cancelled.
func bdsdcVectors(ctx context.Context, n int, d, e []float64, u []float64, ldu int, vt []float64, ldvt int) error {
	if n == 0 {
		return nil
	}
	nd, err := dcSolve(ctx, d[:n], e[:max(n-1, 0)], 0, Threads())
	if err != nil {
		return err
	}
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(a, b int) int {
		switch {
		case nd.s[a] > nd.s[b]:
			return -1
		case nd.s[a] < nd.s[b]:
			return 1
		}
		return 0
	})
	for i, p := range perm {
		d[i] = nd.s[p]
	}
	for r := 0; r < n; r++ {
		src := nd.u[r*n : r*n+n]
		dst := u[r*ldu : r*ldu+n]
		for i, p := range perm {
			dst[i] = src[p]
		}
	}
	for r := 0; r < n; r++ {
		src := nd.v[r*n : r*n+n]
		for i, p := range perm {
			vt[i*ldvt+r] = src[p]
		}
	}
	return nil
}

// dcSolve returns the SVD of the n×(n+sqre) upper bidiagonal with diagonal d
// (n) and superdiagonal e (n−1+sqre), on up to threads goroutines. d and e
// are read only.
func dcSolve(ctx context.Context, d, e []float64, sqre, threads int) (dcNode, error) {
	n := len(d)
	if n <= bdsdcLeaf {
		return dcLeaf(ctx, d, e, sqre)
	}
	if err := ctx.Err(); err != nil {
		return dcNode{}, err
	}
	k := n / 2
	var c1, c2 dcNode
	left := func(th int) error {
		var err error
		c1, err = dcSolve(ctx, d[:k], e[:k], 1, th)
		return err
	}
	right := func(th int) error {
		var err error
		c2, err = dcSolve(ctx, d[k+1:], e[k+1:], sqre, th)
		return err
	}
	var err error
	if threads >= 2 && n >= 256 {
		th := threads / 2
		err = both(func() error { return left(th) }, func() error { return right(threads - th) })
	} else {
		if err = left(1); err == nil {
			err = right(1)
		}
	}
	if err != nil {
		return dcNode{}, err
	}
	if err := ctx.Err(); err != nil {
		return dcNode{}, err
	}
	return dcMerge(d[k], e[k], c1, c2, sqre, threads), nil
}

// dcLeaf solves a subproblem by the QR iteration. For sqre = 1 it first
// rotates columns i and n (i = n−1…0) to zero the last column, B·G =
// [B' 0], so that B = U·[Σ 0]·(G·diag(V', 1))ᵀ with B' = U·Σ·V'ᵀ.
func dcLeaf(ctx context.Context, d, e []float64, sqre int) (dcNode, error) {
	n := len(d)
	nc := n + sqre
	dd := slices.Clone(d)
	ee := make([]float64, n) // bdsqrVectorsOn's e, length n−1 (one spare)
	copy(ee, e[:n-1])
	var g []float64 // G, nc×nc, when sqre = 1
	if sqre == 1 {
		var impl gonum.Implementation
		g = make([]float64, nc*nc)
		for i := 0; i < nc; i++ {
			g[i*nc+i] = 1
		}
		f := e[n-1] // the entry (i, n) to annihilate
		for i := n - 1; i >= 0 && f != 0; i-- {
			c, s, r := impl.Dlartg(dd[i], f)
			dd[i] = r
			if i > 0 {
				f = -s * ee[i-1]
				ee[i-1] *= c
			}
			for row := 0; row < nc; row++ {
				gi, gn := g[row*nc+i], g[row*nc+n]
				g[row*nc+i] = c*gi + s*gn
				g[row*nc+n] = -s*gi + c*gn
			}
		}
	}
	vt := make([]float64, n*n)
	ut := make([]float64, n*n)
	if err := bdsqrVectorsOn(ctx, 1, n, dd, ee, vt, n, ut, n); err != nil {
		return dcNode{}, err
	}
	u := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			u[i*n+j] = ut[j*n+i]
		}
	}
	v := make([]float64, nc*nc)
	if sqre == 0 {
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				v[i*n+j] = vt[j*n+i]
			}
		}
	} else {
		// V = G·diag(V', 1): V[r][j] = Σ_l G[r][l]·V'[l][j], V[r][n] = G[r][n].
		for r := 0; r < nc; r++ {
			gr := g[r*nc : r*nc+n]
			for j := 0; j < n; j++ {
				vtj := vt[j*n : j*n+n]
				sum := 0.0
				for l, x := range gr {
					sum += x * vtj[l]
				}
				v[r*nc+j] = sum
			}
			v[r*nc+n] = g[r*nc+n]
		}
	}
	return dcNode{s: dd, u: u, v: v}, nil
}

// dcItem is one diagonal entry of M: value d, entry z of the dense row, and
// the row and column of M it sits in.
type dcItem struct {
	d, z     float64
	row, col int
}

// dcRot is a rotation of the rows (and columns) of items a and b of M:
// the new basis vectors are c·e_a − s·e_b (a, deflated) and s·e_a + c·e_b.
type dcRot struct {
	a, b int // rows for Û, columns for V̂ (resolved when recorded)
	ca   int
	cb   int
	c, s float64
}

// dcMerge combines the solved halves c1 (k rows, sqre 1) and c2 (m2 rows,
// sqre) of a subproblem split at row k with α and β, as described at the
// top of the file.
func dcMerge(alpha, beta float64, c1, c2 dcNode, sqre, threads int) dcNode {
	const eps = 0x1p-53
	k := len(c1.s)
	m2 := len(c2.s)
	n := k + 1 + m2
	nc := n + sqre
	k1 := k + 1      // W₁ is k1×k1
	m2c := m2 + sqre // W₂ is m2c×m2c

	orgnrm := math.Max(math.Abs(alpha), math.Abs(beta))
	for _, x := range c1.s {
		orgnrm = math.Max(orgnrm, math.Abs(x))
	}
	for _, x := range c2.s {
		orgnrm = math.Max(orgnrm, math.Abs(x))
	}
	if orgnrm == 0 {
		orgnrm = 1 // B = 0: every z vanishes and everything deflates
	}
	alpha /= orgnrm
	beta /= orgnrm

	// The items of M; item 0 is the zero diagonal of W₁'s null column
	// (column k), merged with W₂'s (column n) when sqre = 1.
	items := make([]dcItem, n)
	z0 := alpha * c1.v[k*k1+k]
	gc, gs := 1.0, 0.0
	if sqre == 1 {
		zn := beta * c2.v[m2]
		if r := math.Hypot(z0, zn); r != 0 {
			gc, gs = z0/r, zn/r
			z0 = r
		}
	}
	items[0] = dcItem{d: 0, z: z0, row: 0, col: k}
	for j := 0; j < k; j++ {
		items[1+j] = dcItem{d: c1.s[j] / orgnrm, z: alpha * c1.v[k*k1+j], row: 1 + j, col: j}
	}
	for j := 0; j < m2; j++ {
		items[k1+j] = dcItem{d: c2.s[j] / orgnrm, z: beta * c2.v[j], row: k1 + j, col: k1 + j}
	}
	slices.SortFunc(items[1:], func(a, b dcItem) int {
		switch {
		case a.d < b.d:
			return -1
		case a.d > b.d:
			return 1
		}
		return 0
	})

	// Deflation.
	tol := 8 * eps // 8ε·max(|α|, |β|, max d) after scaling
	surv := make([]int, 1, n)
	var defl []int
	var rots []dcRot
	prev := -1
	for j := 1; j < n; j++ {
		it := &items[j]
		if math.Abs(it.z) <= tol {
			it.z = 0
			defl = append(defl, j)
			continue
		}
		if prev < 0 {
			prev = j
			continue
		}
		if p := &items[prev]; it.d-p.d <= tol {
			r := math.Hypot(p.z, it.z)
			c, s := it.z/r, p.z/r
			rots = append(rots, dcRot{a: p.row, b: it.row, ca: p.col, cb: it.col, c: c, s: s})
			it.z, p.z = r, 0
			defl = append(defl, prev)
		} else {
			surv = append(surv, prev)
		}
		prev = j
	}
	if prev >= 0 {
		surv = append(surv, prev)
	}
	K := len(surv)
	if K > 1 && math.Abs(items[0].z) <= tol/2 {
		// Keep 0 < σ₀ < d₁ strict (an O(tol) perturbation, as dlasd2).
		items[0].z = tol / 2
	}
	sd := make([]float64, K)
	sz := make([]float64, K)
	for t, j := range surv {
		sd[t], sz[t] = items[j].d, items[j].z
	}
	if K > 1 && sd[1] <= tol/2 {
		sd[1] = tol / 2
	}

	// The secular equation: roots, ẑ, vectors.
	zsq := 0.0
	for _, x := range sz {
		zsq += x * x
	}
	org := make([]int, K)
	mu := make([]float64, K)
	sigma := make([]float64, K)
	zeroM := zsq == 0 // K = 1 and z₀ = 0: M = 0; solve for z₀ = 1, then σ₀ = 0
	if zeroM {
		sz[0], zsq = 1, 1
	}
	dcParallel(threads, K, func(w, nw int) {
		del := make([]float64, K)
		for i := w; i < K; i += nw {
			org[i], mu[i] = dcRoot(i, sd, sz, zsq, del)
			sigma[i] = math.Sqrt(sd[org[i]]*sd[org[i]] + mu[i])
		}
	})
	if zeroM {
		sigma[0] = 0
	}
	// sd2 returns dⱼ² − σᵢ², accurately.
	sd2 := func(j, i int) float64 {
		o := sd[org[i]]
		return (sd[j]-o)*(sd[j]+o) - mu[i]
	}
	zh := make([]float64, K)
	dcParallel(threads, K, func(w, nw int) {
		for j := w; j < K; j += nw {
			dj := sd[j]
			p := math.Abs(sd2(j, K-1))
			for l := 0; l < j; l++ {
				p *= sd2(j, l) / ((sd[l] - dj) * (sd[l] + dj))
			}
			for l := j; l < K-1; l++ {
				p *= sd2(j, l) / ((sd[l+1] - dj) * (sd[l+1] + dj))
			}
			zh[j] = math.Copysign(math.Sqrt(math.Abs(p)), sz[j])
		}
	})
	su := make([]float64, n*n)   // Ŝ_U: rows of M × output columns
	sv := make([]float64, nc*nc) // Ŝ_V: columns of M × output columns
	dcParallel(threads, K, func(w, nw int) {
		uu := make([]float64, K)
		vv := make([]float64, K)
		for i := w; i < K; i += nw {
			un, vn := 1.0, 0.0
			uu[0] = -1
			for t := 0; t < K; t++ {
				x := zh[t] / sd2(t, i)
				vv[t] = x
				vn += x * x
				if t > 0 {
					uu[t] = sd[t] * x
					un += uu[t] * uu[t]
				}
			}
			un, vn = 1/math.Sqrt(un), 1/math.Sqrt(vn)
			for t, j := range surv {
				su[items[j].row*n+i] = uu[t] * un
				sv[items[j].col*nc+i] = vv[t] * vn
			}
		}
	})
	s := make([]float64, n)
	for i := 0; i < K; i++ {
		s[i] = sigma[i] * orgnrm
	}
	for q, j := range defl {
		s[K+q] = items[j].d * orgnrm
		su[items[j].row*n+K+q] = 1
		sv[items[j].col*nc+K+q] = 1
	}
	if sqre == 1 {
		sv[n*nc+n] = 1
	}
	// Û = G₁·…·G_p·Ŝ_U, V̂ = G₀·G₁·…·G_p·Ŝ_V.
	rot := func(x []float64, ld, a, b int, c, s float64) {
		ra, rb := x[a*ld:a*ld+ld], x[b*ld:b*ld+ld]
		for j := range ra {
			xa, xb := ra[j], rb[j]
			ra[j] = c*xa + s*xb
			rb[j] = -s*xa + c*xb
		}
	}
	for q := len(rots) - 1; q >= 0; q-- {
		r := rots[q]
		rot(su, n, r.a, r.b, r.c, r.s)
		rot(sv, nc, r.ca, r.cb, r.c, r.s)
	}
	if sqre == 1 {
		rot(sv, nc, k, n, gc, -gs)
	}

	// U = diag(U₁, 1, U₂)·Û (in B's row order), V = diag(W₁, W₂)·V̂.
	u := make([]float64, n*n)
	v := make([]float64, nc*nc)
	Dgemm(false, false, k, n, k, 1, c1.u, k, su[n:], n, 0, u, n)
	copy(u[k*n:k*n+n], su[:n])
	Dgemm(false, false, m2, n, m2, 1, c2.u, m2, su[k1*n:], n, 0, u[k1*n:], n)
	Dgemm(false, false, k1, nc, k1, 1, c1.v, k1, sv, nc, 0, v, nc)
	Dgemm(false, false, m2c, nc, m2c, 1, c2.v, m2c, sv[k1*nc:], nc, 0, v[k1*nc:], nc)
	return dcNode{s: s, u: u, v: v}
}

// dcRoot returns root i (0-based, ascending) of the secular equation
// 1 + Σⱼ zⱼ²/(dⱼ² − σ²) = 0 for 0 = d₀ < d₁ < … < d_{K−1} and non-zero z
// (zsq = Σ zⱼ²), as σᵢ² = d_o² + μ with o = i or i+1 the nearer pole. del
// is scratch of length K.
func dcRoot(i int, d, z []float64, zsq float64, del []float64) (o int, mu float64) {
	const eps = 0x1p-53
	K := len(d)
	var lo, hi float64
	if i == K-1 {
		o, lo, hi = K-1, 0, zsq
	} else {
		di := d[i]
		mid := (d[i+1] - di) * (d[i+1] + di) / 2
		w := 1.0
		for j, dj := range d {
			w += z[j] * z[j] / ((dj-di)*(dj+di) - mid)
		}
		if w >= 0 {
			o, lo, hi = i, 0, mid
		} else {
			o, lo, hi = i+1, -mid, 0
		}
	}
	do := d[o]
	for j, dj := range d {
		del[j] = (dj - do) * (dj + do)
	}
	mu = (lo + hi) / 2
	for iter := 0; iter < 200; iter++ {
		var psi, dpsi, phi, dphi float64
		for j := 0; j <= i; j++ {
			t := z[j] / (del[j] - mu)
			psi += z[j] * t
			dpsi += t * t
		}
		for j := i + 1; j < K; j++ {
			t := z[j] / (del[j] - mu)
			phi += z[j] * t
			dphi += t * t
		}
		w := 1 + psi + phi
		if w > 0 {
			hi = mu
		} else {
			lo = mu
		}
		if math.Abs(w) <= 8*eps*(1+phi-psi) || w == 0 {
			return o, mu
		}
		// Model f near mu by c + s/(δᵢ − x) + S/(δᵢ₊₁ − x) with s, S matching
		// the slopes of the two partial sums, and step to its root.
		eta, ok := 0.0, false
		da := del[i] - mu
		if i < K-1 {
			db := del[i+1] - mu
			s, S := da*da*dpsi, db*db*dphi
			c := w - s/da - S/db
			a := c*(da+db) + s + S
			b := da * db * w
			if c == 0 {
				if a != 0 {
					eta, ok = b/a, true
				}
			} else {
				q := a + math.Copysign(math.Sqrt(math.Max(a*a-4*b*c, 0)), a)
				if r := q / (2 * c); r > da && r < db {
					eta, ok = r, true
				} else if q != 0 {
					if r := 2 * b / q; r > da && r < db {
						eta, ok = r, true
					}
				}
			}
		} else {
			s := da * da * dpsi
			if c := w - s/da; c > 0 {
				eta, ok = da+s/c, true
			}
		}
		next := mu + eta
		if !ok || !(next > lo && next < hi) {
			next = lo + (hi-lo)/2
		}
		if next == mu || hi-lo <= 2*eps*math.Max(math.Abs(lo), math.Abs(hi)) {
			return o, next
		}
		mu = next
	}
	return o, mu
}

// dcParallel runs f(w, nw) for w = 0…nw−1 on nw = min(threads, …)
// goroutines (the caller included); f handles the indices ≡ w mod nw.
func dcParallel(threads, n int, f func(w, nw int)) {
	nw := min(threads, max(1, n/64))
	if nw <= 1 {
		f(0, 1)
		return
	}
	var wg sync.WaitGroup
	for w := 1; w < nw; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(w, nw)
		}()
	}
	f(0, nw)
	wg.Wait()
}
