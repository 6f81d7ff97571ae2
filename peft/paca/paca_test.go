package paca_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/paca"
	"gonum.org/v1/gonum/mat"
)

func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ps, err := paca.Add(m, paca.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(ps), err
		},
		ZeroAtInit: true,
		AnyRank:    true, // r counts columns: any r ≤ k is valid, above min(d, k) too
	})
}

// The test model: a: W (8×5), b: W (3×8), c: W (6×3).
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 8, 3, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

func maxAbs(m mat.Matrix) float64 { return mat.Norm(m, math.Inf(1)) }

func relDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return maxAbs(&d) / math.Max(maxAbs(b), 1e-300)
}

// TestInit: r distinct sorted columns in range per layer, Δ = 0, the
// output equal to the base model's bit for bit, r·d trained parameters.
func TestInit(t *testing.T) {
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), 6, 5))
	for _, c := range []struct {
		r     int
		alpha float64
		s     float64
	}{{2, 0, 1}, {3, 6, 2}, {3, 1, 1.0 / 3}} {
		m := newModel()
		before := mat.DenseCopyOf(m.Forward(x).Value)
		ps, err := paca.Add(m, paca.Config{R: c.r, Alpha: c.alpha, Targets: names, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("r=%d α=%g: output at init differs from the base model's", c.r, c.alpha)
		}
		want := 0
		for i, p := range ps {
			d, k := widths[i+1], widths[i]
			if p.Rank() != c.r || len(p.Idx) != c.r || p.Scaling() != c.s {
				t.Errorf("r=%d α=%g %s: Rank() %d, %d columns, s = %v; want %d, %d, %v", c.r, c.alpha, names[i], p.Rank(), len(p.Idx), p.Scaling(), c.r, c.r, c.s)
			}
			for n, j := range p.Idx {
				if j < 0 || j >= k || (n > 0 && j <= p.Idx[n-1]) {
					t.Errorf("r=%d %s: columns %v are not increasing in [0, %d)", c.r, names[i], p.Idx, k)
				}
			}
			if !mat.Equal(p.D.Value, mat.NewDense(d, c.r, nil)) || maxAbs(p.Delta()) != 0 {
				t.Errorf("r=%d %s: Δ or ΔW ≠ 0 at init", c.r, names[i])
			}
			want += c.r * d
		}
		n, _, _ := peft.TrainableParams(m)
		if n != want {
			t.Errorf("r=%d: %d trainable parameters, want Σ r·d = %d", c.r, n, want)
		}
	}
}

// TestColumnsDiffer: different seeds choose different columns, and each
// layer's columns are a fresh draw.
func TestColumnsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for seed := int64(0); seed < 6; seed++ {
		ps, err := paca.Add(newModel(), paca.Config{R: 2, Targets: []string{"b"}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		seen[fmt.Sprint(ps[0].Idx)] = true
	}
	if len(seen) < 3 {
		t.Errorf("6 seeds chose only %d different column pairs of 8", len(seen))
	}
}

// TestDeltaNaive checks Delta, MergedWeight and the output against W₀
// with the selected columns replaced by W₀[:, idx] + s·Δ, built entry by
// entry.
func TestDeltaNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, alpha := range []float64{0, 3, 0.7} {
		m := newModel()
		ps, err := paca.Add(m, paca.Config{R: 3, Alpha: alpha, Targets: names, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			l := m.Mods[i]
			d, k := widths[i+1], widths[i]
			p.D.Value.Copy(adaptertest.RandDense(rng, d, 3))
			want := mat.NewDense(d, k, nil)
			replaced := mat.DenseCopyOf(l.W.Value)
			for c, j := range p.Idx {
				for row := 0; row < d; row++ {
					want.Set(row, j, p.Scaling()*p.D.Value.At(row, c))
					replaced.Set(row, j, l.W.Value.At(row, j)+p.Scaling()*p.D.Value.At(row, c))
				}
			}
			if !mat.Equal(p.Delta(), want) {
				t.Errorf("α=%g %s: Delta is not s·Δ in the columns %v", alpha, l.Name, p.Idx)
			}
			if !mat.Equal(p.MergedWeight(l.W.Value), replaced) {
				t.Errorf("α=%g %s: MergedWeight is not W₀ with the columns %v replaced", alpha, l.Name, p.Idx)
			}
			x := adaptertest.RandDense(rng, 4, k)
			var h mat.Dense
			h.Mul(x, replaced.T())
			for row := 0; row < 4; row++ {
				for j := 0; j < d; j++ {
					h.Set(row, j, h.At(row, j)+l.B.Value.At(0, j))
				}
			}
			if diff := relDiff(l.Forward(peft.NewConst(x)).Value, &h); diff > 1e-12 {
				t.Errorf("α=%g %s: output differs from x·Wᵀ + b with the replaced columns by %.3g relative", alpha, l.Name, diff)
			}
		}
	}
}

// TestGradientIsSelectedColumns: the gradient of Δ is s times the columns
// idx of the gradient of the whole weight, for the same loss at the same
// effective weight: a twin model with no adapter whose W is PaCA's merged
// weight and trainable.
func TestGradientIsSelectedColumns(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	x := peft.NewConst(adaptertest.RandDense(rng, 9, 5))
	wts := peft.NewConst(adaptertest.RandDense(rng, 9, 6))
	for _, alpha := range []float64{0, 1.5, 8} {
		m := newModel()
		ps, err := paca.Add(m, paca.Config{R: 2, Alpha: alpha, Targets: names, Seed: 8})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			p.D.Value.Copy(adaptertest.RandDense(rng, widths[i+1], 2)) // as after training
		}
		twin := newModel()
		for i, l := range twin.Mods {
			l.W.Value.Copy(ps[i].MergedWeight(m.Mods[i].W.Value))
			l.W.Unfreeze()
		}
		loss := func(c *adaptertest.Chain) { peft.SumAll(peft.Mul(c.Forward(x), wts)).Backward() }
		loss(m)
		loss(twin)
		worst := 0.0
		for i, p := range ps {
			s := p.Scaling()
			gw := twin.Mods[i].W.Grad // (d×k)
			want := mat.NewDense(widths[i+1], 2, nil)
			for c, j := range p.Idx {
				for row := 0; row < widths[i+1]; row++ {
					want.Set(row, c, s*gw.At(row, j))
				}
			}
			diff := relDiff(p.D.Grad, want)
			worst = math.Max(worst, diff)
			if diff > 1e-13 {
				t.Errorf("α=%g %s: ∂L/∂Δ differs from s·(∂L/∂W)[:, idx] by %.3g relative", alpha, names[i], diff)
			}
			if g := m.Mods[i].W.Grad; g != nil && maxAbs(g) != 0 {
				t.Errorf("α=%g %s: the frozen W got a gradient", alpha, names[i])
			}
		}
		t.Logf("s = %g: max relative difference of ∂L/∂Δ from s·(∂L/∂W)[:, idx]: %.3g", ps[0].Scaling(), worst)
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

// sameBits reports whether column j of a and b are equal bit for bit.
func sameBits(a, b *mat.Dense, j int) bool {
	r, _ := a.Dims()
	for i := 0; i < r; i++ {
		if math.Float64bits(a.At(i, j)) != math.Float64bits(b.At(i, j)) {
			return false
		}
	}
	return true
}

// TestUnselectedColumnsUnchanged trains with peft.Train and checks that W₀
// is untouched bit for bit, that every unselected column of the merged (and
// of the baked) weight is W₀'s bit for bit, and that every selected column
// moved.
func TestUnselectedColumnsUnchanged(t *testing.T) {
	m := newModel()
	ps, err := paca.Add(m, paca.Config{R: 2, Alpha: 4, Targets: names, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	w0 := make([]*mat.Dense, len(m.Mods))
	for i, l := range m.Mods {
		w0[i] = mat.DenseCopyOf(l.W.Value)
	}
	rng := rand.New(rand.NewSource(10))
	data := regression{adaptertest.RandDense(rng, 32, widths[0]), adaptertest.RandDense(rng, 32, widths[len(widths)-1])}
	h, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 50, BatchSize: 8, LR: 1e-2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	first, last := mean(h.Loss[:10]), mean(h.Loss[len(h.Loss)-10:])
	if !(last < first) {
		t.Errorf("training loss did not fall: %.4f over the first 10 steps, %.4f over the last 10", first, last)
	}
	t.Logf("mean loss %.4f over the first 10 steps, %.4f over the last 10", first, last)
	check := func(when string, w func(i int) *mat.Dense) {
		t.Helper()
		for i, p := range ps {
			wi := w(i)
			changed, kept := 0, 0
			for j := 0; j < widths[i]; j++ {
				same := sameBits(wi, w0[i], j)
				switch selected := slices.Contains(p.Idx, j); {
				case selected && same:
					t.Errorf("%s: %s: selected column %d did not change", when, names[i], j)
				case selected:
					changed++
				case !same:
					t.Errorf("%s: %s: unselected column %d changed", when, names[i], j)
				default:
					kept++
				}
			}
			if when == "merged" {
				t.Logf("%s W %s, columns %v: %d trained columns moved, %d others bit-identical", names[i], peft.ShapeOf(widths[i+1], widths[i]), p.Idx, changed, kept)
			}
		}
	}
	check("W₀ after training", func(i int) *mat.Dense {
		if !mat.Equal(m.Mods[i].W.Value, w0[i]) {
			t.Errorf("%s: training changed the frozen W₀", names[i])
		}
		return ps[i].MergedWeight(m.Mods[i].W.Value)
	})
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	check("merged", func(i int) *mat.Dense { return m.Mods[i].W.Value })
	if err := peft.UnmergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Mods {
		if err := l.Bake(); err != nil {
			t.Fatal(err)
		}
	}
	check("baked", func(i int) *mat.Dense { return m.Mods[i].W.Value })
}

// TestBadConfig: invalid settings are errors naming the module, the field
// and the value, and attach nothing.
func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  paca.Config
		want []string
	}{
		{paca.Config{R: 0, Targets: []string{"a"}}, []string{"PaCA", "a", "r = 0", "k = 5"}},
		{paca.Config{R: 4, Targets: []string{"c"}}, []string{"c", "r = 4", "(6×3)", "k = 3"}},
		{paca.Config{R: 4, Targets: names}, []string{"c", "r = 4", "k = 3"}}, // fits a and b, not c
		{paca.Config{R: 2, Alpha: -1, Targets: []string{"b"}}, []string{"b", "paca_alpha", "-1"}},
		{paca.Config{R: 2, Alpha: math.NaN(), Targets: []string{"b"}}, []string{"b", "paca_alpha", "NaN"}},
		{paca.Config{R: 2, Targets: []string{"nope"}}, []string{"nope", `"a", "b", "c"`}},
	} {
		m := newModel()
		_, err := paca.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	for _, c := range []struct {
		idx  []int
		want []string
	}{
		{[]int{0, 4}, []string{"fc", "[0 4]", "4 is outside [0, 4)"}},
		{[]int{-1}, []string{"fc", "-1"}},
		{[]int{2, 2}, []string{"fc", "[2 2]", "2 is repeated"}},
		{nil, []string{"fc", "r = 0"}},
	} {
		_, err := paca.New("fc", "default", 3, 4, c.idx, paca.Config{})
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("New with columns %v of W (3×4): %v", c.idx, e)
		}
	}
}

// saved returns a model with a trained-looking PaCA adapter (r = 2, α = 3,
// seed 7) and the directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*paca.PaCA, string) {
	t.Helper()
	m := newModel()
	ps, err := paca.Add(m, paca.Config{R: 2, Alpha: 3, Targets: names, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(14))
	for i, p := range ps {
		p.D.Value.Copy(adaptertest.RandDense(rng, widths[i+1], 2))
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, ps, dir
}

// TestFile checks the saved layout against PEFT's (tensor names and
// shapes, the indices, every PacaConfig field with the value PEFT would
// write) and that a loaded adapter has the same columns, α and output.
func TestFile(t *testing.T) {
	m, ps, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	for i, n := range names {
		want["base_model.model."+n+".paca_delta"] = []int{widths[i+1], 2}
		want["base_model.model."+n+".paca_indices"] = []int{2}
	}
	got := map[string][]int{}
	for _, n := range f.Names() {
		got[n] = f.Shape(n)
	}
	for i, n := range names {
		iv, err := f.Tensor("base_model.model." + n + ".paca_indices")
		if err != nil {
			t.Fatal(err)
		}
		if v := iv.RawRowView(0); v[0] != float64(ps[i].Idx[0]) || v[1] != float64(ps[i].Idx[1]) {
			t.Errorf("%s: paca_indices %v, want %v", n, v, ps[i].Idx)
		}
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
		"peft_type": "PACA", "r": 2.0, "paca_alpha": 3.0, "target_modules": []any{"a", "b", "c"},
		"exclude_modules": nil, "layers_to_transform": nil, "layers_pattern": nil, "random_seed": 7.0,
		"init_weights": true, "modules_to_save": nil,
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}
	fresh := newModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(15)), 6, 5))
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("loaded output differs from the saved model's")
	}
	for i, l := range fresh.Mods {
		p := l.ActiveAdapter().(*paca.PaCA)
		if !slices.Equal(p.Idx, ps[i].Idx) || p.Alpha != 3 || p.R != 2 || p.Seed != 7 || !p.D.Trainable || l.W.Trainable {
			t.Errorf("%s: loaded columns %v, α %g, r %d, seed %d, Δ trainable %v, W trainable %v; want %v, 3, 2, 7, true, false",
				l.Name, p.Idx, p.Alpha, p.R, p.Seed, p.D.Trainable, l.W.Trainable, ps[i].Idx)
		}
	}
}

// writeSafetensors writes a safetensors file as PyTorch does, with each
// tensor in its own dtype: "F32" values or "I64" integers.
func writeSafetensors(t *testing.T, path string, tensors map[string]struct {
	dtype string
	shape []int
	vals  []float64
}) {
	t.Helper()
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	keys := slices.Sorted(maps.Keys(tensors))
	for _, name := range keys {
		e := tensors[name]
		begin := len(data)
		for _, v := range e.vals {
			switch e.dtype {
			case "F32":
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(v)))
			case "I64":
				data = binary.LittleEndian.AppendUint64(data, uint64(int64(v)))
			default:
				t.Fatalf("dtype %s", e.dtype)
			}
		}
		header[name] = map[string]any{"dtype": e.dtype, "shape": e.shape, "data_offsets": []int{begin, len(data)}}
	}
	hdr, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	out = append(append(out, hdr...), data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadPEFTFile loads an adapter written the way PEFT writes one: its
// PacaConfig with every field, paca_delta in F32 and paca_indices in I64.
func TestLoadPEFTFile(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"peft_type": "PACA", "peft_version": "0.18.2", "task_type": null, "inference_mode": true,
		"base_model_name_or_path": null, "revision": null, "auto_mapping": null,
		"r": 2, "paca_alpha": 4, "target_modules": ["a", "c"], "exclude_modules": null,
		"layers_to_transform": null, "layers_pattern": null, "random_seed": null,
		"init_weights": true, "modules_to_save": null}`
	if err := os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	type tensor = struct {
		dtype string
		shape []int
		vals  []float64
	}
	da := []float64{0.5, -1, 0.25, 2, 1, 1, -0.5, 0, 3, 0.125, -2, 1.5, 0.75, -0.25, 1, 1} // (8×2)
	dc := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}                                 // (6×2)
	writeSafetensors(t, filepath.Join(dir, peft.AdapterWeightsFile), map[string]tensor{
		"base_model.model.a.paca_delta":   {"F32", []int{8, 2}, da},
		"base_model.model.a.paca_indices": {"I64", []int{2}, []float64{1, 4}},
		"base_model.model.c.paca_delta":   {"F32", []int{6, 2}, dc},
		"base_model.model.c.paca_indices": {"I64", []int{2}, []float64{0, 2}},
	})
	m := newModel()
	w0 := []*mat.Dense{mat.DenseCopyOf(m.Mods[0].W.Value), mat.DenseCopyOf(m.Mods[2].W.Value)}
	if err := peft.LoadAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	if m.Mods[1].ActiveAdapter() != nil {
		t.Error("b got an adapter it has no tensors for")
	}
	for n, c := range []struct {
		mod   int
		idx   []int
		delta []float64
	}{{0, []int{1, 4}, da}, {2, []int{0, 2}, dc}} {
		p := m.Mods[c.mod].ActiveAdapter().(*paca.PaCA)
		if !slices.Equal(p.Idx, c.idx) || p.Scaling() != 2 {
			t.Errorf("%s: columns %v, s = %g; want %v, 2", names[c.mod], p.Idx, p.Scaling(), c.idx)
		}
		d := widths[c.mod+1]
		want := mat.DenseCopyOf(w0[n])
		for col, j := range c.idx {
			for row := 0; row < d; row++ {
				want.Set(row, j, w0[n].At(row, j)+2*c.delta[row*2+col])
			}
		}
		if !mat.Equal(p.MergedWeight(w0[n]), want) {
			t.Errorf("%s: merged weight is not W₀ with columns %v moved by 2·paca_delta", names[c.mod], c.idx)
		}
	}
}

// TestLoadRefuses: indices that are not columns of the module or do not fit
// the rank, a paca_delta of the wrong shape, a missing tensor and options
// gopeft does not implement are errors naming what is wrong, and attach
// nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	setIdx := func(module string, idx ...float64) adaptertest.Edit {
		return func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			name := "base_model.model." + module + ".paca_indices"
			ts[name] = mat.NewDense(1, len(idx), idx)
			shapes[name] = []int{len(idx)}
		}
	}
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "r missing", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "r") },
			Want: []string{`"r"`, "missing", "r = 8", "2 columns"}},
		{What: "r of another value", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["r"] = 3 },
			Want: []string{"paca_indices", "2 columns", "r is 3"}},
		{What: "negative alpha", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["paca_alpha"] = -2 },
			Want: []string{`"paca_alpha"`, "-2"}},
		{What: "no paca_indices", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.b.paca_indices"] = nil
		},
			Want: []string{"module b has no tensor paca_indices"}},
		{What: "no paca_delta", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.c.paca_delta"] = nil
		},
			Want: []string{"module c has no tensor paca_delta"}},
		{What: "too few columns", Edit: setIdx("a", 1), Want: []string{"base_model.model.a.paca_indices", "1 columns", "r is 2"}},
		{What: "column out of range", Edit: setIdx("c", 0, 3), Want: []string{"base_model.model.c.paca_indices", "column 3", "[0, 3)", "(6×3)"}},
		{What: "column negative", Edit: setIdx("c", -1, 2), Want: []string{"base_model.model.c.paca_indices", "column -1"}},
		{What: "column repeated", Edit: setIdx("b", 4, 4), Want: []string{"base_model.model.b.paca_indices", "column 4", "repeated"}},
		{What: "column not whole", Edit: setIdx("b", 1.5, 2), Want: []string{"base_model.model.b.paca_indices", "column 1.5", "whole number"}},
		{What: "paca_delta of another shape", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.a.paca_delta"] = mat.NewDense(8, 3, nil)
			shapes["base_model.model.a.paca_delta"] = []int{8, 3}
		}, Want: []string{"base_model.model.a.paca_delta", "[8 3]", "(8×2)"}},
		{What: "exclude_modules", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["exclude_modules"] = []string{"b"}
		},
			Want: []string{"exclude_modules"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["paca_dropout"] = 0.1 },
			Want: []string{"paca_dropout", "PaCA"}},
	})
}

// TestSaveRefuses: modules with different r cannot share one PacaConfig,
// and BF16 cannot store a column number above 256 exactly (F16 can, up to
// 2048).
func TestSaveRefuses(t *testing.T) {
	m := newModel()
	if _, err := paca.Add(m, paca.Config{R: 2, Targets: []string{"a"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := paca.Add(m, paca.Config{R: 3, Targets: []string{"b"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	err := peft.SaveAdapter(filepath.Join(t.TempDir(), "x"), m, "")
	if e := adaptertest.ErrorMentions(err, "differ in r", "2", "3"); e != nil {
		t.Error(e)
	}

	wide := adaptertest.NewChain(1, []string{"fc"}, 400, 3)
	ps, err := paca.Add(wide, paca.Config{R: 40, Targets: []string{"fc"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	top := ps[0].Idx[len(ps[0].Idx)-1]
	if top <= 256 {
		t.Fatalf("the test needs a column above 256; the highest drawn is %d", top)
	}
	err = peft.SaveAdapterWith(filepath.Join(t.TempDir(), "bf16"), wide, "", peft.AdapterOptions{DType: "BF16"})
	if e := adaptertest.ErrorMentions(err, "fc", "paca_indices", "BF16", "up to 256"); e != nil {
		t.Error(e)
	}
	dir := filepath.Join(t.TempDir(), "f16")
	if err := peft.SaveAdapterWith(dir, wide, "", peft.AdapterOptions{DType: "F16"}); err != nil {
		t.Fatal(err)
	}
	fresh := adaptertest.NewChain(1, []string{"fc"}, 400, 3)
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Mods[0].ActiveAdapter().(*paca.PaCA).Idx; !slices.Equal(got, ps[0].Idx) {
		t.Errorf("F16 round trip: columns %v, want %v", got, ps[0].Idx)
	}
}
