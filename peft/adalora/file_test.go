package adalora_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adalora"
	"gonum.org/v1/gonum/mat"
)

// fileModel returns a 5→7→4 MLP with AdaLoRA (r_init 3) on fc1 and fc2,
// moved from its init by deterministic amounts, and its controller.
func fileModel(t *testing.T) (*peft.MLP, *adalora.AdaLoRA) {
	t.Helper()
	m := peft.NewMLP([]int{5, 7, 4}, 1)
	a, err := adalora.Add(m, adalora.Config{InitR: 3, TargetR: 2, Alpha: 6, Dropout: 0.05, Targets: []string{"fc1", "fc2"},
		TotalStep: 50, TInit: 5, TFinal: 10, DeltaT: 2, Beta1: .8, Beta2: .9, OrthRegWeight: .1, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	for _, p := range a.Params() {
		p.Value.Apply(func(_, _ int, v float64) float64 { k++; return v + 0.3*math.Sin(float64(k)) }, p.Value)
	}
	return m, a
}

// The configs that the pre-refactor SaveAdapterWith (commit d3da512) wrote
// for fileModel, without a controller and, after dropping triplet 1 of fc2,
// with it: the files are byte-compatible with those (and so with PEFT's
// AdaLoraConfig) field for field.
const (
	goldenNoController = `{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": null,
  "beta1": 0.85,
  "beta2": 0.85,
  "bias": "none",
  "deltaT": 1,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "init_r": 3,
  "layers_pattern": null,
  "layers_to_transform": null,
  "lora_alpha": 6,
  "lora_dropout": 0.05,
  "modules_to_save": null,
  "orth_reg_weight": 0.5,
  "peft_type": "ADALORA",
  "rank_pattern": null,
  "revision": null,
  "target_modules": [
    "fc1",
    "fc2"
  ],
  "target_r": 3,
  "task_type": null,
  "tfinal": 0,
  "tinit": 0,
  "total_step": 1,
  "use_dora": false,
  "use_rslora": false
}
`
	goldenTruncated = `{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": null,
  "beta1": 0.8,
  "beta2": 0.9,
  "bias": "none",
  "deltaT": 2,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "init_r": 3,
  "layers_pattern": null,
  "layers_to_transform": null,
  "lora_alpha": 6,
  "lora_dropout": 0.05,
  "modules_to_save": null,
  "orth_reg_weight": 0.1,
  "peft_type": "ADALORA",
  "rank_pattern": {
    "fc1.lora_E": [
      true,
      true,
      true
    ],
    "fc2.lora_E": [
      true,
      false,
      true
    ]
  },
  "revision": null,
  "target_modules": [
    "fc1",
    "fc2"
  ],
  "target_r": 2,
  "task_type": null,
  "tfinal": 10,
  "tinit": 5,
  "total_step": 50,
  "use_dora": false,
  "use_rslora": false
}
`
)

// TestSaveFormat checks the saved config against the goldens, and that the
// truncated file holds only the kept triplets (in order) under PEFT's names
// and loads back to the same outputs and masks.
func TestSaveFormat(t *testing.T) {
	m, a := fileModel(t)
	dir := t.TempDir()
	if err := peft.SaveAdapter(filepath.Join(dir, "plain"), m, ""); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "plain", peft.AdapterConfigFile)); got != goldenNoController {
		t.Errorf("config without a controller:\n%s\nwant\n%s", got, goldenNoController)
	}
	fc2 := a.Layers[1]
	fc2.SetKept([]bool{true, false, true})
	if fc2.E.Value.At(1, 0) != 0 || fc2.Rank() != 2 {
		t.Fatalf("SetKept: λ₁ = %g, rank %d", fc2.E.Value.At(1, 0), fc2.Rank())
	}
	x := peft.NewConst(mat.NewDense(3, 5, []float64{1, -2, 3, 0.5, 0, 2, 1, -1, 0, 3, -0.5, 0.25, 1, 2, -3}))
	want := mat.DenseCopyOf(m.Forward(x).Value)
	out := filepath.Join(dir, "truncated")
	if err := peft.SaveAdapterWith(out, m, "", peft.AdapterOptions{Controller: a}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(out, peft.AdapterConfigFile)); got != goldenTruncated {
		t.Errorf("config after an allocation, with the controller:\n%s\nwant\n%s", got, goldenTruncated)
	}
	f, err := peft.OpenSafetensors(filepath.Join(out, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantShapes := map[string][]int{
		"base_model.model.fc1.lora_A": {3, 5}, "base_model.model.fc1.lora_B": {7, 3}, "base_model.model.fc1.lora_E": {3, 1},
		"base_model.model.fc2.lora_A": {2, 7}, "base_model.model.fc2.lora_B": {4, 2}, "base_model.model.fc2.lora_E": {2, 1},
	}
	if len(f.Names()) != len(wantShapes) {
		t.Errorf("tensors %v", f.Names())
	}
	for n, s := range wantShapes {
		if !slices.Equal(f.Shape(n), s) {
			t.Errorf("%s: shape %v, want %v", n, f.Shape(n), s)
		}
	}
	q, err := f.Tensor("base_model.model.fc2.lora_A")
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range []int{0, 2} {
		if !slices.Equal(q.RawRowView(i), fc2.Q.Value.RawRowView(j)) {
			t.Errorf("fc2.lora_A row %d is not Q's row %d", i, j)
		}
	}
	if md := f.Metadata(); md["format"] != "pt" {
		t.Errorf("metadata %v", md)
	}
	fresh := peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(out, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, want) {
		t.Error("the loaded adapter's output differs")
	}
	l := fresh.Layers[1].ActiveAdapter().(*adalora.Layer)
	if !slices.Equal(l.Kept(), []bool{true, false, true}) || l.Rank() != 2 || l.RInit != 3 || l.Alpha != 6 || l.Dropout != 0.05 {
		t.Errorf("loaded fc2: kept %v, rank %d, r_init %d, α %g, dropout %g", l.Kept(), l.Rank(), l.RInit, l.Alpha, l.Dropout)
	}
	if l.Q.Value.At(1, 3) != 0 || l.P.Value.At(2, 1) != 0 {
		t.Error("the dropped triplet is not put back as zeros")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSaveController: a Controller that is not an *AdaLoRA, or one that
// does not control the saved layers, is an error naming what it is.
func TestSaveController(t *testing.T) {
	m, _ := fileModel(t)
	_, other := fileModel(t)
	for _, c := range []struct {
		ctl  any
		want []string
	}{
		{"schedule", []string{"Controller", "string", "*adalora.AdaLoRA"}},
		{other, []string{"fc1", "not one of", "Controller"}},
	} {
		err := peft.SaveAdapterWith(t.TempDir(), m, "", peft.AdapterOptions{Controller: c.ctl})
		if err == nil {
			t.Errorf("Controller %T: no error", c.ctl)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Controller %T: error %q does not name %q", c.ctl, err, w)
			}
		}
	}
	var nilCtl *adalora.AdaLoRA
	if err := peft.SaveAdapterWith(t.TempDir(), m, "", peft.AdapterOptions{Controller: nilCtl}); err != nil {
		t.Errorf("a nil *AdaLoRA (PEFT's defaults): %v", err)
	}
}

// peftFixture is an adapter in PEFT 0.17's AdaLoRA layout, with every field
// its AdaLoraConfig writes and rank_pattern after a final allocation
// (peft/testdata/safetensors/make_peft_fixture.py), for a 5→7→4 MLP.
var peftFixture = filepath.Join("..", "testdata", "safetensors", "peft", "adalora")

// TestLoadPEFTFixture loads PEFT's file: every field is read, the kept
// triplets are put back in place among r_init = 4.
func TestLoadPEFTFixture(t *testing.T) {
	m := peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(peftFixture, m, ""); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]bool{{true, false, true, false}, {true, true, true, false}} {
		l := m.Layers[i].ActiveAdapter().(*adalora.Layer)
		if !slices.Equal(l.Kept(), want) || l.RInit != 4 || l.Alpha != 8 {
			t.Errorf("%s: kept %v, r_init %d, α %g", l.Module, l.Kept(), l.RInit, l.Alpha)
		}
		for j, k := range want {
			if !k && (l.E.Value.At(j, 0) != 0 || mat.Norm(l.Q.Value.Slice(j, j+1, 0, l.Q.Value.RawMatrix().Cols), 2) != 0) {
				t.Errorf("%s: dropped triplet %d is not zero", l.Module, j)
			}
		}
	}
	if r := peft.Ranks(m); r["fc1"] != 2 || r["fc2"] != 3 {
		t.Errorf("ranks %v", r)
	}
}

// copyAdapter copies the adapter directory src to a new one and applies
// edit to its config (nil: none).
func copyAdapter(t *testing.T, src string, edit func(c map[string]any)) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range []string{peft.AdapterConfigFile, peft.AdapterWeightsFile} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == peft.AdapterConfigFile && edit != nil {
			var c map[string]any
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			edit(c)
			if b, err = json.Marshal(c); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestLoadSettings: the options PEFT's AdaLoRA or gopeft lacks, and values
// PEFT would refuse, are errors naming the field; a field PEFT ignores (r)
// or a schedule PEFT before 0.11 left null is not.
func TestLoadSettings(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(c map[string]any)
		want []string // nil: loads
	}{
		{"rsLoRA", func(c map[string]any) { c["use_rslora"] = true }, []string{`"use_rslora"`, "rsLoRA"}},
		{"DoRA", func(c map[string]any) { c["use_dora"] = true }, []string{`"use_dora"`, "DoRA"}},
		{"LoftQ", func(c map[string]any) { c["loftq_config"] = map[string]any{"loftq_bits": 4} }, []string{`"loftq_config"`, "LoftQ"}},
		{"bias", func(c map[string]any) { c["bias"] = "all" }, []string{`"bias"`, `"all"`}},
		{"layers_to_transform", func(c map[string]any) { c["layers_to_transform"] = []int{0} }, []string{`"layers_to_transform"`}},
		{"beta1 zero", func(c map[string]any) { c["beta1"] = 0 }, []string{`"beta1"`, "(0, 1)"}},
		{"beta2 one", func(c map[string]any) { c["beta2"] = 1 }, []string{`"beta2"`, "Beta2 = 1"}},
		{"orth_reg_weight zero", func(c map[string]any) { c["orth_reg_weight"] = 0 }, []string{`"orth_reg_weight"`, "γ > 0"}},
		{"no budgeting phase", func(c map[string]any) { c["tinit"] = 8 }, []string{`"tinit"`, "TInit = 8", "TotalStep = 10"}},
		{"target_r above init_r", func(c map[string]any) { c["target_r"] = 5 }, []string{`"target_r"`, "TargetR = 5"}},
		{"fractional deltaT", func(c map[string]any) { c["deltaT"] = 1.5 }, []string{`"deltaT"`, "1.5"}},
		{"init_r a string", func(c map[string]any) { c["init_r"] = "four" }, []string{`"init_r"`, "not a number"}},
		{"negative alpha_pattern", func(c map[string]any) { c["alpha_pattern"] = map[string]any{"fc1": -1} }, []string{`"alpha_pattern"`, `"fc1"`, "-1"}},
		{"rank_pattern of LoRA", func(c map[string]any) { c["rank_pattern"] = map[string]any{"fc1.lora_E": 2} }, []string{`"rank_pattern"`, `"fc1.lora_E"`, "init_r = 4"}},
		{"rank_pattern without the module", func(c map[string]any) { delete(c["rank_pattern"].(map[string]any), "fc2.lora_E") }, []string{`"rank_pattern"`, `"fc2.lora_E"`}},
		{"unknown field", func(c map[string]any) { c["adalora_magic"] = 3 }, []string{`"adalora_magic"`}},
		{"r is ignored", func(c map[string]any) { c["r"] = 16 }, nil},
		{"total_step null", func(c map[string]any) { c["total_step"] = nil }, nil},
		{"alpha_pattern is ignored", func(c map[string]any) { c["alpha_pattern"] = map[string]any{"fc1": 2} }, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyAdapter(t, peftFixture, c.edit)
			m := peft.NewMLP([]int{5, 7, 4}, 1)
			err := peft.LoadAdapter(dir, m, "")
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if l := m.Layers[0].ActiveAdapter().(*adalora.Layer); l.Alpha != 8 {
					t.Errorf("α = %g, want lora_alpha = 8", l.Alpha)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, l := range m.Layers {
				if len(l.Adapters) != 0 {
					t.Errorf("a failed load attached an adapter to %s", l.Name)
				}
			}
		})
	}
}

// TestLoadRanknum: PEFT's ranknum (shape [1], r_init) is accepted and
// changes nothing; one of another shape is an error.
func TestLoadRanknum(t *testing.T) {
	x := peft.NewConst(mat.NewDense(2, 5, []float64{1, 2, -1, 0.5, 3, -2, 0, 1, 1, -0.5}))
	ref := peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(peftFixture, ref, ""); err != nil {
		t.Fatal(err)
	}
	want := ref.Forward(x).Value
	for _, c := range []struct {
		shape []int
		ok    bool
	}{{[]int{1}, true}, {[]int{1, 1}, true}, {[]int{2}, false}} {
		dir := copyAdapter(t, peftFixture, nil)
		p := filepath.Join(dir, peft.AdapterWeightsFile)
		ts, _, err := peft.ReadSafetensors(p)
		if err != nil {
			t.Fatal(err)
		}
		shapes := map[string][]int{}
		for _, mod := range []string{"fc1", "fc2"} {
			n := c.shape[0]
			ts["base_model.model."+mod+".ranknum"] = mat.NewDense(1, n, slices.Repeat([]float64{4}, n))
			shapes["base_model.model."+mod+".ranknum"] = c.shape
		}
		if err := peft.WriteSafetensorsShaped(p, ts, shapes, "F64", map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		m := peft.NewMLP([]int{5, 7, 4}, 1)
		err = peft.LoadAdapter(dir, m, "")
		switch {
		case c.ok && err != nil:
			t.Errorf("ranknum %v: %v", c.shape, err)
		case c.ok && !mat.Equal(m.Forward(x).Value, want):
			t.Errorf("ranknum %v changed the output", c.shape)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "ranknum")):
			t.Errorf("ranknum %v: %v, want an error naming it", c.shape, err)
		}
	}
}

// TestSetKeptPanics: a mask of the wrong length is a programmer error.
func TestSetKeptPanics(t *testing.T) {
	_, a := fileModel(t)
	err := peft.Maybe(func() { a.Layers[0].SetKept([]bool{true}) })
	if err == nil || !strings.Contains(err.Error(), "fc1") || !strings.Contains(err.Error(), "r_init = 3") {
		t.Errorf("SetKept of 1 for r_init 3: %v", err)
	}
}
