package dsee_test

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/dsee"
	"gonum.org/v1/gonum/mat"
)

// saved returns a model with a trained-looking DSEE adapter (r = 2, α = 3,
// dropout 0.1, N = 5 by magnitude), pruned at p if p > 0, and the directory
// it was saved to.
func saved(t *testing.T, p float64) (*adaptertest.Chain, []*dsee.DSEE, string) {
	t.Helper()
	m := newModel()
	ds, err := dsee.Add(m, dsee.Config{R: 2, Alpha: 3, Dropout: 0.1, N: 5, Selection: dsee.Magnitude, Targets: names, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(14))
	for _, a := range ds {
		for _, q := range a.Params() {
			r, c := q.Dims()
			q.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
	if p > 0 {
		if err := dsee.Prune(m, p); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, ds, dir
}

// TestFile checks the saved layout (tensor names and shapes, every config
// field) and that loading gives the same adapter: output bit for bit, Ω,
// selection, α, dropout and the mask.
func TestFile(t *testing.T) {
	for _, p := range []float64{0, 0.4} {
		m, ds, dir := saved(t, p)
		f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]int{}
		for i, n := range names {
			d, k := widths[i+1], widths[i]
			want["base_model.model."+n+".lora_A.weight"] = []int{2, k}
			want["base_model.model."+n+".lora_B.weight"] = []int{d, 2}
			want["base_model.model."+n+".dsee_S2"] = []int{5}
			if p > 0 {
				want["base_model.model."+n+".dsee_mask"] = []int{d, k}
			}
		}
		got := map[string][]int{}
		for _, n := range f.Names() {
			got[n] = f.Shape(n)
		}
		f.Close()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("p = %g: tensors %v, want %v", p, got, want)
		}
		raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		indices := map[string]any{}
		for i, n := range names {
			var l []any
			for _, f := range ds[i].Support() {
				l = append(l, float64(f))
			}
			indices[n] = l
		}
		wantCfg := map[string]any{
			"peft_type": "GOPEFT_DSEE", "r": 2.0, "lora_alpha": 3.0, "lora_dropout": 0.1, "n_sparse": 5.0,
			"sparse_selection": "magnitude", "sparse_indices": indices, "prune_ratio": p, "target_modules": []any{"a", "b"},
			"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
		}
		if !reflect.DeepEqual(cfg, wantCfg) {
			t.Errorf("p = %g: adapter_config.json is %v,\nwant %v", p, cfg, wantCfg)
		}

		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(15)), 6, 6))
		y := m.Forward(x).Value
		fresh := newModel()
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(fresh.Forward(x).Value, y) {
			t.Errorf("p = %g: output of the loaded adapter differs from the saved one's", p)
		}
		for i, l := range fresh.Mods {
			a := l.ActiveAdapter().(*dsee.DSEE)
			o := ds[i]
			if !slices.Equal(a.Support(), o.Support()) || a.Selection != o.Selection || a.Alpha != 3 || a.Dropout != 0.1 || a.Rank() != 2 {
				t.Errorf("p = %g: %s: loaded Ω %v, selection %v, α %g, dropout %g, r %d; saved %v, %v, 3, 0.1, 2",
					p, l.Name, a.Support(), a.Selection, a.Alpha, a.Dropout, a.Rank(), o.Support(), o.Selection)
			}
			am, ap := a.Mask()
			om, op := o.Mask()
			if ap != op || (am == nil) != (om == nil) || (am != nil && !mat.Equal(am, om)) {
				t.Errorf("p = %g: %s: loaded mask (ratio %g) differs from the saved one (ratio %g)", p, l.Name, ap, op)
			}
			for _, q := range a.Params() {
				if !q.Trainable {
					t.Errorf("p = %g: %s: loaded %s is not trainable", p, l.Name, q.Name)
				}
			}
		}
	}
}

// TestLoadRefuses: a support that is not one, that disagrees with n_sparse
// or with the values, a missing entry, a bad mask or a missing one are
// errors naming what is wrong, and attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, plain := saved(t, 0)
	_, _, pruned := saved(t, 0.4)
	idx := func(cfg map[string]any) map[string]any { return cfg["sparse_indices"].(map[string]any) }
	adaptertest.RefusesLoad(t, "", newModel, []adaptertest.Refusal{
		{What: "unsorted support", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["a"] = []int{9, 3, 10, 11, 12}
		}, Want: []string{"sparse_indices", "module a", "Ω[1] = 3", "increasing"}},
		{What: "index out of range", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["b"] = []int{1, 2, 3, 4, 20}
		}, Want: []string{"sparse_indices", "module b", "Ω[4] = 20", "(4×5)"}},
		{What: "no entry for a module", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(idx(cfg), "b")
		}, Want: []string{"sparse_indices", "module b"}},
		{What: "support shorter than n_sparse", Dir: plain, Edit: func(cfg map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["a"] = []int{1, 2, 3}
		}, Want: []string{"sparse_indices", "module a", "3 entries", "n_sparse is 5"}},
		{What: "values of another length", Dir: plain, Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.a.dsee_S2"] = mat.NewDense(1, 4, nil)
		}, Want: []string{"dsee_S2", "[4]", "[5]"}},
		{What: "not indices", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["a"] = []any{1.5, 2, 3, 4, 5}
		}, Want: []string{"sparse_indices", "module a", "Ω[0] = 1.5"}},
		{What: "not a list", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["b"] = "all"
		}, Want: []string{"sparse_indices", "module b", "not a list"}},
		{What: "not an object", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["sparse_indices"] = []int{1, 2}
		}, Want: []string{"sparse_indices", "not an object"}},
		{What: "no n_sparse", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg, "n_sparse")
		}, Want: []string{"n_sparse", "missing"}},
		{What: "unknown selection", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["sparse_selection"] = "random"
		}, Want: []string{"sparse_selection", "random"}},
		{What: "rank other than r", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["r"] = 3
		}, Want: []string{"lora_A", "rank 2", "\"r\" is 3"}},
		{What: "unknown field", Dir: plain, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["use_dora"] = true
		}, Want: []string{"use_dora", "DSEE"}},
		{What: "mask without prune_ratio", Dir: pruned, Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["prune_ratio"] = 0
		}, Want: []string{"dsee_mask", "prune_ratio is 0"}},
		{What: "prune_ratio without mask", Dir: pruned, Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.b.dsee_mask"] = nil
		}, Want: []string{"module b", "dsee_mask", "prune_ratio is 0.4"}},
		{What: "mask not 0/1", Dir: pruned, Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.a.dsee_mask"].Set(1, 2, 0.5)
		}, Want: []string{"dsee_mask", "(1, 2)", "0.5"}},
		{What: "mask with other zeros", Dir: pruned, Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			m := ts["base_model.model.a.dsee_mask"]
			for f, v := range m.RawMatrix().Data {
				if v == 0 {
					m.RawMatrix().Data[f] = 1
					break
				}
			}
		}, Want: []string{"dsee_mask", "11 zeros", "⌊p·d·k⌋ = 12"}},
	})
}

// TestSaveRefusesMixed: adapters that differ in what the config holds once
// cannot share a file.
func TestSaveRefusesMixed(t *testing.T) {
	m := newModel()
	if _, err := dsee.Add(m, dsee.Config{R: 2, N: 3, Selection: dsee.Magnitude, Targets: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dsee.Add(m, dsee.Config{R: 2, N: 4, Selection: dsee.Magnitude, Targets: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	err := peft.SaveAdapter(filepath.Join(t.TempDir(), "x"), m, "")
	if e := adaptertest.ErrorMentions(err, "a", "b", "N (3, 4)", "n_sparse"); e != nil {
		t.Error(e)
	}
}
