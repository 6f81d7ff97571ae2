package dora_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/dora"
	"gonum.org/v1/gonum/mat"
)

// rowNorms returns the Euclidean norm of each row of w.
func rowNorms(w mat.Matrix) []float64 {
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

// maxAbsDiff returns max |a − b|.
func maxAbsDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, math.Inf(1))
}

// randInput returns an n×k batch of standard normal entries from seed.
func randInput(seed int64, n, k int) *peft.Tensor {
	return peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(seed)), n, k))
}

// TestDoRAInit: at init M = ‖W‖_row and the adapted model's output equals
// the base model's exactly, in evaluation and training mode.
func TestDoRAInit(t *testing.T) {
	for _, rs := range []bool{false, true} {
		m := peft.NewMLP([]int{7, 6, 4}, 2)
		x := randInput(5, 5, 7)
		y0 := mat.DenseCopyOf(m.Forward(x).Value)
		ads, err := dora.Add(m, dora.Config{R: 2, Alpha: 4, RSLoRA: rs, Targets: []string{"fc1", "fc2"}})
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range ads {
			if got, want := a.M.Value.RawMatrix().Data, rowNorms(m.Layers[i].W.Value); !equalFloats(got, want, 0) {
				t.Errorf("M = %v, want ‖W‖_row = %v", got, want)
			}
		}
		for _, train := range []bool{false, true} {
			m.SetTraining(train)
			if y := m.Forward(x).Value; !mat.Equal(y, y0) {
				t.Errorf("rsLoRA=%v training=%v: init output differs from the base by %g", rs, train, maxAbsDiff(y, y0))
			}
		}
	}
}

// trained returns a one-layer model (W 4×5) with a DoRA adapter whose B and
// M have moved away from their init.
func trained(t *testing.T, rs bool) (*peft.MLP, *dora.DoRA) {
	t.Helper()
	m := peft.NewMLP([]int{5, 4}, 5)
	ads, err := dora.Add(m, dora.Config{R: 2, Alpha: 3, RSLoRA: rs, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(5))
	a := ads[0]
	a.B.Value.Scale(0.3, adaptertest.RandDense(rng, 4, 2))
	a.M.Value.Apply(func(_, _ int, v float64) float64 { return v * (1 + 0.5*rng.Float64()) }, a.M.Value)
	return m, a
}

// TestDoRAMerge: the merged weight's row norms equal M, and merge then
// forward equals the adapter's forward.
func TestDoRAMerge(t *testing.T) {
	m, a := trained(t, false)
	l := m.Layers[0]
	w := a.MergedWeight(l.W.Value)
	if got, want := rowNorms(w), a.M.Value.RawMatrix().Data; !equalFloats(got, want, 1e-12) {
		t.Errorf("row norms of W' = %v, want M = %v", got, want)
	}
	x := randInput(6, 3, 5)
	y := mat.DenseCopyOf(m.Forward(x).Value)
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(m.Forward(x).Value, y); d > 1e-12 {
		t.Errorf("merged forward differs from the adapter's by %g", d)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(m.Forward(x).Value, y); d != 0 {
		t.Errorf("unmerged forward differs by %g", d)
	}
}

// TestDoRAScaleInvariance: scaling the direction W + s·B·A by c > 0 leaves
// the merged W' unchanged.
func TestDoRAScaleInvariance(t *testing.T) {
	m, a := trained(t, true)
	w0 := m.Layers[0].W.Value
	want := a.MergedWeight(w0)
	for _, c := range []float64{0.25, 3, 1e3} {
		var wc mat.Dense
		wc.Scale(c, w0)
		b := mat.DenseCopyOf(a.B.Value)
		a.B.Value.Scale(c, b)
		got := a.MergedWeight(&wc)
		a.B.Value.Copy(b)
		if d := maxAbsDiff(got, want); d > 1e-12 {
			t.Errorf("c = %g: W' changed by %g", c, d)
		}
	}
}

// lossRef is the loss Σ R ⊙ y of a DoRA layer computed directly from the
// math, with the norm held at nrm (1×out): y = b + (M/nrm) ⊙ (x·(W + s·B·A)ᵀ).
func lossRef(x, w, bias, a, b, mg, nrm, rw *mat.Dense, s float64) float64 {
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
// differences of lossRef, an independent oracle, with the norm detached
// (held at its value at the point of evaluation), and that the detached
// gradient differs from the one through the norm.
func TestDoRAGradients(t *testing.T) {
	m, a := trained(t, false)
	l := m.Layers[0]
	rng := rand.New(rand.NewSource(6))
	x := adaptertest.RandDense(rng, 3, 5)
	rw := adaptertest.RandDense(rng, 3, 4)
	for _, p := range a.Params() {
		p.ZeroGrad()
	}
	y := l.Forward(peft.NewConst(x))
	peft.SumAll(peft.Mul(y, peft.NewConst(rw))).Backward()
	nrm := a.Norm(l.W.Value) // detached norm at θ₀
	s := a.Scaling()
	loss0 := lossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, nrm, rw, s)
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
			fp := lossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, nrm, rw, s)
			v[i] = old - h
			fm := lossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, nrm, rw, s)
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
	fp := lossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, a.Norm(l.W.Value), rw, s)
	v[0] = old - h
	fm := lossRef(x, l.W.Value, l.B.Value, a.A.Value, a.B.Value, a.M.Value, a.Norm(l.W.Value), rw, s)
	v[0] = old
	if full := (fp - fm) / (2 * h); math.Abs(full-a.A.Grad.At(0, 0)) < 1e-6 {
		t.Errorf("gradient through the norm %g equals the detached one %g", full, a.A.Grad.At(0, 0))
	}
}

// TestDoRABadInput: Add's errors name the module, its weight's shape and
// the value, and a failed Add leaves no adapter.
func TestDoRABadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg  dora.Config
		want []string
	}{
		{dora.Config{R: 0, Targets: []string{"fc1"}}, []string{"fc1", "(7×6)", "r = 0", "6"}},
		{dora.Config{R: 7, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "r = 7", "4"}},
		{dora.Config{R: 2, Targets: []string{"attn"}}, []string{"attn", "fc1", "fc2"}},
		{dora.Config{R: 2, Alpha: -1, Targets: []string{"fc1"}}, []string{"fc1", "alpha"}},
		{dora.Config{R: 2, Dropout: 1, Targets: []string{"fc2"}}, []string{"fc2", "dropout = 1"}},
		{dora.Config{R: 2, Dropout: -0.5, Targets: []string{"fc1"}}, []string{"fc1", "dropout = -0.5"}},
	} {
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		_, err := dora.Add(m, tc.cfg)
		if e := adaptertest.ErrorMentions(err, tc.want...); e != nil {
			t.Errorf("%+v: %v", tc.cfg, e)
		}
		if len(m.Layers[0].Adapters)+len(m.Layers[1].Adapters) != 0 {
			t.Errorf("%+v: a failed Add left adapters", tc.cfg)
		}
	}
}

// TestFromFactors: the constructor LoadAdapter uses refuses what New
// refuses, and factors that do not chain, naming the module and the value;
// good factors are used as they are, not copied.
func TestFromFactors(t *testing.T) {
	z := func(r, c int) *mat.Dense { return mat.NewDense(r, c, nil) }
	for _, tc := range []struct {
		what    string
		a, b, m *mat.Dense
		cfg     dora.Config
		want    []string
	}{
		{"A and B do not chain", z(2, 5), z(4, 3), z(1, 4), dora.Config{Alpha: 1}, []string{"fc1", "(2×5)", "(4×3)"}},
		{"M does not fit B", z(2, 5), z(4, 2), z(1, 3), dora.Config{Alpha: 1}, []string{"fc1", "(1×3)", "(1×4)"}},
		{"M a column", z(2, 5), z(4, 2), z(4, 1), dora.Config{Alpha: 1}, []string{"fc1", "(4×1)", "(1×4)"}},
		{"rank above min(out, in)", z(5, 5), z(4, 5), z(1, 4), dora.Config{Alpha: 1}, []string{"fc1", "r = 5", "(4×5)", "= 4"}},
		{"negative α", z(2, 5), z(4, 2), z(1, 4), dora.Config{Alpha: -2}, []string{"fc1", "alpha = -2"}},
		{"α not finite", z(2, 5), z(4, 2), z(1, 4), dora.Config{Alpha: math.NaN()}, []string{"fc1", "alpha = NaN"}},
		{"dropout 1", z(2, 5), z(4, 2), z(1, 4), dora.Config{Alpha: 1, Dropout: 1}, []string{"fc1", "dropout = 1"}},
	} {
		_, err := dora.FromFactors("fc1", "default", tc.a, tc.b, tc.m, tc.cfg, rand.New(rand.NewSource(1)))
		if err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tc.what, err, s)
			}
		}
	}
	a, b, m := z(2, 5), z(4, 2), z(1, 4)
	d, err := dora.FromFactors("fc1", "ft", a, b, m, dora.Config{R: 9, Alpha: 0, RSLoRA: true, Dropout: 0.25}, rand.New(rand.NewSource(1)))
	if err != nil {
		t.Fatal(err)
	}
	if d.A.Value != a || d.B.Value != b || d.M.Value != m || d.R != 2 || d.Alpha != 0 || !d.RSLoRA || d.Dropout != 0.25 {
		t.Errorf("got %+v: want A, B, M as given, r = 2 from A, α = 0, rsLoRA, dropout 0.25", d)
	}
	if got := d.M.Name; got != "fc1.lora_magnitude_vector.ft.weight" {
		t.Errorf("M named %q", got)
	}
}

// TestDoRATrainDigits trains DoRA through Train on the digits: the loss
// falls, the magnitudes move, and the merged model gives the adapter's
// outputs.
func TestDoRATrainDigits(t *testing.T) {
	data := peft.DigitsData(0.2, 4)
	m := peft.NewMLP([]int{64, 32, 10}, 4)
	ads, err := dora.Add(m, dora.Config{R: 4, Alpha: 8, Targets: []string{"fc1", "fc2"}, Seed: 4})
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
	if maxAbsDiff(m0, ads[0].M.Value) < 1e-3 {
		t.Error("M did not move")
	}
	x := peft.NewConst(data.EvalX)
	y := mat.DenseCopyOf(m.Forward(x).Value)
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(m.Forward(x).Value, y); d > 1e-10 {
		t.Errorf("merged model differs by %g", d)
	}
	t.Logf("loss %.4f → eval %.4f, accuracy %.3f", h.Loss[0], h.EvalLoss[0], h.EvalMetric[0])
}

// TestSuite runs the shared adapter suite on DoRA and on DoRA with rsLoRA.
//
// ZeroAtInit holds exactly (InitTol 0): with B = 0, V = W + s·B·A is W bit
// for bit, so M = ‖W‖_row and Forward's norm are the same numbers, g = M/‖V‖
// is exactly 1, and the added (g−1)⊙x̃Wᵀ and g⊙(s·x̃·Aᵀ·Bᵀ) are exactly 0.
//
// HoldDetached fixes each adapter's ‖V‖_row at its value before the
// gradients are taken: DoRA's backward pass treats the norm as a constant,
// and without the hold the suite's central differences would differentiate
// through it (TestDoRAGradients shows the two differ).
func TestSuite(t *testing.T) {
	for _, rs := range []bool{false, true} {
		t.Run(map[bool]string{false: "DoRA", true: "rsLoRA"}[rs], func(t *testing.T) {
			weights := map[*dora.DoRA]*mat.Dense{} // each adapter's frozen W, for HoldDetached
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					ds, err := dora.Add(m, dora.Config{R: o.R, Alpha: o.Alpha, RSLoRA: rs, Targets: o.Targets, Seed: o.Seed})
					for _, l := range m.Modules() {
						if d, ok := l.Adapters["default"].(*dora.DoRA); ok {
							weights[d] = l.W.Value
						}
					}
					return adapters(ds), err
				},
				ZeroAtInit: true,
				HoldDetached: func(ads []peft.Adapter) func() {
					for _, a := range ads {
						d := a.(*dora.DoRA)
						dora.HoldNorm(d, d.Norm(weights[d]))
					}
					return func() {
						for _, a := range ads {
							dora.HoldNorm(a.(*dora.DoRA), nil)
						}
					}
				},
			})
		})
	}
}

func adapters(ds []*dora.DoRA) []peft.Adapter {
	out := make([]peft.Adapter, len(ds))
	for i, d := range ds {
		out[i] = d
	}
	return out
}

var fixture = filepath.Join("..", "testdata", "safetensors", "peft")

// TestPEFTFixture loads the DoRA adapter written in HuggingFace PEFT's
// layout by make_peft_fixture.py onto its base model, checks the output
// against numpy's, and saves it again: the same tensor names, shapes,
// dtypes and values, and PEFT's LoraConfig fields with the same values.
func TestPEFTFixture(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixture, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]json.RawMessage // hex floats, and "x_shape"
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	hex := func(key string, r, c int) *mat.Dense {
		var hs []string
		if err := json.Unmarshal(expected[key], &hs); err != nil || len(hs) != r*c {
			t.Fatalf("%s: %v, %d values for (%d×%d)", key, err, len(hs), r, c)
		}
		v := make([]float64, len(hs))
		for i, h := range hs {
			if v[i], err = strconv.ParseFloat(h, 64); err != nil {
				t.Fatal(key, err)
			}
		}
		return mat.NewDense(r, c, v)
	}
	x, want := peft.NewConst(hex("x", 4, 5)), hex("dora", 4, 4)
	m := peft.NewMLP([]int{5, 7, 4}, 9)
	if err := peft.LoadModel(filepath.Join(fixture, "base_mlp.safetensors"), m); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(fixture, "dora")
	if err := peft.LoadAdapter(src, m, "ft"); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if d, ok := l.Adapters["ft"].(*dora.DoRA); !ok || d.R != 2 || d.Alpha != 3 {
			t.Fatalf("%s: got %T %+v, want a DoRA adapter with r = 2, α = 3", l.Name, l.Adapters["ft"], l.Adapters["ft"])
		}
	}
	if d := maxAbsDiff(m.Forward(x).Value, want) / math.Max(1, mat.Norm(want, math.Inf(1))); d > 1e-12 {
		t.Errorf("output differs from numpy's by %g relative", d)
	}

	out := filepath.Join(t.TempDir(), "saved")
	if err := peft.SaveAdapter(out, m, "ft"); err != nil {
		t.Fatal(err)
	}
	of, err := peft.OpenSafetensors(filepath.Join(src, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	sf, err := peft.OpenSafetensors(filepath.Join(out, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if !slices.Equal(sf.Names(), of.Names()) {
		t.Errorf("saved tensors %v, PEFT's %v", sf.Names(), of.Names())
	}
	for _, n := range of.Names() {
		if !slices.Equal(sf.Shape(n), of.Shape(n)) || sf.DType(n) != of.DType(n) {
			t.Errorf("%s: saved %s %v, PEFT's %s %v", n, sf.DType(n), sf.Shape(n), of.DType(n), of.Shape(n))
			continue
		}
		got, err1 := sf.Tensor(n)
		orig, err2 := of.Tensor(n)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !mat.Equal(got, orig) {
			t.Errorf("%s: saved values differ from PEFT's by %g", n, maxAbsDiff(got, orig))
		}
	}
	if !reflect.DeepEqual(sf.Metadata(), of.Metadata()) {
		t.Errorf("metadata %v, PEFT's %v", sf.Metadata(), of.Metadata())
	}
	readJSON := func(dir string) map[string]any {
		raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	saved, peftCfg := readJSON(out), readJSON(src)
	for k, v := range saved {
		pv, ok := peftCfg[k]
		if !ok {
			t.Errorf("saved field %q is not one of PEFT's LoraConfig", k)
		} else if k != "peft_version" && !reflect.DeepEqual(v, pv) {
			t.Errorf("field %q: saved %v, PEFT's %v", k, v, pv)
		}
	}
	// The fields gopeft wrote before DoRA had a package of its own: the same
	// set, so that the file is the same byte for byte.
	keys := make([]string, 0, len(saved))
	for k := range saved {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out",
		"inference_mode", "init_lora_weights", "layers_pattern", "layers_to_transform", "lora_alpha",
		"lora_dropout", "modules_to_save", "peft_type", "r", "rank_pattern", "revision", "target_modules",
		"task_type", "use_dora", "use_rslora"}; !slices.Equal(keys, want) {
		t.Errorf("saved fields %v, want %v", keys, want)
	}
}
