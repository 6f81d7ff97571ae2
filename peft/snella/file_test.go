package snella_test

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/snella"
	"gonum.org/v1/gonum/mat"
)

// saved returns a model with a trained-looking SNELLA adapter (q = 2,
// sparsity 0.5, the masks recomputed after the parameters moved) and the
// directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*snella.SNELLA, string) {
	t.Helper()
	m := newModel()
	as, err := snella.Add(m, snella.Config{Q: 2, Sparsity: 0.5, Targets: names, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(9)), as)
	for _, a := range as {
		a.Refresh()
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, as, dir
}

// TestFile checks the saved layout and config, and the round trip: the
// loaded adapter has the same parameters and mask, and the same outputs
// bit for bit.
func TestFile(t *testing.T) {
	m, as, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	for i, n := range names {
		p := "base_model.model." + n
		want[p+".snella_A.weight"] = []int{widths[i], 2}
		want[p+".snella_B.weight"] = []int{widths[i+1], 2}
		want[p+".snella_alpha"] = []int{1}
		want[p+".snella_gamma"] = []int{1}
		want[p+".snella_beta"] = []int{1}
		want[p+".snella_mask"] = []int{widths[i+1], widths[i]}
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
		"peft_type": "GOPEFT_SNELLA", "q": 2.0, "kernel_scale": 0.1, "target_modules": []any{"a", "b", "c"},
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(10)), 4, 5))
	fresh := newModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("loaded output differs")
	}
	for i, l := range fresh.Mods {
		a := l.ActiveAdapter().(*snella.SNELLA)
		o := as[i]
		if a.Q != 2 || a.Kept() != o.Kept() || !mat.Equal(a.Mask(), o.Mask()) || !mat.Equal(a.A.Value, o.A.Value) || !mat.Equal(a.B.Value, o.B.Value) ||
			a.Alpha.Value.At(0, 0) != o.Alpha.Value.At(0, 0) || a.Gamma.Value.At(0, 0) != o.Gamma.Value.At(0, 0) || a.Beta.Value.At(0, 0) != o.Beta.Value.At(0, 0) {
			t.Errorf("%s: loaded adapter differs", l.Name)
		}
		for _, p := range a.Params() {
			if !p.Trainable {
				t.Errorf("%s: %s is frozen after loading", l.Name, p.Name)
			}
		}
	}
}

// TestLoadRefuses: a missing or wrong q, a mask that is not 0/1, tensors
// that do not fit and unknown fields are errors naming what is wrong, and
// attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "no q", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "q") },
			Want: []string{`"q"`, "missing"}},
		{What: "q = 3", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["q"] = 3 },
			Want: []string{`"q"`, "SNELLA on a", "Q = 3", "even"}},
		{What: "q = 4", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["q"] = 4 },
			Want: []string{"snella_A", "q = 4", "(5×4)"}},
		{What: "kernel_scale", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["kernel_scale"] = 0.2 },
			Want: []string{`"kernel_scale"`, "0.2"}},
		{What: "mask of 0.5", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.b.snella_mask"].Set(1, 2, 0.5)
		}, Want: []string{"snella_mask", "0.5", "row 1, column 2"}},
		{What: "mask of another shape", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.c.snella_mask"] = mat.NewDense(4, 6, nil)
			shapes["base_model.model.c.snella_mask"] = []int{4, 6}
		}, Want: []string{"snella_mask", "[4 6]", "(6×4)"}},
		{What: "no gamma", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.a.snella_gamma")
		}, Want: []string{"snella_gamma", "module a"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["snella_temperature"] = 2 },
			Want: []string{"snella_temperature", "SNELLA"}},
	})
}
