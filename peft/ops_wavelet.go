package peft

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// This file holds the orthonormal 2-D Haar discrete wavelet transform of a
// matrix and its inverse, as autograd ops (DWT, IDWT) and as plain
// functions on *mat.Dense (HaarDWT, HaarIDWT) for use outside autograd.
//
// One level of the transform of X (d×k, d and k even) takes each 2×2 block
//
//	[a b]   = X[2i:2i+2, 2j:2j+2],   i < d/2, j < k/2
//	[c e]
//
// to one coefficient in each of four subbands (d/2 × k/2):
//
//	LL[i,j] = (a + b + c + e)/2     low  down the columns, low  along the rows
//	LH[i,j] = (a − b + c − e)/2     low  down the columns, high along the rows
//	HL[i,j] = (a + b − c − e)/2     high down the columns, low  along the rows
//	HH[i,j] = (a − b − c + e)/2     high down the columns, high along the rows
//
// laid out in quadrants of a d×k matrix:
//
//	DWT(X) = [LL LH]      (d×k)
//	         [HL HH]
//
// The first letter is the filter applied over the row index i (down each
// column), the second over the column index j (along each row); the
// high-pass filter is (x_even − x_odd)/√2. In matrix form DWT(X) =
// P_d·X·P_kᵀ, with P_n (n×n) the orthogonal one-dimensional Haar matrix
// whose first n/2 rows are the low-pass (e_2i + e_2i+1)/√2 and whose last
// n/2 are the high-pass (e_2i − e_2i+1)/√2. Libraries differ in which
// detail band they call LH or HL ("horizontal", "vertical") and in the
// sign of the high-pass filter; here the formulas above define them.
//
// The transform is orthonormal, so IDWT(C) = P_dᵀ·C·P_k is both its
// inverse and its adjoint, ‖DWT(X)‖_F = ‖X‖_F, and the backward pass of
// each op is the other op: dX += IDWT(dC) for DWT, dC += DWT(dX) for IDWT.
//
// With levels > 1 the transform is applied again to the LL quadrant, level
// after level (Mallat's pyramid): level l works on the top-left
// (d/2^(l−1) × k/2^(l−1)) block, so d and k must be multiples of 2^levels.
// The multi-level transform is orthonormal too.

// checkHaar panics unless levels ≥ 1 and d, k are multiples of 2^levels.
func checkHaar(op string, d, k, levels int) {
	if levels < 1 {
		panic(ArgError{Op: op, Msg: fmt.Sprintf("levels = %d; want levels ≥ 1", levels)})
	}
	if levels > 30 || d%(1<<levels) != 0 || k%(1<<levels) != 0 || d == 0 || k == 0 {
		want := "both dimensions even"
		if levels > 1 {
			want = fmt.Sprintf("both dimensions multiples of 2^levels = %d (levels = %d)", 1<<min(levels, 30), levels)
		}
		panic(ShapeError{Op: op, Got: ShapeOf(d, k), Want: want})
	}
}

// haarForwardBlock writes one level of the Haar DWT of the h×w block at the
// top left of src (row stride ld) into the h×w block at the top left of
// dst (row stride ld), in the quadrant layout [LL LH; HL HH]. dst and src
// must not overlap.
func haarForwardBlock(dst, src []float64, h, w, ld int) {
	h2, w2 := h/2, w/2
	for i := 0; i < h2; i++ {
		r0, r1 := src[2*i*ld:], src[(2*i+1)*ld:] // rows 2i and 2i+1
		ll, lh := dst[i*ld:], dst[i*ld+w2:]
		hl, hh := dst[(h2+i)*ld:], dst[(h2+i)*ld+w2:]
		for j := 0; j < w2; j++ {
			a, b := r0[2*j], r0[2*j+1]
			c, e := r1[2*j], r1[2*j+1]
			ll[j] = 0.5 * (a + b + c + e)
			lh[j] = 0.5 * (a - b + c - e)
			hl[j] = 0.5 * (a + b - c - e)
			hh[j] = 0.5 * (a - b - c + e)
		}
	}
}

// haarInverseBlock writes one level of the inverse Haar DWT of the h×w
// block at the top left of src (row stride ld, quadrants [LL LH; HL HH])
// into the h×w block at the top left of dst (row stride ld). dst and src
// must not overlap.
func haarInverseBlock(dst, src []float64, h, w, ld int) {
	h2, w2 := h/2, w/2
	for i := 0; i < h2; i++ {
		ll, lh := src[i*ld:], src[i*ld+w2:]
		hl, hh := src[(h2+i)*ld:], src[(h2+i)*ld+w2:]
		r0, r1 := dst[2*i*ld:], dst[(2*i+1)*ld:]
		for j := 0; j < w2; j++ {
			p, q, u, v := ll[j], lh[j], hl[j], hh[j]
			r0[2*j] = 0.5 * (p + q + u + v)
			r0[2*j+1] = 0.5 * (p - q + u - v)
			r1[2*j] = 0.5 * (p + q - u - v)
			r1[2*j+1] = 0.5 * (p - q - u + v)
		}
	}
}

// haarGeneric writes the levels-level Haar DWT (or, if inverse, its
// inverse) of x (d×k, compact) into c (d×k, compact, not overlapping x).
func haarGeneric(c, x []float64, d, k, levels int, inverse bool) {
	if levels == 1 { // the usual case: one pass, no copies
		if inverse {
			haarInverseBlock(c, x, d, k, k)
		} else {
			haarForwardBlock(c, x, d, k, k)
		}
		return
	}
	// Levels ≥ 2 rework the top-left (h×w) block of a d×k matrix m in place,
	// through a copy of that block (row stride k).
	scratch := make([]float64, d/2*k)
	step := func(m []float64, h, w int) {
		for i := 0; i < h; i++ {
			copy(scratch[i*k:i*k+w], m[i*k:i*k+w])
		}
		if inverse {
			haarInverseBlock(m, scratch, h, w, k)
		} else {
			haarForwardBlock(m, scratch, h, w, k)
		}
	}
	if !inverse {
		haarForwardBlock(c, x, d, k, k) // level 1
		for l := 1; l < levels; l++ {
			step(c, d>>l, k>>l)
		}
		return
	}
	m := append([]float64(nil), x...) // x is read-only
	for l := levels - 1; l >= 1; l-- {
		step(m, d>>l, k>>l)
	}
	haarInverseBlock(c, m, d, k, k) // level 1
}

// haarTo is HaarDWT (inverse false) or HaarIDWT (inverse true).
func haarTo(op string, dst, x *mat.Dense, levels int, inverse bool) {
	d, k := x.Dims()
	checkHaar(op, d, k, levels)
	if dst.IsEmpty() {
		dst.ReuseAs(d, k)
	} else if r, c := dst.Dims(); r != d || c != k {
		panic(ShapeError{Op: op, Got: "dst " + ShapeOf(r, c) + ", x " + ShapeOf(d, k), Want: "dst of x's shape"})
	}
	out := make([]float64, d*k)
	haarGeneric(out, vals(x), d, k, levels, inverse)
	dst.Copy(mat.NewDense(d, k, out)) // dst may be x
}

// HaarDWT writes into dst the levels-level orthonormal 2-D Haar DWT of x
// (d×k), in the quadrant layout [LL LH; HL HH] described above: P_d·X·P_kᵀ
// for one level. A zero-value dst is resized; dst may be x. It panics
// with a ShapeError naming x's shape unless d and k are multiples of
// 2^levels, or if a non-empty dst is not (d×k), and with an ArgError if
// levels < 1.
func HaarDWT(dst, x *mat.Dense, levels int) { haarTo("HaarDWT", dst, x, levels, false) }

// HaarIDWT writes into dst the inverse of HaarDWT applied to c (d×k): X
// with HaarDWT(X) = c, P_dᵀ·C·P_k for one level. Shapes and panics are
// HaarDWT's.
func HaarIDWT(dst, c *mat.Dense, levels int) { haarTo("HaarIDWT", dst, c, levels, true) }

// DWT returns the levels-level orthonormal 2-D Haar DWT of a (d×k) → (d×k),
// quadrants [LL LH; HL HH] (see HaarDWT). Its backward is the adjoint,
// which for an orthonormal transform is the inverse: dA += IDWT(dC). It
// panics with a ShapeError naming a's shape unless d and k are multiples
// of 2^levels.
func DWT(a *Tensor, levels int) *Tensor { return haarOp("DWT", a, levels, false) }

// IDWT returns the inverse of DWT applied to a (d×k) → (d×k). Its backward
// is DWT: dA += DWT(dC). Panics as DWT.
func IDWT(a *Tensor, levels int) *Tensor { return haarOp("IDWT", a, levels, true) }

func haarOp(op string, a *Tensor, levels int, inverse bool) *Tensor {
	d, k := a.Dims()
	checkHaar(op, d, k, levels)
	out, od := newDense(d, k)
	haarGeneric(od, vals(a.Value), d, k, levels, inverse)
	return newOp(out, func(o *Tensor) {
		g := make([]float64, d*k) // the adjoint of the forward map applied to dC
		haarGeneric(g, gdata(o), d, k, levels, !inverse)
		dA := gdata(a)
		for i, v := range g {
			dA[i] += v
		}
	}, a)
}
