package sltrain_test

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
	"github.com/gopeft/gopeft/peft/sltrain"
	"gonum.org/v1/gonum/mat"
)

// saved returns a model with a trained-looking SLTrain adapter (r = 2,
// α = 3, δ = 0.2), on W₀ if keep, and the directory it was saved to.
func saved(t *testing.T, keep bool) (*adaptertest.Chain, []*sltrain.SLTrain, string) {
	t.Helper()
	m := newModel()
	as, err := sltrain.Add(m, sltrain.Config{R: 2, Alpha: 3, Delta: 0.2, KeepBase: keep, Targets: names, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(14))
	for _, a := range as {
		for _, q := range a.Params() {
			r, c := q.Dims()
			q.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, as, dir
}

// TestFile checks the saved layout (tensor names and shapes, every config
// field) and that loading gives the same adapter: output bit for bit, Ω,
// α, δ and KeepBase.
func TestFile(t *testing.T) {
	for _, keep := range []bool{false, true} {
		m, as, dir := saved(t, keep)
		f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]int{}
		indices := map[string]any{}
		for i, n := range names {
			d, k := widths[i+1], widths[i]
			want["base_model.model."+n+".lora_A.weight"] = []int{2, k}
			want["base_model.model."+n+".lora_B.weight"] = []int{d, 2}
			want["base_model.model."+n+".sparse_value"] = []int{sltrain.NonZeros(0.2, d, k)}
			var l []any
			for _, f := range as[i].Support() {
				l = append(l, float64(f))
			}
			indices[n] = l
		}
		got := map[string][]int{}
		for _, n := range f.Names() {
			got[n] = f.Shape(n)
		}
		f.Close()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("keep=%v: tensors %v, want %v", keep, got, want)
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
			"peft_type": "GOPEFT_SLTRAIN", "r": 2.0, "lora_alpha": 3.0, "sp_ratio": 0.2, "keep_base": keep,
			"sparse_index": indices, "target_modules": []any{"a", "b"},
			"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
		}
		if !reflect.DeepEqual(cfg, wantCfg) {
			t.Errorf("keep=%v: adapter_config.json is %v,\nwant %v", keep, cfg, wantCfg)
		}

		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(15)), 6, 10))
		y := m.Forward(x).Value
		fresh := newModel()
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(fresh.Forward(x).Value, y) {
			t.Errorf("keep=%v: output of the loaded adapter differs from the saved one's", keep)
		}
		for i, l := range fresh.Mods {
			a := l.ActiveAdapter().(*sltrain.SLTrain)
			if !slices.Equal(a.Support(), as[i].Support()) || a.Alpha != 3 || a.Delta != 0.2 || a.KeepBase != keep || a.Rank() != 2 {
				t.Errorf("keep=%v: %s: loaded Ω %v, α %g, δ %g, KeepBase %v, r %d", keep, l.Name, a.Support(), a.Alpha, a.Delta, a.KeepBase, a.Rank())
			}
		}
	}
}

// TestLoadRefuses: a support that is not one, whose size is not ⌊δ·d·k⌋,
// that disagrees with the values, a missing entry or field, a δ out of
// range and fields gopeft does not know are errors naming what is wrong,
// and attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t, false)
	idx := func(cfg map[string]any) map[string]any { return cfg["sparse_index"].(map[string]any) }
	seq := func(from, n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = from + i
		}
		return s
	}
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "unsorted support", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			s := seq(0, 24)
			s[3], s[4] = s[4], s[3]
			idx(cfg)["a"] = s
		}, Want: []string{"sparse_index", "module a", "Ω[4] = 3"}},
		{What: "index out of range", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["b"] = seq(50, 12)
		}, Want: []string{"sparse_index", "module b", "Ω[10] = 60", "(5×12)"}},
		{What: "support of another size", Edit: func(cfg map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			idx(cfg)["b"] = seq(0, 11)
			ts["base_model.model.b.sparse_value"] = mat.NewDense(1, 11, nil)
		}, Want: []string{"sparse_index", "module b", "11 entries", "sp_ratio δ = 0.2", "⌊δ·d·k⌋ = 12"}},
		{What: "no entry for a module", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(idx(cfg), "a")
		}, Want: []string{"sparse_index", "module a"}},
		{What: "values of another length", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.a.sparse_value"] = mat.NewDense(1, 5, nil)
		}, Want: []string{"sparse_value", "[5]", "[24]"}},
		{What: "not an index", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			s := make([]any, 12)
			for i := range s {
				s[i] = i
			}
			s[2] = 2.5
			idx(cfg)["b"] = s
		}, Want: []string{"sparse_index", "module b", "Ω[2] = 2.5"}},
		{What: "no sp_ratio", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg, "sp_ratio")
		}, Want: []string{"sp_ratio", "missing"}},
		{What: "sp_ratio 1", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["sp_ratio"] = 1
		}, Want: []string{"sp_ratio", "1 is outside (0, 1)"}},
		{What: "rank other than r", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["r"] = 3
		}, Want: []string{"lora_A", "rank 2", "\"r\" is 3"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["trainable_scaling"] = true
		}, Want: []string{"trainable_scaling", "SLTrain"}},
	})
}

// TestSaveRefusesMixed: adapters that differ in what the config holds once
// cannot share a file.
func TestSaveRefusesMixed(t *testing.T) {
	m := newModel()
	if _, err := sltrain.Add(m, sltrain.Config{R: 2, Delta: 0.2, Targets: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sltrain.Add(m, sltrain.Config{R: 2, Delta: 0.1, Targets: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	err := peft.SaveAdapter(filepath.Join(t.TempDir(), "x"), m, "")
	if e := adaptertest.ErrorMentions(err, "a", "b", "δ (0.2, 0.1)", "sp_ratio"); e != nil {
		t.Error(e)
	}
}
