package peft_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// doraFill sets every entry of d to a N(0, σ²) draw.
func doraFill(rng *rand.Rand, d *mat.Dense, sigma float64) {
	r, c := d.Dims()
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			d.Set(i, j, sigma*rng.NormFloat64())
		}
	}
}

func doraRowNorms(w mat.Matrix) []float64 {
	r, c := w.Dims()
	n := make([]float64, r)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			n[i] += w.At(i, j) * w.At(i, j)
		}
		n[i] = math.Sqrt(n[i])
	}
	return n
}

// TestDoRAInit: at init the adapted model's output equals the base model's
// exactly, in evaluation and training mode.
func TestDoRAInit(t *testing.T) {
	for _, rs := range []bool{false, true} {
		m := peft.NewMLP([]int{7, 6, 4}, 2)
		x := pissaInput(2, 5, 7)
		y0 := mat.DenseCopyOf(m.Forward(x).Value)
		ads, err := peft.AddDoRA(m, peft.DoRAConfig{R: 2, Alpha: 4, RSLoRA: rs, Targets: []string{"fc1", "fc2"}})
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range ads {
			if got, want := a.M.Value.RawMatrix().Data, doraRowNorms(m.Layers[i].W.Value); !equalFloats(got, want, 0) {
				t.Errorf("M = %v, want ‖W‖_row = %v", got, want)
			}
		}
		for _, train := range []bool{false, true} {
			m.SetTraining(train)
			if y := m.Forward(x).Value; !mat.Equal(y, y0) {
				t.Errorf("rsLoRA=%v training=%v: init output differs from the base by %g", rs, train, galoreMaxAbsDiff(y, y0))
			}
		}
	}
}

func equalFloats(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}

// doraTrained returns a one-layer model (W 4×5) with a DoRA adapter whose
// B and M have moved away from their init.
func doraTrained(t *testing.T, rs bool) (*peft.MLP, *peft.DoRA) {
	t.Helper()
	m := peft.NewMLP([]int{5, 4}, 5)
	ads, err := peft.AddDoRA(m, peft.DoRAConfig{R: 2, Alpha: 3, RSLoRA: rs, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	a := ads[0]
	doraFill(rng, a.B.Value, 0.3)
	a.M.Value.Apply(func(_, _ int, v float64) float64 { return v * (1 + 0.5*rng.Float64()) }, a.M.Value)
	return m, a
}

// TestDoRAMerge: the merged weight's row norms equal M, and merge then
// forward equals the adapter's forward.
func TestDoRAMerge(t *testing.T) {
	m, a := doraTrained(t, false)
	l := m.Layers[0]
	w := a.MergedWeight(l.W.Value)
	if got, want := doraRowNorms(w), a.M.Value.RawMatrix().Data; !equalFloats(got, want, 1e-12) {
		t.Errorf("row norms of W' = %v, want M = %v", got, want)
	}
	x := pissaInput(3, 6, 5)
	y := mat.DenseCopyOf(m.Forward(x).Value)
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	if d := galoreMaxAbsDiff(m.Forward(x).Value, y); d > 1e-12 {
		t.Errorf("merged forward differs from the adapter's by %g", d)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if d := galoreMaxAbsDiff(m.Forward(x).Value, y); d != 0 {
		t.Errorf("unmerged forward differs by %g", d)
	}
}

// TestDoRAScaleInvariance: scaling the direction W + s·B·A by c > 0 leaves
// the merged W' unchanged.
func TestDoRAScaleInvariance(t *testing.T) {
	m, a := doraTrained(t, true)
	w0 := m.Layers[0].W.Value
	want := a.MergedWeight(w0)
	for _, c := range []float64{0.25, 3, 1e3} {
		var wc mat.Dense
		wc.Scale(c, w0)
		b := mat.DenseCopyOf(a.B.Value)
		a.B.Value.Scale(c, b)
		got := a.MergedWeight(&wc)
		a.B.Value.Copy(b)
		if d := galoreMaxAbsDiff(got, want); d > 1e-12 {
			t.Errorf("c = %g: W' changed by %g", c, d)
		}
	}
}

// doraLossRef is the loss Σ R ⊙ y of a DoRA layer computed directly from the
// math, with the norm held at nrm (1×out): y = b + (M/nrm) ⊙ (x·(W + s·B·A)ᵀ).
func doraLossRef(x, w, bias, a, b, mg, nrm, rw *mat.Dense, s float64) float64 {
	var v, y mat.Dense
	v.Mul(b, a)
	v.Scale(s, &v)
	v.Add(w, &v)
	y.Mul(x, v.T())
	n, out := y.Dims()
	var loss float64
	for i := 0; i < n; i++ {
		for j := 0; j < out; j++ {
			yij := bias.At(0, j) + mg.At(0, j)/nrm.At(0, j)*y.At(i, j)
			loss += rw.At(i, j) * yij
		}
	}
	return loss
}

// TestDoRAGradients checks the gradients of A, B and M against central
// differences of doraLossRef with the norm detached (held at its value at
// the point of evaluation), and that the detached gradient differs from
// the one through the norm.
func TestDoRAGradients(t *testing.T) {
	m, a := doraTrained(t, false)
	l := m.Layers[0]
	rng := rand.New(rand.NewPCG(6, 6))
	x := galoreRand(rng, 3, 5)
	rw := galoreRand(rng, 3, 4)
	for _, p := range a.Params() {
		p.ZeroGrad()
	}
	y := l.Forward(peft.NewConst(x))
	peft.SumAll(peft.Mul(y, peft.NewConst(rw))).Backward()
	nrm := a.Norm(l.W.Value) // detached norm at θ₀
	s := a.Scaling()
	loss0 := doraLossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, nrm, rw, s)
	var yr mat.Dense
	yr.MulElem(y.Value, rw)
	if got := mat.Sum(&yr); math.Abs(got-loss0) > 1e-12*math.Abs(loss0) {
		t.Fatalf("forward loss %g, reference %g", got, loss0)
	}
	const h = 1e-6
	var worst float64
	for _, p := range a.Params() {
		v := p.Value.RawMatrix().Data
		g := p.Grad.RawMatrix().Data
		for i := range v {
			old := v[i]
			v[i] = old + h
			fp := doraLossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, nrm, rw, s)
			v[i] = old - h
			fm := doraLossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, nrm, rw, s)
			v[i] = old
			fd := (fp - fm) / (2 * h)
			rel := math.Abs(fd-g[i]) / max(1, math.Abs(fd))
			worst = max(worst, rel)
			if rel > 1e-7 {
				t.Errorf("%s[%d]: grad %.10g, central difference %.10g", p.Name, i, g[i], fd)
			}
		}
	}
	t.Logf("max relative error of DoRA's gradients: %.2g", worst)
	// Through the norm (not detached) the gradient of A differs: the
	// detach is what the test above checks.
	v := a.A.Value.RawMatrix().Data
	old := v[0]
	v[0] = old + h
	fp := doraLossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, a.Norm(l.W.Value), rw, s)
	v[0] = old - h
	fm := doraLossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, a.Norm(l.W.Value), rw, s)
	v[0] = old
	if full := (fp - fm) / (2 * h); math.Abs(full-a.A.Grad.At(0, 0)) < 1e-6 {
		t.Errorf("gradient through the norm %g equals the detached one %g", full, a.A.Grad.At(0, 0))
	}
}

func TestDoRABadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg  peft.DoRAConfig
		want []string
	}{
		{peft.DoRAConfig{R: 0, Targets: []string{"fc1"}}, []string{"fc1", "(7×6)", "r = 0", "6"}},
		{peft.DoRAConfig{R: 7, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "r = 7", "4"}},
		{peft.DoRAConfig{R: 2, Targets: []string{"attn"}}, []string{"attn", "fc1", "fc2"}},
		{peft.DoRAConfig{R: 2, Alpha: -1, Targets: []string{"fc1"}}, []string{"fc1", "alpha"}},
	} {
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		_, err := peft.AddDoRA(m, tc.cfg)
		if err == nil {
			t.Errorf("%+v: no error", tc.cfg)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%+v: error %q does not mention %q", tc.cfg, err, s)
			}
		}
		if len(m.Layers[0].Adapters)+len(m.Layers[1].Adapters) != 0 {
			t.Errorf("%+v: a failed AddDoRA left adapters", tc.cfg)
		}
	}
}

// ExampleDoRA attaches DoRA to a small classifier: the output is the base
// model's at init, and after B moves the merged weight's row norms are
// still the magnitudes M.
func ExampleDoRA() {
	m := peft.NewMLP([]int{4, 3, 2}, 1)
	x := peft.NewConst(mat.NewDense(1, 4, []float64{1, -2, 0.5, 3}))
	before := mat.DenseCopyOf(m.Forward(x).Value)
	ads, err := peft.AddDoRA(m, peft.DoRAConfig{R: 1, Alpha: 2, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	d := ads[0]
	fmt.Println("output unchanged at init:", mat.Equal(m.Forward(x).Value, before))
	fmt.Printf("M = %.4f\n", d.M.Value.RawMatrix().Data)
	d.B.Value.Set(0, 0, 0.5) // as if trained
	w := d.MergedWeight(m.Layers[0].W.Value)
	fmt.Printf("row norms of merged W' = %.4f\n", doraRowNorms(w))
	n, total, pct := peft.TrainableParams(m)
	fmt.Printf("trainable %d of %d (%.1f%%)\n", n, total, pct)
	// Output:
	// output unchanged at init: true
	// M = [0.4858 0.5893 0.5483]
	// row norms of merged W' = [0.4858 0.5893 0.5483]
	// trainable 10 of 33 (30.3%)
}

// ExampleDoRAConfig attaches DoRA to both layers of a classifier and lists
// the trainable tensors with PEFT's names.
func ExampleDoRAConfig() {
	m := peft.NewMLP([]int{6, 4, 3}, 1)
	if _, err := peft.AddDoRA(m, peft.DoRAConfig{R: 2, Alpha: 4, Targets: []string{"fc1", "fc2"}}); err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range m.Params() {
		if p.Trainable {
			r, c := p.Dims()
			fmt.Printf("%s %d×%d\n", p.Name, r, c)
		}
	}
	// Output:
	// fc1.lora_A.default.weight 2×6
	// fc1.lora_B.default.weight 4×2
	// fc1.lora_magnitude_vector.default.weight 1×4
	// fc2.lora_A.default.weight 2×4
	// fc2.lora_B.default.weight 3×2
	// fc2.lora_magnitude_vector.default.weight 1×3
}

// TestDoRATrainDigits trains DoRA through Train on the digits: the loss
// falls, the magnitudes move, and the merged model gives the adapter's
// outputs.
func TestDoRATrainDigits(t *testing.T) {
	data := peft.DigitsData(0.2, 4)
	m := peft.NewMLP([]int{64, 32, 10}, 4)
	ads, err := peft.AddDoRA(m, peft.DoRAConfig{R: 4, Alpha: 8, Targets: []string{"fc1", "fc2"}, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	m0 := mat.DenseCopyOf(ads[0].M.Value)
	h, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 300, BatchSize: 32, LR: 0.03, EvalEvery: 300, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if first, last := h.Loss[0], h.EvalLoss[0]; !(last < 0.5*first) || h.EvalMetric[0] < 0.6 {
		t.Errorf("loss %.4f → eval %.4f, accuracy %.3f; want the loss halved and accuracy > 0.6", first, last, h.EvalMetric[0])
	}
	if galoreMaxAbsDiff(m0, ads[0].M.Value) < 1e-3 {
		t.Error("M did not move")
	}
	x := peft.NewConst(data.EvalX)
	y := mat.DenseCopyOf(m.Forward(x).Value)
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if d := galoreMaxAbsDiff(m.Forward(x).Value, y); d > 1e-10 {
		t.Errorf("merged model differs by %g", d)
	}
	t.Logf("loss %.4f → eval %.4f, accuracy %.3f", h.Loss[0], h.EvalLoss[0], h.EvalMetric[0])
}
