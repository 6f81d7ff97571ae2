package moram_test

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/moram"
	"gonum.org/v1/gonum/mat"
)

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("moram")
	if !ok {
		t.Fatal("MoRAM is not registered")
	}
	if m.Name != "MoRAM" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_MORAM" ||
		m.Package != "github.com/gopeft/gopeft/peft/moram" || !strings.Contains(m.Paper, "arXiv:2506.21035") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	if _, ok := peft.LookupMethod("mora"); ok {
		t.Error(`a method "MoRA" is registered: the name belongs to Jiang et al.'s MoRA`)
	}
	as, err := moram.Add(oneLayer(), moram.Config{R: 1, Targets: []string{"fc"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(as[0]); !ok || owner.Name != "MoRAM" {
		t.Errorf("a MoRAM adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// TestDefaults: a zero Config takes the reference code's k = r, τ = 0.01
// and δ = 0.2.
func TestDefaults(t *testing.T) {
	as, err := moram.Add(oneLayer(), moram.Config{R: 3, Targets: []string{"fc"}})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	if a.TopK != 3 || a.Tau != 0.01 || a.Delta != 0.2 || a.Tasks != 1 || a.Rank() != 3 {
		t.Errorf("defaults k = %d, τ = %v, δ = %v, T = %d, R = %d; want 3, 0.01, 0.2, 1, 3", a.TopK, a.Tau, a.Delta, a.Tasks, a.Rank())
	}
	if big, bound := adaptertest.MaxAbs(a.A.Value), 1/math.Sqrt(6); big > bound || big == 0 || adaptertest.MaxAbs(a.B.Value) != 0 {
		t.Errorf("init: max |A| = %g (want in (0, 1/√k = %g]), max |B| = %g (want 0)", big, bound, adaptertest.MaxAbs(a.B.Value))
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  moram.Config
		want []string
	}{
		{moram.Config{R: 0, Targets: []string{"fc"}}, []string{"MoRAM on fc", "R = 0", "(5×6)"}},
		{moram.Config{R: 6, Targets: []string{"fc"}}, []string{"MoRAM on fc", "R = 6", "min(d, k) = 5"}},
		{moram.Config{R: 2, TopK: -1, Targets: []string{"fc"}}, []string{"MoRAM on fc", "TopK = -1"}},
		{moram.Config{R: 2, Tau: -0.5, Targets: []string{"fc"}}, []string{"MoRAM on fc", "Tau = -0.5"}},
		{moram.Config{R: 2, Tau: math.NaN(), Targets: []string{"fc"}}, []string{"MoRAM on fc", "Tau = NaN"}},
		{moram.Config{R: 2, Delta: 1.5, Targets: []string{"fc"}}, []string{"MoRAM on fc", "Delta = 1.5"}},
		{moram.Config{R: 2, Delta: math.NaN(), Targets: []string{"fc"}}, []string{"MoRAM on fc", "Delta = NaN"}},
		{moram.Config{R: 2, Targets: []string{"z"}}, []string{`"z"`, `"fc"`}},
	} {
		m := oneLayer()
		_, err := moram.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		if len(m.Mods[0].Adapters) != 0 {
			t.Errorf("%+v: fc kept an adapter", c.cfg)
		}
	}
}

// TestMerge: the uniform limit merges to W₀ + (1/R)·B·A, on task 2 too;
// any input-dependent setting refuses with an error from peft.Maybe and
// leaves W alone.
func TestMerge(t *testing.T) {
	m := oneLayer()
	as := twoTasks(t, m, moram.Config{R: 2, TopK: 4, Tau: math.Inf(1), Delta: -1}, 51)
	a := as[0]
	if !a.Mergeable() {
		t.Fatal("τ = +Inf, k = R, δ < 0 is not Mergeable")
	}
	w0 := m.Mods[0].W.Value
	A, B := allAtoms(a)
	var want mat.Dense
	want.Mul(B, A)
	want.Scale(0.25, &want)
	want.Add(w0, &want)
	if d := adaptertest.RelDiffMax(a.MergedWeight(w0), &want); d > 1e-15 {
		t.Errorf("merged weight differs from W₀ + B·A/R by %.3g", d)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(52)), 4, 6))
	out := mat.DenseCopyOf(m.Forward(x).Value)
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if d := adaptertest.RelDiffMax(m.Forward(x).Value, out); d > 1e-13 {
		t.Errorf("merged output differs by %.3g", d)
	}
	for _, cfg := range []moram.Config{
		{R: 2, TopK: 4, Tau: 0.5, Delta: -1},         // τ finite
		{R: 2, TopK: 3, Tau: math.Inf(1), Delta: -1}, // k < R
		{R: 2, TopK: 4, Tau: math.Inf(1)},            // pruning on
	} {
		m := oneLayer()
		twoTasks(t, m, cfg, 53)
		w := mat.DenseCopyOf(m.Mods[0].W.Value)
		err := peft.MergeAdapters(m)
		if err == nil || adaptertest.ErrorMentions(err, "MoRAM", "fc", "cannot be merged", "depends on the input") != nil {
			t.Errorf("%+v: merge gave %v, want an error saying why", cfg, err)
		}
		if !mat.Equal(m.Mods[0].W.Value, w) || m.Mods[0].Merged() != "" {
			t.Errorf("%+v: the refused merge changed the layer", cfg)
		}
	}
}

// saved returns a model with MoRAM on fc1 and fc2 after two tasks of r = 2
// (trained-looking atoms), and the directory it was saved to.
func saved(t *testing.T, cfg moram.Config) (*adaptertest.Chain, []*moram.MoRAM, string) {
	t.Helper()
	m := twoLayers()
	as := twoTasks(t, m, cfg, 61)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, as, dir
}

// TestFile checks the saved layout (old and new atoms in one tensor, the
// config fields) and that a reload reproduces the outputs bit for bit in
// both modes, with the old atoms frozen and the new ones trainable.
func TestFile(t *testing.T) {
	for _, cfg := range []moram.Config{{R: 2, TopK: 3}, {R: 2, Tau: math.Inf(1), Delta: -0.5}} {
		m, as, dir := saved(t, cfg)
		f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int{}
		for _, n := range f.Names() {
			got[n] = f.Shape(n)
		}
		f.Close()
		want := map[string][]int{
			"base_model.model.fc1.moram_A.weight": {4, 6}, "base_model.model.fc1.moram_B.weight": {5, 4},
			"base_model.model.fc2.moram_A.weight": {4, 5}, "base_model.model.fc2.moram_B.weight": {4, 4},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("tensors %v, want %v", got, want)
		}
		raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		a0 := as[0]
		var tau any = a0.Tau
		if math.IsInf(a0.Tau, 1) {
			tau = "inf"
		}
		wantCfg := map[string]any{
			"peft_type": "GOPEFT_MORAM", "r": 2.0, "num_tasks": 2.0, "top_k": float64(a0.TopK), "tau": tau, "delta": a0.Delta,
			"target_modules": []any{"fc1", "fc2"},
			"task_type":      nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
		}
		if !reflect.DeepEqual(c, wantCfg) {
			t.Errorf("adapter_config.json is %v,\nwant %v", c, wantCfg)
		}
		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(62)), 7, 6))
		fresh := twoLayers()
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		for _, training := range []bool{true, false} {
			m.SetTraining(training)
			fresh.SetTraining(training)
			if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
				t.Errorf("%+v training=%v: loaded output differs", cfg, training)
			}
		}
		for i, l := range fresh.Mods {
			b := l.ActiveAdapter().(*moram.MoRAM)
			o := as[i]
			if b.Tasks != 2 || b.Rank() != 4 || !mat.Equal(b.OldA.Value, o.OldA.Value) || !mat.Equal(b.OldB.Value, o.OldB.Value) ||
				!mat.Equal(b.A.Value, o.A.Value) || !mat.Equal(b.B.Value, o.B.Value) {
				t.Errorf("%s: loaded atoms differ", l.Name)
			}
			if b.OldA.Trainable || b.OldB.Trainable || !b.A.Trainable || !b.B.Trainable {
				t.Errorf("%s: loaded old atoms trainable %v %v, new %v %v; want frozen, trainable", l.Name, b.OldA.Trainable, b.OldB.Trainable, b.A.Trainable, b.B.Trainable)
			}
		}
	}
}

// TestLoadRefuses: missing or wrong fields, tensors that do not fit the
// config and unknown fields are errors naming what is wrong, and attach
// nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t, moram.Config{R: 2, TopK: 3})
	type E = map[string]any
	edit := func(f func(E)) adaptertest.Edit {
		return func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { f(cfg) }
	}
	adaptertest.RefusesLoad(t, orig, twoLayers, []adaptertest.Refusal{
		{What: "no num_tasks", Edit: edit(func(c E) { delete(c, "num_tasks") }), Want: []string{`"num_tasks"`, "missing"}},
		{What: "no tau", Edit: edit(func(c E) { delete(c, "tau") }), Want: []string{`"tau"`, "missing"}},
		{What: "num_tasks = 3", Edit: edit(func(c E) { c["num_tasks"] = 3 }), Want: []string{"moram_A", "[4 6]", "num_tasks = 3", "(6×6)"}},
		{What: "r = 1", Edit: edit(func(c E) { c["r"] = 1 }), Want: []string{"moram_A", "[4 6]", "r = 1", "(2×6)"}},
		{What: "r = 9", Edit: edit(func(c E) { c["r"] = 9; c["num_tasks"] = 1 }), Want: []string{`"r"`, "R = 9", "min(d, k) = 5"}},
		{What: "tau = -1", Edit: edit(func(c E) { c["tau"] = -1 }), Want: []string{`"tau"`, "-1"}},
		{What: `tau = "big"`, Edit: edit(func(c E) { c["tau"] = "big" }), Want: []string{`"tau"`, `"big"`}},
		{What: "delta = 2", Edit: edit(func(c E) { c["delta"] = 2 }), Want: []string{`"delta"`, "Delta = 2"}},
		{What: "top_k = 0", Edit: edit(func(c E) { c["top_k"] = 0 }), Want: []string{`"top_k"`, "0"}},
		{What: "B of another width", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.fc2.moram_B.weight"] = mat.NewDense(4, 3, nil)
			shapes["base_model.model.fc2.moram_B.weight"] = []int{4, 3}
		}, Want: []string{"moram_B", "[4 3]", "(4×4)"}},
		{What: "no moram_B", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.fc1.moram_B.weight")
		}, Want: []string{"moram_B", "module fc1"}},
		{What: "unknown field", Edit: edit(func(c E) { c["moram_alpha"] = 16 }), Want: []string{"moram_alpha", "MoRAM"}},
	})
}
