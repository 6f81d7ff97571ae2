package vera_test

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/vera"
	"gonum.org/v1/gonum/mat"
)

func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			vs, err := vera.Add(m, vera.Config{R: o.R, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(vs), err
		},
		ZeroAtInit: true,
		NoAlpha:    true, // λ_b and λ_d carry the scale
		AnyRank:    true, // r may exceed min(d, k): A and B are random, not learned
	})
}

// The test model: three layers of different shapes, so that the shared
// projections are sliced in both dimensions. a: W (7×5), b: W (4×7),
// c: W (6×4); k_max = 7, d_max = 7.
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 7, 4, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// randomize gives every λ_b and λ_d random entries, as after some training.
func randomize(rng *rand.Rand, vs []*vera.VeRA) {
	for _, v := range vs {
		for _, p := range v.Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
}

// TestInit checks the paper's init: one pair of frozen projections of
// (r×k_max) and (d_max×r) shared by every layer, Kaiming-uniform as PEFT
// draws them; λ_b = 0 (the output is the base model's exactly) and λ_d =
// d_initial; and Σ(d + r) trained parameters, the frozen pair not counted.
func TestInit(t *testing.T) {
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), 6, 5))
	for _, c := range []struct {
		r         int
		dInitial  float64
		wantDInit float64
	}{{3, 0, 0.1}, {16, 0.25, 0.25}} { // r = 16 > min(d, k) of every layer
		m := newModel()
		before := mat.DenseCopyOf(m.Forward(x).Value)
		vs, err := vera.Add(m, vera.Config{R: c.r, DInitial: c.dInitial, Targets: names, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 3 {
			t.Fatalf("r=%d: Add returned %d adapters, want 3", c.r, len(vs))
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("r=%d: output at init differs from the base model's", c.r)
		}
		a, b := vs[0].A, vs[0].B
		if ar, ac := a.Dims(); ar != c.r || ac != 7 {
			t.Errorf("r=%d: A is %s, want (%d×7)", c.r, peft.ShapeOf(ar, ac), c.r)
		}
		if br, bc := b.Dims(); br != 7 || bc != c.r {
			t.Errorf("r=%d: B is %s, want (7×%d)", c.r, peft.ShapeOf(br, bc), c.r)
		}
		for i, v := range vs {
			if v.A != a || v.B != b {
				t.Errorf("r=%d: %s does not share the first layer's A and B", c.r, names[i])
			}
			if v.Rank() != c.r {
				t.Errorf("r=%d: %s: Rank() = %d", c.r, names[i], v.Rank())
			}
			if d := widths[i+1]; !mat.Equal(v.LambdaB.Value, mat.NewDense(1, d, nil)) {
				t.Errorf("r=%d: %s: λ_b = %v at init, want %d zeros", c.r, names[i], v.LambdaB.Value.RawMatrix().Data, d)
			}
			for _, e := range v.LambdaD.Value.RawMatrix().Data {
				if e != c.wantDInit {
					t.Errorf("r=%d: %s: λ_d = %v at init, want all %g", c.r, names[i], v.LambdaD.Value.RawMatrix().Data, c.wantDInit)
					break
				}
			}
		}
		// Kaiming-uniform with gain √2 (PEFT's _kaiming_init): within
		// ±√(6/fan_in), and reaching beyond half of it (LoRA's bound
		// 1/√fan_in would not: √(6/7)/2 > 1/√7).
		for _, p := range []struct {
			name  string
			m     *mat.Dense
			bound float64
		}{{"A", a.Value, math.Sqrt(6.0 / 7)}, {"B", b.Value, math.Sqrt(6 / float64(c.r))}} {
			big := math.Max(mat.Max(p.m), -mat.Min(p.m))
			if big > p.bound || big < p.bound/2 {
				t.Errorf("r=%d: max |%s| = %g, want in [%g, %g]", c.r, p.name, big, p.bound/2, p.bound)
			}
		}
		if a.Trainable || b.Trainable || a.NeedsGrad() || b.NeedsGrad() {
			t.Errorf("r=%d: the projections are trainable", c.r)
		}
		for _, p := range m.Params() {
			if p == a || p == b {
				t.Errorf("r=%d: the frozen projection %s is among the model's parameters", c.r, p.Name)
			}
		}
		// d + r per layer, against LoRA's r·(d + k).
		n, total, _ := peft.TrainableParams(m)
		want, lora := 0, 0
		for i := range names {
			d, k := widths[i+1], widths[i]
			want += d + c.r
			lora += c.r * (d + k)
		}
		if n != want {
			t.Errorf("r=%d: %d trainable parameters, want Σ(d + r) = %d", c.r, n, want)
		}
		base := 0
		for i := range names {
			base += widths[i+1]*widths[i] + widths[i+1]
		}
		if total != base+n {
			t.Errorf("r=%d: %d parameters in all, want %d base + %d trained", c.r, total, base, n)
		}
		t.Logf("r=%d: VeRA trains %d parameters, LoRA of the same rank %d", c.r, n, lora)
	}
}

// naiveDelta is ΔW = diag(λ_b)·B[:d, :]·diag(λ_d)·A[:, :k], summed term by
// term: the test's reference.
func naiveDelta(v *vera.VeRA) *mat.Dense {
	d, k := v.Dims()
	lb, ld := v.LambdaB.Value.RawMatrix().Data, v.LambdaD.Value.RawMatrix().Data
	dw := mat.NewDense(d, k, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			s := 0.0
			for t := 0; t < v.R; t++ {
				s += lb[i] * v.B.Value.At(i, t) * ld[t] * v.A.Value.At(t, j)
			}
			dw.Set(i, j, s)
		}
	}
	return dw
}

func maxAbs(m mat.Matrix) float64 { return mat.Norm(m, math.Inf(1)) }

func relDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return maxAbs(&d) / math.Max(maxAbs(b), 1e-300)
}

// TestDeltaNaive checks Delta, MergedWeight and the layer's output against
// the naive sum, for ranks below and above min(d, k).
func TestDeltaNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, r := range []int{1, 3, 16} {
		m := newModel()
		vs, err := vera.Add(m, vera.Config{R: r, Targets: names, Seed: int64(r)})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, vs)
		for i, v := range vs {
			l := m.Mods[i]
			want := naiveDelta(v)
			if d := relDiff(v.Delta(), want); d > 1e-12 {
				t.Errorf("r=%d %s: Delta differs from the naive sum by %.3g relative", r, l.Name, d)
			}
			var merged mat.Dense
			merged.Add(l.W.Value, want)
			if d := relDiff(v.MergedWeight(l.W.Value), &merged); d > 1e-12 {
				t.Errorf("r=%d %s: MergedWeight differs from W₀ + ΔW by %.3g relative", r, l.Name, d)
			}
			// h = x·(W₀ + ΔW)ᵀ + b₀.
			x := adaptertest.RandDense(rng, 4, widths[i])
			var h mat.Dense
			h.Mul(x, merged.T())
			for row := 0; row < 4; row++ {
				for j := 0; j < widths[i+1]; j++ {
					h.Set(row, j, h.At(row, j)+l.B.Value.At(0, j))
				}
			}
			if d := relDiff(l.Forward(peft.NewConst(x)).Value, &h); d > 1e-12 {
				t.Errorf("r=%d %s: output differs from x·(W₀ + ΔW)ᵀ + b by %.3g relative", r, l.Name, d)
			}
		}
	}
}

// regression is a Dataset of fixed inputs and targets.
type regression struct{ x, y *mat.Dense }

func (d regression) Sample(rng *rand.Rand, size int) peft.Batch {
	n, k := d.x.Dims()
	_, o := d.y.Dims()
	bx, by := mat.NewDense(size, k, nil), mat.NewDense(size, o, nil)
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		bx.SetRow(i, d.x.RawRowView(j))
		by.SetRow(i, d.y.RawRowView(j))
	}
	return peft.Batch{X: bx, Y: by}
}

func (d regression) EvalBatches() []peft.Batch { return nil }

func newRegression(seed int64) regression {
	rng := rand.New(rand.NewSource(seed))
	return regression{adaptertest.RandDense(rng, 32, widths[0]), adaptertest.RandDense(rng, 32, widths[len(widths)-1])}
}

// TestSharedAndFrozen checks that the layers share one A and one B (a
// change to them is seen by every layer) and that neither training with
// peft.Train nor an optimizer step changes them or gives them a gradient,
// while λ_b and λ_d train.
func TestSharedAndFrozen(t *testing.T) {
	m := newModel()
	vs, err := vera.Add(m, vera.Config{R: 4, Targets: names, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(10)), vs)
	a, b := vs[0].A, vs[0].B

	// One storage: changing A[0][0] and B[0][0] changes every layer's ΔW
	// (each layer's slices start at row and column 0).
	deltas := make([]*mat.Dense, len(vs))
	for i, v := range vs {
		deltas[i] = v.Delta()
	}
	a0, b0 := a.Value.At(0, 0), b.Value.At(0, 0)
	a.Value.Set(0, 0, a0+1)
	b.Value.Set(0, 0, b0+1)
	for i, v := range vs {
		if mat.Equal(v.Delta(), deltas[i]) {
			t.Errorf("%s: ΔW did not change with the shared A and B", names[i])
		}
	}
	a.Value.Set(0, 0, a0)
	b.Value.Set(0, 0, b0)

	if got := peft.TrainableOf(m); len(got) != 2*len(vs) {
		t.Errorf("TrainableOf gives %d tensors, want λ_b and λ_d of %d layers", len(got), len(vs))
	}
	aWant, bWant := mat.DenseCopyOf(a.Value), mat.DenseCopyOf(b.Value)
	lambdas := make([]*mat.Dense, 0, 2*len(vs))
	for _, v := range vs {
		lambdas = append(lambdas, mat.DenseCopyOf(v.LambdaB.Value), mat.DenseCopyOf(v.LambdaD.Value))
	}
	checkFrozen := func(when string) {
		t.Helper()
		if !mat.Equal(a.Value, aWant) || !mat.Equal(b.Value, bWant) {
			t.Errorf("%s: the shared A or B changed", when)
		}
		if a.Grad != nil || b.Grad != nil {
			t.Errorf("%s: the shared A or B got a gradient", when)
		}
		for i, v := range vs {
			if mat.Equal(v.LambdaB.Value, lambdas[2*i]) || mat.Equal(v.LambdaD.Value, lambdas[2*i+1]) {
				t.Errorf("%s: %s: λ_b or λ_d did not train", when, names[i])
			}
			lambdas[2*i], lambdas[2*i+1] = mat.DenseCopyOf(v.LambdaB.Value), mat.DenseCopyOf(v.LambdaD.Value)
		}
	}

	data := newRegression(11)
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 5, BatchSize: 8, LR: 1e-2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	checkFrozen("after peft.Train")

	// One AdamW step, handed A and B too: they are not trainable, so it
	// must leave them alone.
	for _, p := range m.Params() {
		p.ZeroGrad()
	}
	m.Loss(data.Sample(rand.New(rand.NewSource(12)), 8)).Backward()
	peft.NewAdamW(0).Step(append(peft.TrainableOf(m), a, b), 1e-2)
	checkFrozen("after an optimizer step")
}

// TestDropoutOnAdapterInputOnly: dropout acts on the adapter's input, never
// on the base layer's, and only in training.
func TestDropoutOnAdapterInputOnly(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	m := adaptertest.NewChain(1, []string{"fc"}, 6, 4)
	x := peft.NewConst(adaptertest.RandDense(rng, 5, 6))
	base := mat.DenseCopyOf(m.Forward(x).Value)
	vs, err := vera.Add(m, vera.Config{R: 3, Dropout: 0.5, Targets: []string{"fc"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	m.SetTraining(true)
	if !mat.Equal(m.Forward(x).Value, base) {
		t.Error("with λ_b = 0, the training output differs from the base: dropout reached the base layer")
	}
	randomize(rng, vs)
	m.SetTraining(false)
	eval := mat.DenseCopyOf(m.Forward(x).Value)
	if !mat.Equal(m.Forward(x).Value, eval) {
		t.Error("evaluation output is not deterministic")
	}
	m.SetTraining(true)
	if mat.EqualApprox(m.Forward(x).Value, eval, 1e-9) {
		t.Error("dropout changed nothing in training")
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  vera.Config
		want []string
	}{
		{vera.Config{R: -1, Targets: []string{"b"}}, []string{"b", "-1"}},
		{vera.Config{R: 2, Dropout: 1, Targets: []string{"b"}}, []string{"b", "dropout", "1"}},
		{vera.Config{R: 2, DInitial: math.NaN(), Targets: []string{"b"}}, []string{"b", "d_initial", "NaN"}},
	} {
		m := newModel()
		_, err := vera.Add(m, c.cfg)
		if err == nil {
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not name %q", c.cfg, err, w)
			}
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	// New refuses projections that do not fit the layer or the rank.
	rng := rand.New(rand.NewSource(1))
	a, b := vera.NewProjections(rng, 3, 4, 5)
	for _, c := range []struct {
		d, k, r int
		want    string
	}{{6, 4, 3, "too small"}, {5, 5, 3, "too small"}, {5, 4, 2, "do not fit rank"}} {
		if _, err := vera.New("fc", "default", c.d, c.k, a, b, vera.Config{R: c.r}, rng); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "fc") {
			t.Errorf("New for W (%d×%d), r = %d on A (3×4), B (5×3): error %v, want one naming fc and %q", c.d, c.k, c.r, err, c.want)
		}
	}
}

// saved returns a model with a trained-looking VeRA adapter (r = 3, dropout
// 0.1, d_initial 0.2, seed 7) and the directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*vera.VeRA, string) {
	t.Helper()
	m := newModel()
	vs, err := vera.Add(m, vera.Config{R: 3, Dropout: 0.1, DInitial: 0.2, Targets: names, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(14)), vs)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, vs, dir
}

// TestFile checks the saved layout against PEFT's (tensor names, 1-D λ
// shapes, the shared projections once, every VeraConfig field with the
// value PEFT would write) and that a loaded adapter's layers share one
// frozen pair again, a pair of their own for each load.
func TestFile(t *testing.T) {
	m, vs, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{"base_model.vera_A": {3, 7}, "base_model.vera_B": {7, 3}}
	for i, n := range names {
		want["base_model.model."+n+".vera_lambda_b"] = []int{widths[i+1]}
		want["base_model.model."+n+".vera_lambda_d"] = []int{3}
	}
	got := map[string][]int{}
	for _, n := range f.Names() {
		got[n] = f.Shape(n)
	}
	f.Close()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	wantCfg := map[string]any{
		"peft_type": "VERA", "r": 3.0, "target_modules": []any{"a", "b", "c"}, "projection_prng_key": 7.0,
		"save_projection": true, "vera_dropout": 0.1, "d_initial": 0.2, "fan_in_fan_out": false, "bias": "none",
		"modules_to_save": nil, "init_weights": true, "layers_to_transform": nil, "layers_pattern": nil,
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}

	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(15)), 6, 5))
	y := m.Forward(x).Value
	var first *peft.Tensor
	for load := 0; load < 2; load++ {
		fresh := newModel()
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(fresh.Forward(x).Value, y) {
			t.Errorf("load %d: output differs from the saved model's", load)
		}
		var ls []*vera.VeRA
		for _, l := range fresh.Mods {
			ls = append(ls, l.ActiveAdapter().(*vera.VeRA))
		}
		for i, v := range ls {
			if v.A != ls[0].A || v.B != ls[0].B {
				t.Errorf("load %d: %s does not share the first layer's A and B", load, names[i])
			}
			if v.A.Trainable || !v.LambdaB.Trainable || !v.LambdaD.Trainable {
				t.Errorf("load %d: %s: A trainable %v, λ_b %v, λ_d %v; want false, true, true", load, names[i], v.A.Trainable, v.LambdaB.Trainable, v.LambdaD.Trainable)
			}
			if v.Dropout != 0.1 || v.DInitial != 0.2 || v.Seed != 7 || v.Rank() != 3 {
				t.Errorf("load %d: %s: dropout %g, d_initial %g, seed %d, r %d; want 0.1, 0.2, 7, 3", load, names[i], v.Dropout, v.DInitial, v.Seed, v.Rank())
			}
		}
		if !mat.Equal(ls[0].A.Value, vs[0].A.Value) || !mat.Equal(ls[0].B.Value, vs[0].B.Value) {
			t.Errorf("load %d: the projections differ from the saved ones", load)
		}
		if load == 0 {
			first = ls[0].A
		} else if ls[0].A == first {
			t.Error("two loads share one A: a model's projections would change with another's")
		}
	}
}

// TestLoadRefuses: a file without the projections (PEFT's save_projection
// false), projections that do not fit, λ vectors of the wrong length and
// options gopeft does not implement are errors naming what is wrong, and
// attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "save_projection false", Edit: func(cfg map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			cfg["save_projection"] = false
			delete(ts, "base_model.vera_A")
			delete(ts, "base_model.vera_B")
		}, Want: []string{"save_projection", "projection_prng_key"}},
		{What: "no vera_A", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.vera_A")
		}, Want: []string{"base_model.vera_A", "missing", "save_projection"}},
		{What: "no vera_B", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.vera_B")
		}, Want: []string{"base_model.vera_B", "missing"}},
		{What: "vera_A too narrow", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.vera_A"] = mat.DenseCopyOf(ts["base_model.vera_A"].Slice(0, 3, 0, 6))
			shapes["base_model.vera_A"] = []int{3, 6}
		}, Want: []string{"(3×6)", "b", "(4×7)", "k_max ≥ 7"}},
		{What: "vera_A of another rank", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.vera_A"] = mat.DenseCopyOf(ts["base_model.vera_A"].Slice(0, 2, 0, 7))
			shapes["base_model.vera_A"] = []int{2, 7}
		}, Want: []string{"(2×7)", "r = 3"}},
		{What: "λ_d of another rank", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.c.vera_lambda_d"] = mat.NewDense(1, 2, []float64{1, 2})
			shapes["base_model.model.c.vera_lambda_d"] = []int{2}
		}, Want: []string{"vera_lambda_d", "[2]", "r = 3"}},
		{What: "λ_b of another width", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.a.vera_lambda_b"] = mat.NewDense(1, 3, []float64{1, 2, 3})
			shapes["base_model.model.a.vera_lambda_b"] = []int{3}
		}, Want: []string{"vera_lambda_b", "[3]", "(7×5)"}},
		{What: "bias all", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["bias"] = "all"
		}, Want: []string{"bias", "all"}},
		{What: "layers_to_transform", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["layers_to_transform"] = []int{0}
		}, Want: []string{"layers_to_transform"}},
		{What: "fan_in_fan_out", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["fan_in_fan_out"] = true
		}, Want: []string{"fan_in_fan_out"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["vera_alpha"] = 8
		}, Want: []string{"vera_alpha", "VeRA"}},
	})
}

// TestSaveRefusesTwoPairs: one adapter name on layers of two Add calls has
// two pairs of projections, which PEFT's file cannot hold.
func TestSaveRefusesTwoPairs(t *testing.T) {
	m := newModel()
	if _, err := vera.Add(m, vera.Config{R: 2, Targets: []string{"a"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := vera.Add(m, vera.Config{R: 2, Targets: []string{"b"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	err := peft.SaveAdapter(filepath.Join(t.TempDir(), "x"), m, "")
	if err == nil || !strings.Contains(err.Error(), "different VeRA projections") {
		t.Errorf("SaveAdapter: error %v, want one about different VeRA projections", err)
	}
}

// TestTorchCrossCheck saves an adapter and has testdata/vera_torch.py
// recompute, with PyTorch in float64 after HuggingFace PEFT's VeRA layer,
// each layer's output and ΔW from the saved files; they must equal gopeft's
// to 1e-12. It is skipped where /usr/bin/python3 cannot import torch
// (Debian's python3-torch provides it).
func TestTorchCrossCheck(t *testing.T) {
	m, vs, adir := saved(t)
	root := filepath.Dir(adir)
	xs, res := adaptertest.RunTorch(t, m, "testdata/vera_torch.py", root, 16, 5)
	if mods := slices.Sorted(maps.Keys(res.Outputs)); !reflect.DeepEqual(mods, names) {
		t.Fatalf("torch computed modules %v, want %v", mods, names)
	}
	for i, l := range m.Mods {
		d, k := l.W.Dims()
		got := l.Forward(peft.NewConst(xs[l.Name])).Value
		if diff := relDiff(got, adaptertest.FromHexes(t, res.Outputs[l.Name], 5, d)); diff > 1e-12 {
			t.Errorf("%s: gopeft's output differs from torch's by %.3g relative", l.Name, diff)
		}
		if diff := relDiff(vs[i].Delta(), adaptertest.FromHexes(t, res.Deltas[l.Name], d, k)); diff > 1e-12 {
			t.Errorf("%s: gopeft's ΔW differs from torch's by %.3g relative", l.Name, diff)
		}
	}
}

// TestConcurrentLoads: loads running at once each give their model's
// layers one pair of projections of its own.
func TestConcurrentLoads(t *testing.T) {
	_, _, dir := saved(t)
	const n = 4
	models := make([]*adaptertest.Chain, n)
	errs := make(chan error, n)
	for i := range models {
		models[i] = newModel()
		go func() { errs <- peft.LoadAdapter(dir, models[i], "") }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[*peft.Tensor]bool{}
	for i, m := range models {
		a := m.Mods[0].ActiveAdapter().(*vera.VeRA).A
		for _, l := range m.Mods {
			if l.ActiveAdapter().(*vera.VeRA).A != a {
				t.Errorf("model %d: %s does not share the first layer's A", i, l.Name)
			}
		}
		if seen[a] {
			t.Errorf("model %d shares its A with another model", i)
		}
		seen[a] = true
	}
}
