package peft

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// randParam returns a trainable (r×c) tensor with entries uniform in
// [lo, hi), drawn from rng.
func randParam(rng *rand.Rand, name string, r, c int, lo, hi float64) *Tensor {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = lo + (hi-lo)*rng.Float64()
	}
	return NewParam(name, mat.NewDense(r, c, d))
}

// weightedSumRef returns Σ w_ij·out_ij as a scalar tensor: a test-only loss
// with a hand-written backward of its own, so that the op under test is the
// only new code between the loss and its inputs.
func weightedSumRef(out *Tensor, w []float64) *Tensor {
	od := vals(out.Value)
	var s float64
	for i, v := range od {
		s += w[i] * v
	}
	return newOp(newScalar(s), func(o *Tensor) {
		g := gdata(o)[0]
		dO := gdata(out)
		for i := range dO {
			dO[i] += g * w[i]
		}
	}, out)
}

// checkGrad compares the gradients of L = Σ w⊙f() (w fixed random weights)
// with respect to params against central differences, reports the largest
// relative error, and checks that a second Backward doubles every gradient.
func checkGrad(t *testing.T, params []*Tensor, f func() *Tensor, tol float64) {
	t.Helper()
	rng := rand.New(rand.NewSource(7)) // Always the same seed for reproducible results.
	r, c := f().Dims()
	w := make([]float64, r*c)
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	loss := func() float64 { return weightedSumRef(f(), w).Scalar() }

	for _, p := range params {
		p.ZeroGrad()
	}
	L := weightedSumRef(f(), w)
	L.Backward()
	grads := make([][]float64, len(params))
	for i, p := range params {
		grads[i] = append([]float64(nil), vals(p.Grad)...)
	}

	var maxRel float64
	for i, p := range params {
		x0 := append([]float64(nil), vals(p.Value)...)
		_, c := p.Dims()
		set := func(x []float64) { // element by element: p.Value may be a view
			for j, v := range x {
				p.Value.Set(j/c, j%c, v)
			}
		}
		num := fd.Gradient(nil, func(x []float64) float64 {
			set(x)
			return loss()
		}, x0, &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		for j := range num {
			a, n := grads[i][j], num[j]
			rel := math.Abs(a-n) / math.Max(math.Max(math.Abs(a), math.Abs(n)), 1e-3)
			if rel > maxRel {
				maxRel = rel
			}
			if rel > tol {
				t.Errorf("%s[%d]: analytic %.10g, central difference %.10g (rel err %.2e)", p.Name, j, a, n, rel)
			}
		}
	}
	t.Logf("max rel error %.2e", maxRel)

	// Backward again on the same graph: parameters' gradients add up.
	L.Backward()
	for i, p := range params {
		for j, g := range vals(p.Grad) {
			if want := 2 * grads[i][j]; math.Abs(g-want) > 1e-12*math.Max(1, math.Abs(want)) {
				t.Errorf("Backward twice: %s[%d] = %g, want 2×%g", p.Name, j, g, grads[i][j])
			}
		}
	}
}

func TestOpGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	P := func(name string, r, c int) *Tensor { return randParam(rng, name, r, c, -1, 1) }
	pos := func(name string, r, c int) *Tensor { return randParam(rng, name, r, c, 0.5, 2) }
	a53, b34, b43 := P("a", 5, 3), P("b", 3, 4), P("b", 4, 3)
	x35, y35, z35 := P("x", 3, 5), P("y", 3, 5), pos("z", 3, 5)
	row, col := P("row", 1, 5), P("col", 3, 1)
	away := randParam(rng, "x", 3, 5, 0.1, 1.5) // ReLU input away from its kink
	for i, v := range vals(away.Value) {
		if i%2 == 0 {
			vals(away.Value)[i] = -v
		}
	}
	gain, bias, bias4 := P("gain", 1, 5), P("bias", 1, 5), P("bias4", 1, 4)
	table := P("table", 7, 3)
	logits := P("logits", 4, 7)
	// Attention: B = 2 sequences of T = 3, C = 6, 2 heads of hd = 3.
	q, k, v := P("q", 6, 6), P("k", 6, 6), P("v", 6, 6)

	cases := []struct {
		name   string
		params []*Tensor
		f      func() *Tensor
	}{
		{"MatMul", []*Tensor{a53, b34}, func() *Tensor { return MatMul(a53, b34) }},
		{"MatMulT", []*Tensor{a53, b43}, func() *Tensor { return MatMulT(a53, b43) }},
		{"Affine", []*Tensor{a53, b43, bias4}, func() *Tensor { return Affine(a53, b43, bias4) }},
		{"AffineNoBias", []*Tensor{a53, b43}, func() *Tensor { return Affine(a53, b43, nil) }},
		{"Add", []*Tensor{x35, y35}, func() *Tensor { return Add(x35, y35) }},
		{"Sub", []*Tensor{x35, y35}, func() *Tensor { return Sub(x35, y35) }},
		{"Mul", []*Tensor{x35, y35}, func() *Tensor { return Mul(x35, y35) }},
		{"MulSelf", []*Tensor{x35}, func() *Tensor { return Mul(x35, x35) }},
		{"Div", []*Tensor{x35, z35}, func() *Tensor { return Div(x35, z35) }},
		{"AddRow", []*Tensor{x35, row}, func() *Tensor { return AddRow(x35, row) }},
		{"MulRow", []*Tensor{x35, row}, func() *Tensor { return MulRow(x35, row) }},
		{"MulCol", []*Tensor{x35, col}, func() *Tensor { return MulCol(x35, col) }},
		{"Scale", []*Tensor{x35}, func() *Tensor { return Scale(x35, -2.5) }},
		{"Transpose", []*Tensor{a53}, func() *Tensor { return Transpose(a53) }},
		{"RowNorms", []*Tensor{x35}, func() *Tensor { return RowNorms(x35) }},
		{"FrobeniusNorm", []*Tensor{x35}, func() *Tensor { return FrobeniusNorm(x35) }},
		{"SumAll", []*Tensor{x35}, func() *Tensor { return SumAll(x35) }},
		{"Mean", []*Tensor{x35}, func() *Tensor { return Mean(x35) }},
		{"SumRows", []*Tensor{x35}, func() *Tensor { return SumRows(x35) }},
		{"Slice", []*Tensor{x35}, func() *Tensor { return Slice(x35, 1, 3, 1, 4) }},
		{"ConcatCols", []*Tensor{x35, col, y35}, func() *Tensor { return ConcatCols(x35, col, y35) }},
		{"ConcatRows", []*Tensor{x35, row, y35}, func() *Tensor { return ConcatRows(x35, row, y35) }},
		{"GELU", []*Tensor{x35}, func() *Tensor { return GELU(x35) }},
		{"ReLU", []*Tensor{away}, func() *Tensor { return ReLU(away) }},
		{"Tanh", []*Tensor{x35}, func() *Tensor { return Tanh(x35) }},
		{"Softmax", []*Tensor{x35}, func() *Tensor { return Softmax(x35) }},
		{"LayerNorm", []*Tensor{x35, gain, bias}, func() *Tensor { return LayerNorm(x35, gain, bias) }},
		{"LayerNormNoAffine", []*Tensor{x35}, func() *Tensor { return LayerNorm(x35, nil, nil) }},
		{"Embedding", []*Tensor{table}, func() *Tensor { return Embedding(table, []int{3, 0, 3, 6, 2}) }},
		{"CrossEntropy", []*Tensor{logits}, func() *Tensor { return CrossEntropy(logits, []int{2, 6, 0, 2}) }},
		{"CausalSelfAttention", []*Tensor{q, k, v}, func() *Tensor { return CausalSelfAttention(q, k, v, 2, 2) }},
		{"Dropout", []*Tensor{x35}, func() *Tensor { return Dropout(x35, 0.4, rand.New(rand.NewSource(3)), true) }},
		{"DropoutEval", []*Tensor{x35}, func() *Tensor { return Scale(Dropout(x35, 0.4, nil, false), 1) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c.params, c.f, 1e-5) })
	}
}

// TestDetach checks that no gradient flows through Detach while the value is
// the same.
func TestDetach(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	x := randParam(rng, "x", 3, 2, -1, 1)
	d := Detach(x)
	if !mat.Equal(d.Value, x.Value) {
		t.Fatal("Detach changed the value")
	}
	L := SumAll(Add(Mul(x, x), d))
	L.Backward()
	for i, g := range vals(x.Grad) {
		if want := 2 * vals(x.Value)[i]; math.Abs(g-want) > 1e-15 {
			t.Errorf("grad[%d] = %g, want %g (only the undetached path)", i, g, want)
		}
	}
}

// matmulNaive is the reference for MatMul, used only for testing.
func matmulNaive(a, b *mat.Dense) *mat.Dense {
	n, k := a.Dims()
	_, m := b.Dims()
	c := mat.NewDense(n, m, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += a.At(i, p) * b.At(p, j)
			}
			c.Set(i, j, s)
		}
	}
	return c
}

// attentionRef is the reference for CausalSelfAttention, written position by
// position with no matrix products, used only for testing.
func attentionRef(q, k, v *mat.Dense, batch, heads int) *mat.Dense {
	N, C := q.Dims()
	T, hd := N/batch, C/heads
	out := mat.NewDense(N, C, nil)
	for b := 0; b < batch; b++ {
		for h := 0; h < heads; h++ {
			for t := 0; t < T; t++ {
				s := make([]float64, t+1)
				for u := 0; u <= t; u++ {
					for j := 0; j < hd; j++ {
						s[u] += q.At(b*T+t, h*hd+j) * k.At(b*T+u, h*hd+j)
					}
					s[u] /= math.Sqrt(float64(hd))
				}
				softmaxRow(s, s)
				for j := 0; j < hd; j++ {
					var o float64
					for u := 0; u <= t; u++ {
						o += s[u] * v.At(b*T+u, h*hd+j)
					}
					out.Set(b*T+t, h*hd+j, o)
				}
			}
		}
	}
	return out
}

func TestOpsAgainstReferences(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, n := range []int{1, 3, 7, 33} {
		a := randParam(rng, "a", n, n+2, -1, 1)
		b := randParam(rng, "b", n+2, 5, -1, 1)
		if got, want := MatMul(a, b).Value, matmulNaive(a.Value, b.Value); !mat.EqualApprox(got, want, 1e-12) {
			t.Errorf("MatMul n=%d differs from matmulNaive", n)
		}
	}
	q, k, v := randParam(rng, "q", 15, 8, -2, 2), randParam(rng, "k", 15, 8, -2, 2), randParam(rng, "v", 15, 8, -2, 2)
	got := CausalSelfAttention(q, k, v, 3, 4).Value
	if want := attentionRef(q.Value, k.Value, v.Value, 3, 4); !mat.EqualApprox(got, want, 1e-12) {
		t.Errorf("CausalSelfAttention differs from attentionRef:\n%v\n%v", mat.Formatted(got), mat.Formatted(want))
	}
	// Causality: changing the last position of each sequence changes no
	// earlier output.
	for b := 0; b < 3; b++ {
		k.Value.Set(b*5+4, 0, 100)
		v.Value.Set(b*5+4, 1, -100)
	}
	got2 := CausalSelfAttention(q, k, v, 3, 4).Value
	for b := 0; b < 3; b++ {
		for tt := 0; tt < 4; tt++ {
			for j := 0; j < 8; j++ {
				if got.At(b*5+tt, j) != got2.At(b*5+tt, j) {
					t.Fatalf("output (%d,%d) depends on a later position", b*5+tt, j)
				}
			}
		}
	}
	// Softmax rows sum to one; LayerNorm rows have mean 0, variance ≈ 1.
	x := randParam(rng, "x", 4, 9, -3, 3)
	s, ln := Softmax(x).Value, LayerNorm(x, nil, nil).Value
	for i := 0; i < 4; i++ {
		if sum := mat.Sum(s.RowView(i)); math.Abs(sum-1) > 1e-14 {
			t.Errorf("softmax row %d sums to %g", i, sum)
		}
		var mu, vr float64
		for j := 0; j < 9; j++ {
			mu += ln.At(i, j) / 9
		}
		for j := 0; j < 9; j++ {
			vr += (ln.At(i, j) - mu) * (ln.At(i, j) - mu) / 9
		}
		if math.Abs(mu) > 1e-14 || math.Abs(vr-1) > 1e-3 {
			t.Errorf("LayerNorm row %d: mean %g, variance %g", i, mu, vr)
		}
	}
}

func TestOpShapeErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	a, b := randParam(rng, "a", 2, 3, -1, 1), randParam(rng, "b", 4, 5, -1, 1)
	cases := []struct {
		name string
		f    func()
		want []string
	}{
		{"MatMul", func() { MatMul(a, b) }, []string{"MatMul", "(2×3)", "(4×5)"}},
		{"MatMulT", func() { MatMulT(a, b) }, []string{"MatMulT", "(2×3)", "(4×5)"}},
		{"Affine", func() { Affine(a, b, nil) }, []string{"Affine", "(2×3)", "(4×5)"}},
		{"AffineBias", func() { Affine(a, a, b) }, []string{"Affine", "(2×3)", "(4×5)"}},
		{"Add", func() { Add(a, b) }, []string{"Add", "(2×3)", "(4×5)"}},
		{"Sub", func() { Sub(a, b) }, []string{"Sub", "(2×3)", "(4×5)"}},
		{"Mul", func() { Mul(a, b) }, []string{"Mul", "(2×3)", "(4×5)"}},
		{"Div", func() { Div(a, b) }, []string{"Div", "(2×3)", "(4×5)"}},
		{"AddRow", func() { AddRow(a, b) }, []string{"AddRow", "(2×3)", "(4×5)"}},
		{"MulRow", func() { MulRow(a, b) }, []string{"MulRow", "(2×3)", "(4×5)"}},
		{"MulCol", func() { MulCol(a, b) }, []string{"MulCol", "(2×3)", "(4×5)"}},
		{"Slice", func() { Slice(a, 0, 3, 0, 1) }, []string{"Slice", "(2×3)"}},
		{"ConcatCols", func() { ConcatCols(a, b) }, []string{"ConcatCols", "(2×3)", "(4×5)"}},
		{"ConcatRows", func() { ConcatRows(a, b) }, []string{"ConcatRows", "(2×3)", "(4×5)"}},
		{"LayerNorm", func() { LayerNorm(a, b, nil) }, []string{"LayerNorm", "(2×3)", "(4×5)"}},
		{"CrossEntropy", func() { CrossEntropy(a, []int{0}) }, []string{"CrossEntropy", "(2×3)"}},
		{"Attention", func() { CausalSelfAttention(a, b, a, 1, 1) }, []string{"CausalSelfAttention", "(2×3)", "(4×5)"}},
		{"AttentionHeads", func() { CausalSelfAttention(a, a, a, 1, 2) }, []string{"CausalSelfAttention", "heads 2"}},
	}
	for _, c := range cases {
		err := Maybe(c.f)
		var se ShapeError
		if !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a ShapeError", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", c.name, err, w)
			}
		}
	}
	for name, f := range map[string]func(){
		"Embedding":    func() { Embedding(a, []int{2}) },
		"CrossEntropy": func() { CrossEntropy(a, []int{0, 3}) },
		"Dropout":      func() { Dropout(a, 1, nil, true) },
	} {
		var ae ArgError
		if err := Maybe(f); !errors.As(err, &ae) {
			t.Errorf("%s: got %v, want an ArgError", name, err)
		}
	}
}

// TestFrozenInputsGetNoGradient checks that a backward pass allocates no
// gradient for a frozen weight, so a frozen base costs only its forward.
func TestFrozenInputsGetNoGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	w := randParam(rng, "w", 4, 3, -1, 1)
	w.Freeze()
	x := randParam(rng, "x", 2, 3, -1, 1)
	SumAll(MatMulT(x, w)).Backward()
	if w.Grad != nil {
		t.Error("frozen w got a gradient")
	}
	if x.Grad == nil {
		t.Error("trainable x got no gradient")
	}
}

// TestViews checks ops and optimizers on parameters whose values are views
// into larger matrices (a gonum Slice, row stride wider than the row).
func TestViews(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	big := mat.NewDense(6, 7, nil)
	for i := 0; i < 6; i++ {
		for j := 0; j < 7; j++ {
			big.Set(i, j, rng.NormFloat64())
		}
	}
	view := big.Slice(1, 4, 2, 6).(*mat.Dense) // (3×4), stride 7
	w := NewParam("w", view)
	x := randParam(rng, "x", 5, 4, -1, 1)
	checkGrad(t, []*Tensor{w, x}, func() *Tensor { return Tanh(MatMulT(x, w)) }, 1e-5)

	before := mat.DenseCopyOf(big)
	w.Grad = nil
	SumAll(MatMulT(x, w)).Backward()
	NewAdamW(0).Step([]*Tensor{w}, 0.1)
	for i := 0; i < 6; i++ {
		for j := 0; j < 7; j++ {
			inView := i >= 1 && i < 4 && j >= 2 && j < 6
			if changed := big.At(i, j) != before.At(i, j); changed != inView {
				t.Fatalf("AdamW on a view: element (%d,%d) changed = %v", i, j, changed)
			}
		}
	}
}
