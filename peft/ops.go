package peft

import (
	"fmt"
	"math"
)

// This file holds the linear-algebra and elementwise ops of the autograd.
// Each op computes its value in the forward pass and returns a Tensor whose
// backward function adds (+=) the op's contribution into the gradients of
// those inputs that need one. Shapes: rows are samples; n, m, k are sizes.

func shape2(a, b *Tensor, sep string) string {
	ar, ac := a.Dims()
	br, bc := b.Dims()
	return ShapeOf(ar, ac) + sep + ShapeOf(br, bc)
}

// MatMul returns a·b: a (n×k), b (k×m) → (n×m).
func MatMul(a, b *Tensor) *Tensor {
	n, k := a.Dims()
	k2, m := b.Dims()
	if k != k2 {
		panic(ShapeError{Op: "MatMul", Got: shape2(a, b, "·"), Want: "(n×k)·(k×m)"})
	}
	ad, bd := vals(a.Value), vals(b.Value)
	out, od := newDense(n, m)
	gemm(false, false, n, m, k, 1, ad, k, bd, m, 0, od, m)
	return newOp(out, func(o *Tensor) {
		dC := gdata(o) // (n×m)
		if a.NeedsGrad() {
			gemm(false, true, n, k, m, 1, dC, m, bd, m, 1, gdata(a), k) // dA (n×k) += dC·Bᵀ
		}
		if b.NeedsGrad() {
			gemm(true, false, k, m, n, 1, ad, k, dC, m, 1, gdata(b), m) // dB (k×m) += Aᵀ·dC
		}
	}, a, b)
}

// MatMulT returns a·bᵀ: a (n×k), b (m×k) → (n×m). It is the product of a
// Linear layer, x·Wᵀ, without forming Wᵀ.
func MatMulT(a, b *Tensor) *Tensor {
	n, k := a.Dims()
	m, k2 := b.Dims()
	if k != k2 {
		panic(ShapeError{Op: "MatMulT", Got: shape2(a, b, "·ᵀ"), Want: "(n×k)·(m×k)ᵀ"})
	}
	ad, bd := vals(a.Value), vals(b.Value)
	out, od := newDense(n, m)
	gemm(false, true, n, m, k, 1, ad, k, bd, k, 0, od, m)
	return newOp(out, func(o *Tensor) {
		dC := gdata(o) // (n×m)
		if a.NeedsGrad() {
			gemm(false, false, n, k, m, 1, dC, m, bd, k, 1, gdata(a), k) // dA (n×k) += dC·B
		}
		if b.NeedsGrad() {
			gemm(true, false, m, k, n, 1, dC, m, ad, k, 1, gdata(b), k) // dB (m×k) += dCᵀ·A
		}
	}, a, b)
}

func sameShape(op string, a, b *Tensor) (n, m int) {
	n, m = a.Dims()
	br, bc := b.Dims()
	if n != br || m != bc {
		panic(ShapeError{Op: op, Got: shape2(a, b, " and "), Want: "two matrices of one shape"})
	}
	return n, m
}

// Add returns a + b, both (n×m).
func Add(a, b *Tensor) *Tensor { return addSub("Add", a, b, 1) }

// Sub returns a − b, both (n×m).
func Sub(a, b *Tensor) *Tensor { return addSub("Sub", a, b, -1) }

func addSub(op string, a, b *Tensor, sb float64) *Tensor {
	n, m := sameShape(op, a, b)
	ad, bd := vals(a.Value), vals(b.Value)
	out, od := newDense(n, m)
	for i := range od {
		od[i] = ad[i] + sb*bd[i]
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		if a.NeedsGrad() {
			dA := gdata(a)
			for i, g := range dC {
				dA[i] += g
			}
		}
		if b.NeedsGrad() {
			dB := gdata(b)
			for i, g := range dC {
				dB[i] += sb * g
			}
		}
	}, a, b)
}

// Mul returns the Hadamard (elementwise) product a ⊙ b, both (n×m).
func Mul(a, b *Tensor) *Tensor {
	n, m := sameShape("Mul", a, b)
	ad, bd := vals(a.Value), vals(b.Value)
	out, od := newDense(n, m)
	for i := range od {
		od[i] = ad[i] * bd[i]
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		if a.NeedsGrad() {
			dA := gdata(a)
			for i, g := range dC {
				dA[i] += g * bd[i]
			}
		}
		if b.NeedsGrad() {
			dB := gdata(b)
			for i, g := range dC {
				dB[i] += g * ad[i]
			}
		}
	}, a, b)
}

// Div returns the elementwise quotient a / b, both (n×m).
func Div(a, b *Tensor) *Tensor {
	n, m := sameShape("Div", a, b)
	ad, bd := vals(a.Value), vals(b.Value)
	out, od := newDense(n, m)
	for i := range od {
		od[i] = ad[i] / bd[i]
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		if a.NeedsGrad() {
			dA := gdata(a)
			for i, g := range dC {
				dA[i] += g / bd[i] // ∂(a/b)/∂a = 1/b
			}
		}
		if b.NeedsGrad() {
			dB := gdata(b)
			for i, g := range dC {
				dB[i] -= g * od[i] / bd[i] // ∂(a/b)/∂b = −a/b²
			}
		}
	}, a, b)
}

// Affine returns x·Wᵀ + b, a Linear layer's product in one op: x (n×k),
// w (m×k), b (1×m) or nil → (n×m).
func Affine(x, w, b *Tensor) *Tensor {
	n, k := x.Dims()
	m, k2 := w.Dims()
	if k != k2 {
		panic(ShapeError{Op: "Affine", Got: shape2(x, w, "·ᵀ"), Want: "x (n×k), W (m×k)"})
	}
	var bd []float64
	if b != nil {
		if br, bc := b.Dims(); br != 1 || bc != m {
			panic(ShapeError{Op: "Affine", Got: "W " + ShapeOf(m, k) + ", b " + ShapeOf(br, bc), Want: fmt.Sprintf("b (1×%d)", m)})
		}
		bd = vals(b.Value)
	}
	xd, wd := vals(x.Value), vals(w.Value)
	out, od := newDense(n, m)
	beta := 0.0
	if bd != nil {
		for i := 0; i < n; i++ {
			copy(od[i*m:(i+1)*m], bd) // start every row from b
		}
		beta = 1
	}
	gemm(false, true, n, m, k, 1, xd, k, wd, k, beta, od, m) // += x·Wᵀ
	return newOp(out, func(o *Tensor) {
		dY := gdata(o) // (n×m)
		if x.NeedsGrad() {
			gemm(false, false, n, k, m, 1, dY, m, wd, k, 1, gdata(x), k) // dX (n×k) += dY·W
		}
		if w.NeedsGrad() {
			gemm(true, false, m, k, n, 1, dY, m, xd, k, 1, gdata(w), k) // dW (m×k) += dYᵀ·x
		}
		if b != nil && b.NeedsGrad() {
			dB := gdata(b) // (1×m) += column sums of dY
			for i := 0; i < n; i++ {
				for j, g := range dY[i*m : (i+1)*m] {
					dB[j] += g
				}
			}
		}
	}, x, w, b)
}

// rowShape panics unless row is (1×m) for a (n×m).
func rowShape(op string, a, row *Tensor) (n, m int) {
	n, m = a.Dims()
	rr, rc := row.Dims()
	if rr != 1 || rc != m {
		panic(ShapeError{Op: op, Got: shape2(a, row, " and "), Want: fmt.Sprintf("(n×m) and (1×m) with m = %d", m)})
	}
	return n, m
}

// AddRow returns a + row broadcast over the rows: a (n×m), row (1×m) → (n×m).
// It adds a bias to a batch.
func AddRow(a, row *Tensor) *Tensor {
	n, m := rowShape("AddRow", a, row)
	ad, rd := vals(a.Value), vals(row.Value)
	out, od := newDense(n, m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			od[i*m+j] = ad[i*m+j] + rd[j]
		}
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		if a.NeedsGrad() {
			dA := gdata(a)
			for i, g := range dC {
				dA[i] += g
			}
		}
		if row.NeedsGrad() {
			dR := gdata(row) // (1×m) += column sums of dC
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dR[j] += dC[i*m+j]
				}
			}
		}
	}, a, row)
}

// MulRow returns a with column j scaled by row[j]: a (n×m), row (1×m) →
// (n×m), out[i,j] = a[i,j]·row[j].
func MulRow(a, row *Tensor) *Tensor {
	n, m := rowShape("MulRow", a, row)
	ad, rd := vals(a.Value), vals(row.Value)
	out, od := newDense(n, m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			od[i*m+j] = ad[i*m+j] * rd[j]
		}
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		if a.NeedsGrad() {
			dA := gdata(a)
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dA[i*m+j] += dC[i*m+j] * rd[j]
				}
			}
		}
		if row.NeedsGrad() {
			dR := gdata(row)
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dR[j] += dC[i*m+j] * ad[i*m+j]
				}
			}
		}
	}, a, row)
}

// MulCol returns a with row i scaled by col[i]: a (n×m), col (n×1) → (n×m),
// out[i,j] = a[i,j]·col[i].
func MulCol(a, col *Tensor) *Tensor {
	n, m := a.Dims()
	cr, cc := col.Dims()
	if cr != n || cc != 1 {
		panic(ShapeError{Op: "MulCol", Got: shape2(a, col, " and "), Want: fmt.Sprintf("(n×m) and (n×1) with n = %d", n)})
	}
	ad, cd := vals(a.Value), vals(col.Value)
	out, od := newDense(n, m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			od[i*m+j] = ad[i*m+j] * cd[i]
		}
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		if a.NeedsGrad() {
			dA := gdata(a)
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dA[i*m+j] += dC[i*m+j] * cd[i]
				}
			}
		}
		if col.NeedsGrad() {
			dc := gdata(col)
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dc[i] += dC[i*m+j] * ad[i*m+j]
				}
			}
		}
	}, a, col)
}

// Scale returns s·a.
func Scale(a *Tensor, s float64) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(n, m)
	for i, v := range ad {
		od[i] = s * v
	}
	return newOp(out, func(o *Tensor) {
		dA := gdata(a)
		for i, g := range gdata(o) {
			dA[i] += s * g
		}
	}, a)
}

// Transpose returns aᵀ: (n×m) → (m×n).
func Transpose(a *Tensor) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(m, n)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			od[j*n+i] = ad[i*m+j]
		}
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		for i := 0; i < n; i++ {
			for j := 0; j < m; j++ {
				dA[i*m+j] += dC[j*n+i]
			}
		}
	}, a)
}

// Detach returns a tensor with a's value (shared, not copied) through which
// no gradient flows back: DoRA's detached norm, a target held fixed.
func Detach(a *Tensor) *Tensor { return NewConst(a.Value) }

// RowNorms returns the Euclidean norm of each row: (n×m) → (n×1). The
// gradient of a zero row is taken as zero.
func RowNorms(a *Tensor) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(n, 1)
	for i := 0; i < n; i++ {
		var s float64
		for _, v := range ad[i*m : (i+1)*m] {
			s += v * v
		}
		od[i] = math.Sqrt(s)
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		for i := 0; i < n; i++ {
			if od[i] == 0 {
				continue
			}
			f := dC[i] / od[i] // ∂‖a_i‖/∂a_ij = a_ij/‖a_i‖
			for j := 0; j < m; j++ {
				dA[i*m+j] += f * ad[i*m+j]
			}
		}
	}, a)
}

// FrobeniusNorm returns ‖a‖_F = √(Σ a_ij²): (n×m) → (1×1).
func FrobeniusNorm(a *Tensor) *Tensor {
	ad := vals(a.Value)
	var s float64
	for _, v := range ad {
		s += v * v
	}
	nrm := math.Sqrt(s)
	return newOp(newScalar(nrm), func(o *Tensor) {
		if nrm == 0 {
			return
		}
		f := gdata(o)[0] / nrm
		dA := gdata(a)
		for i, v := range ad {
			dA[i] += f * v
		}
	}, a)
}

// SumAll returns the sum of a's elements: (n×m) → (1×1).
func SumAll(a *Tensor) *Tensor { return sumScaled(a, 1) }

// Mean returns the mean of a's elements: (n×m) → (1×1).
func Mean(a *Tensor) *Tensor {
	n, m := a.Dims()
	return sumScaled(a, 1/float64(n*m))
}

func sumScaled(a *Tensor, f float64) *Tensor {
	ad := vals(a.Value)
	var s float64
	for _, v := range ad {
		s += v
	}
	return newOp(newScalar(f*s), func(o *Tensor) {
		g := f * gdata(o)[0]
		dA := gdata(a)
		for i := range dA {
			dA[i] += g
		}
	}, a)
}

// SumRows returns the sum over rows (the column sums): (n×m) → (1×m).
func SumRows(a *Tensor) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(1, m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			od[j] += ad[i*m+j]
		}
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		for i := 0; i < n; i++ {
			for j := 0; j < m; j++ {
				dA[i*m+j] += dC[j]
			}
		}
	}, a)
}

// Slice returns the block a[r0:r1, c0:c1] as a new (r1−r0 × c1−c0) tensor.
func Slice(a *Tensor, r0, r1, c0, c1 int) *Tensor {
	n, m := a.Dims()
	if r0 < 0 || r1 > n || r0 >= r1 || c0 < 0 || c1 > m || c0 >= c1 {
		panic(ShapeError{Op: "Slice", Got: fmt.Sprintf("[%d:%d, %d:%d] of %s", r0, r1, c0, c1, ShapeOf(n, m)),
			Want: fmt.Sprintf("0 ≤ r0 < r1 ≤ %d and 0 ≤ c0 < c1 ≤ %d", n, m)})
	}
	ad := vals(a.Value)
	h, w := r1-r0, c1-c0
	out, od := newDense(h, w)
	for i := 0; i < h; i++ {
		copy(od[i*w:(i+1)*w], ad[(r0+i)*m+c0:(r0+i)*m+c1])
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				dA[(r0+i)*m+c0+j] += dC[i*w+j]
			}
		}
	}, a)
}

// ConcatCols places tensors side by side: (n×m₁), (n×m₂), … → (n×Σmᵢ).
func ConcatCols(ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic(ArgError{Op: "ConcatCols", Msg: "no tensors"})
	}
	n, _ := ts[0].Dims()
	total := 0
	for _, t := range ts {
		r, c := t.Dims()
		if r != n {
			panic(ShapeError{Op: "ConcatCols", Got: shape2(ts[0], t, " and "), Want: fmt.Sprintf("all with %d rows", n)})
		}
		total += c
	}
	out, od := newDense(n, total)
	off := 0
	for _, t := range ts {
		_, c := t.Dims()
		td := vals(t.Value)
		for i := 0; i < n; i++ {
			copy(od[i*total+off:i*total+off+c], td[i*c:(i+1)*c])
		}
		off += c
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		off := 0
		for _, t := range ts {
			_, c := t.Dims()
			if t.NeedsGrad() {
				dT := gdata(t)
				for i := 0; i < n; i++ {
					for j := 0; j < c; j++ {
						dT[i*c+j] += dC[i*total+off+j]
					}
				}
			}
			off += c
		}
	}, ts...)
}

// ConcatRows stacks tensors: (n₁×m), (n₂×m), … → (Σnᵢ×m).
func ConcatRows(ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic(ArgError{Op: "ConcatRows", Msg: "no tensors"})
	}
	_, m := ts[0].Dims()
	total := 0
	for _, t := range ts {
		r, c := t.Dims()
		if c != m {
			panic(ShapeError{Op: "ConcatRows", Got: shape2(ts[0], t, " and "), Want: fmt.Sprintf("all with %d columns", m)})
		}
		total += r
	}
	out, od := newDense(total, m)
	off := 0
	for _, t := range ts {
		r, _ := t.Dims()
		copy(od[off*m:(off+r)*m], vals(t.Value))
		off += r
	}
	return newOp(out, func(o *Tensor) {
		dC := gdata(o)
		off := 0
		for _, t := range ts {
			r, _ := t.Dims()
			if t.NeedsGrad() {
				dT := gdata(t)
				for i, g := range dC[off*m : (off+r)*m] {
					dT[i] += g
				}
			}
			off += r
		}
	}, ts...)
}
