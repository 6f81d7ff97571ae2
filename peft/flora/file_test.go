package flora_test

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/flora"
	"gonum.org/v1/gonum/mat"
)

// savedConv returns the conv-shaped model with trained-looking FLoRA
// adapters, ranks (3, 2, 2, 1) on conv and (2, 3) on fc, s = 4, and the
// directory they were saved to.
func savedConv(t *testing.T) (*adaptertest.Chain, []*flora.FLoRA, string) {
	t.Helper()
	m := convModel()
	a, err := flora.Add(m, flora.Config{Ranks: []int{3, 2, 2, 1}, Scale: 4, Targets: []string{"conv"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := flora.Add(m, flora.Config{Ranks: []int{2, 3}, Scale: 4, Targets: []string{"fc"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	fs := append(a, b...)
	randomize(rand.New(rand.NewSource(3)), fs)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, fs, dir
}

// TestFile checks the saved layout of a 4-D and a 2-D adapter and the
// round trip, bit for bit.
func TestFile(t *testing.T) {
	m, fs, dir := savedConv(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{
		"base_model.model.conv.flora_G.weight":  {3, 4},
		"base_model.model.conv.flora_U1.weight": {5, 3},
		"base_model.model.conv.flora_U2.weight": {4, 2},
		"base_model.model.conv.flora_U3.weight": {3, 2},
		"base_model.model.conv.flora_U4.weight": {2, 1},
		"base_model.model.fc.flora_G.weight":    {2, 3},
		"base_model.model.fc.flora_U1.weight":   {3, 2},
		"base_model.model.fc.flora_U2.weight":   {5, 3},
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
		"peft_type": "GOPEFT_FLORA", "scale": 4.0, "dropout": 0.0, "target_modules": []any{"conv", "fc"},
		"ranks":     map[string]any{"conv": []any{3.0, 2.0, 2.0, 1.0}, "fc": []any{2.0, 3.0}},
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(4)), 6, 24))
	fresh := convModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("loaded output differs")
	}
	for i, l := range fresh.Mods {
		g := l.ActiveAdapter().(*flora.FLoRA)
		if !reflect.DeepEqual(g.Ranks(), fs[i].Ranks()) || g.Scale != 4 {
			t.Errorf("%s: loaded ranks %v, s %g; saved %v, 4", l.Name, g.Ranks(), g.Scale, fs[i].Ranks())
		}
		for j, p := range g.Params() {
			if !mat.Equal(p.Value, fs[i].Params()[j].Value) || !p.Trainable {
				t.Errorf("%s: loaded %s differs or is frozen", l.Name, p.Name)
			}
		}
	}
}

// TestLoadRefuses: missing or wrong ranks, a model without the kernel,
// tensors that do not fit and a bad scale are errors naming what is wrong,
// and attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := savedConv(t)
	setRanks := func(conv any) adaptertest.Edit {
		return func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["ranks"].(map[string]any)["conv"] = conv
		}
	}
	adaptertest.RefusesLoad(t, orig, convModel, []adaptertest.Refusal{
		{What: "no ranks", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "ranks") },
			Want: []string{`"ranks"`, "missing"}},
		{What: "no entry for conv", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg["ranks"].(map[string]any), "conv")
		}, Want: []string{`"ranks"`, "conv"}},
		{What: "ranks of N = 2 on conv", Edit: setRanks([]int{3, 2}), Want: []string{`"ranks"`, "FLoRA on conv", "Ranks = [3 2]", "N = 4"}},
		{What: "rank above its mode", Edit: setRanks([]int{3, 2, 2, 3}), Want: []string{`"ranks"`, "Ranks[3] = 3", "d_4 = 2"}},
		{What: "ranks that do not fit G", Edit: setRanks([]int{3, 2, 1, 1}), Want: []string{"flora_G", "[3 4]", "(3×2)"}},
		{What: "negative scale", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["scale"] = -1 },
			Want: []string{`"scale"`, "-1"}},
		{What: "U_3 of another size", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.conv.flora_U3.weight"] = mat.NewDense(4, 2, nil)
			shapes["base_model.model.conv.flora_U3.weight"] = []int{4, 2}
		}, Want: []string{"flora_U3", "[4 2]", "(3×2)"}},
		{What: "no U_4", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.conv.flora_U4.weight"] = nil
		}, Want: []string{"conv", "flora_U4"}},
		{What: "a model whose conv has no kernel", Model: func() *adaptertest.Chain {
			m := convModel()
			m.Mods[0].Kernel = nil
			return m
		}, Want: []string{`"ranks"`, "FLoRA on conv", "N = 2"}},
	})
}
