package peft_test

import (
	"encoding/json"
	"fmt"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adalora"
	"github.com/gopeft/gopeft/peft/dora"
	"github.com/gopeft/gopeft/peft/lora"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

var peftFixtures = filepath.Join("testdata", "safetensors", "peft")

// peftExpected reads the input and outputs that make_peft_fixture.py
// computed with numpy.
func peftExpected(t *testing.T) (x *mat.Dense, outputs map[string]*mat.Dense) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(peftFixtures, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]json.RawMessage
	if err := json.Unmarshal(raw, &js); err != nil {
		t.Fatal(err)
	}
	vals := func(key string) []float64 {
		var hs []string
		if err := json.Unmarshal(js[key], &hs); err != nil {
			t.Fatal(key, err)
		}
		v := make([]float64, len(hs))
		for i, h := range hs {
			if v[i], err = strconv.ParseFloat(h, 64); err != nil {
				t.Fatal(err)
			}
		}
		return v
	}
	x = mat.NewDense(4, 5, vals("x"))
	outputs = map[string]*mat.Dense{}
	for _, k := range []string{"base", "lora_rs", "dora", "adalora"} {
		outputs[k] = mat.NewDense(4, 4, vals(k))
	}
	return x, outputs
}

// relDiff returns max |a − b| / max(1, max |b|).
func relDiff(a, b mat.Matrix) float64 {
	return peft.MaxAbsDiff(a, b) / math.Max(1, mat.Norm(b, math.Inf(1)))
}

// readConfig reads an adapter_config.json as a generic map.
func readConfig(t *testing.T, dir string) map[string]any {
	t.Helper()
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

// TestPEFTFixtures loads adapters written by hand in PEFT's layout
// (make_peft_fixture.py) onto the base model they were made for, checks the
// outputs against numpy's, saves them again and checks that gopeft writes
// the same names, shapes, values and settings.
func TestPEFTFixtures(t *testing.T) {
	x, want := peftExpected(t)
	xt := peft.NewConst(x)
	for _, c := range []struct {
		dir   string
		check func(t *testing.T, a peft.Adapter)
		keys  []string // config fields that must round-trip
	}{
		{"lora_rs", func(t *testing.T, a peft.Adapter) {
			l, ok := a.(*lora.LoRA)
			if !ok || !l.RSLoRA || l.Dropout != 0.1 {
				t.Errorf("got %T %+v, want an rsLoRA LoRA with dropout 0.1", a, a)
			}
		}, []string{"peft_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern", "target_modules"}},
		{"dora", func(t *testing.T, a peft.Adapter) {
			if _, ok := a.(*dora.DoRA); !ok {
				t.Errorf("got %T, want *DoRA", a)
			}
		}, []string{"peft_type", "r", "lora_alpha", "use_dora", "target_modules"}},
		{"adalora", func(t *testing.T, a peft.Adapter) {
			al, ok := a.(*adalora.Layer)
			if !ok || al.RInit != 4 {
				t.Fatalf("got %T %+v, want an AdaLoRA layer with r_init 4", a, a)
			}
		}, []string{"peft_type", "init_r", "lora_alpha", "rank_pattern", "target_modules"}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			m := peft.NewMLP([]int{5, 7, 4}, 9)
			if err := peft.LoadModel(filepath.Join(peftFixtures, "base_mlp.safetensors"), m); err != nil {
				t.Fatal(err)
			}
			if d := relDiff(m.Forward(xt).Value, want["base"]); d > 1e-13 {
				t.Fatalf("base output differs from numpy's by %g", d)
			}
			src := filepath.Join(peftFixtures, c.dir)
			if err := peft.LoadAdapter(src, m, "ft"); err != nil {
				t.Fatal(err)
			}
			for _, l := range m.Layers {
				if l.Active != "ft" {
					t.Errorf("%s: active adapter %q", l.Name, l.Active)
				}
				c.check(t, l.Adapters["ft"])
				if !l.W.Trainable == false || !l.Adapters["ft"].Params()[0].Trainable {
					t.Errorf("%s: base trainable %v", l.Name, l.W.Trainable)
				}
			}
			got := m.Forward(xt).Value
			if d := relDiff(got, want[c.dir]); d > 1e-12 {
				t.Errorf("output differs from numpy's by %g", d)
			}
			if relDiff(got, want["base"]) < 1e-3 {
				t.Error("the adapter changes nothing")
			}
			if c.dir == "adalora" {
				al := m.Layers[0].Adapters["ft"].(*adalora.Layer)
				if k := al.Kept(); !slices.Equal(k, []bool{true, false, true, false}) || al.Rank() != 2 {
					t.Errorf("fc1 kept %v rank %d", k, al.Rank())
				}
			}
			peft.DisableAdapters(m)
			if d := relDiff(m.Forward(xt).Value, want["base"]); d > 1e-13 {
				t.Errorf("disabled: differs from the base by %g", d)
			}
			peft.EnableAdapters(m)

			// Save again: the same files, up to key order and extra fields.
			out := filepath.Join(t.TempDir(), "saved")
			if err := peft.SaveAdapter(out, m, "ft"); err != nil {
				t.Fatal(err)
			}
			orig, _, err := peft.ReadSafetensors(filepath.Join(src, peft.AdapterWeightsFile))
			if err != nil {
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
				t.Errorf("saved names %v, PEFT's %v", sf.Names(), of.Names())
			}
			for _, n := range of.Names() {
				if !slices.Equal(sf.Shape(n), of.Shape(n)) {
					t.Errorf("%s: saved shape %v, PEFT's %v", n, sf.Shape(n), of.Shape(n))
				}
				v, err := sf.Tensor(n)
				if err != nil {
					t.Fatal(err)
				}
				if !mat.Equal(v, orig[n]) {
					t.Errorf("%s: saved values differ", n)
				}
			}
			if md := sf.Metadata(); md["format"] != "pt" {
				t.Errorf("metadata %v", md)
			}
			oc, sc := readConfig(t, src), readConfig(t, out)
			for _, k := range c.keys {
				a, b := fmt.Sprint(oc[k]), fmt.Sprint(sc[k])
				if k == "target_modules" {
					as, bs := oc[k].([]any), sc[k].([]any)
					slices.SortFunc(as, func(x, y any) int { return strings.Compare(x.(string), y.(string)) })
					a, b = fmt.Sprint(as), fmt.Sprint(bs)
				}
				if a != b {
					t.Errorf("config %s: saved %s, PEFT's %s", k, b, a)
				}
			}
			// And the saved adapter loads back to the same outputs.
			m2 := peft.NewMLP([]int{5, 7, 4}, 10)
			if err := peft.LoadModel(filepath.Join(peftFixtures, "base_mlp.safetensors"), m2); err != nil {
				t.Fatal(err)
			}
			if err := peft.LoadAdapter(out, m2, ""); err != nil {
				t.Fatal(err)
			}
			if d := peft.MaxAbsDiff(m2.Forward(xt).Value, got); d != 0 {
				t.Errorf("reloaded output differs by %g", d)
			}
		})
	}
}

// TestSaveLoadAdapterGPT: save → load into a fresh model → identical
// outputs, for each method, on the GPT's attention projections, with a
// second adapter on the model that must not be saved.
func TestSaveLoadAdapterGPT(t *testing.T) {
	targets := []string{"attn.q", "attn.v"}
	perturb := func(ps []*peft.Tensor) {
		for i, p := range ps {
			r, c := p.Dims()
			p.Value.Add(p.Value, peft.TestMatrix(r, c, uint64(100+i)))
		}
	}
	for _, method := range []string{"lora", "rslora", "dora", "adalora"} {
		t.Run(method, func(t *testing.T) {
			g := peft.NewGPT(peft.TestGPTConfig(1))
			if _, err := lora.Add(g, lora.Config{R: 1, Targets: []string{"attn.k"}, Name: "other", Seed: 5}); err != nil {
				t.Fatal(err)
			}
			var ctl *adalora.AdaLoRA
			var err error
			switch method {
			case "lora", "rslora":
				_, err = lora.Add(g, lora.Config{R: 3, Alpha: 5, RSLoRA: method == "rslora", Targets: targets, Name: "ft", Seed: 1})
			case "dora":
				_, err = dora.Add(g, dora.Config{R: 2, Alpha: 4, Targets: targets, Name: "ft", Seed: 1})
			case "adalora":
				ctl, err = adalora.Add(g, adalora.Config{InitR: 3, TargetR: 2, Targets: targets, Name: "ft", Seed: 1, TotalStep: 50, TInit: 5, TFinal: 10})
			}
			if err != nil {
				t.Fatal(err)
			}
			var ps []*peft.Tensor
			for _, l := range g.Modules() {
				if a, ok := l.Adapters["ft"]; ok {
					ps = append(ps, a.Params()...)
				}
			}
			perturb(ps)
			if ctl != nil {
				// A final allocation: drop a triplet of the first layer, λ = 0.
				ctl.Layers[0].SetKept([]bool{true, false, true}) // zeroes λ₁
			}
			want := g.Forward(peft.TestTokens, 2).Value
			dir := filepath.Join(t.TempDir(), "adapter")
			if err := peft.SaveAdapterWith(dir, g, "ft", peft.AdapterOptions{Controller: ctl, BaseModel: "gopeft/tiny-gpt"}); err != nil {
				t.Fatal(err)
			}
			cfg := readConfig(t, dir)
			if cfg["base_model_name_or_path"] != "gopeft/tiny-gpt" {
				t.Errorf("base_model_name_or_path %v", cfg["base_model_name_or_path"])
			}
			f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			names := f.Names()
			f.Close()
			for _, n := range names {
				if strings.Contains(n, "attn.k") || strings.Contains(n, "ft") {
					t.Errorf("saved %q", n)
				}
			}
			switch method {
			case "adalora":
				if cfg["peft_type"] != "ADALORA" || cfg["total_step"] != 50.0 || cfg["tinit"] != 5.0 {
					t.Errorf("config %v", cfg)
				}
				rp := fmt.Sprint(cfg["rank_pattern"])
				if rp != "map[blocks.0.attn.q.lora_E:[true false true] blocks.0.attn.v.lora_E:[true true true] blocks.1.attn.q.lora_E:[true true true] blocks.1.attn.v.lora_E:[true true true]]" {
					t.Errorf("rank_pattern %s", rp)
				}
				if len(names) != 12 {
					t.Errorf("%d tensors, want 12: %v", len(names), names)
				}
			case "dora":
				if cfg["use_dora"] != true || len(names) != 12 {
					t.Errorf("use_dora %v, %d tensors", cfg["use_dora"], len(names))
				}
			default:
				if cfg["use_rslora"] != (method == "rslora") || cfg["r"] != 3.0 || cfg["lora_alpha"] != 5.0 || len(names) != 8 {
					t.Errorf("config %v, %d tensors", cfg, len(names))
				}
			}

			fresh := peft.NewGPT(peft.TestGPTConfig(1))
			if err := peft.LoadAdapter(dir, fresh, "ft"); err != nil {
				t.Fatal(err)
			}
			if d := peft.MaxAbsDiff(fresh.Forward(peft.TestTokens, 2).Value, want); d > 1e-14 {
				t.Errorf("reloaded logits differ by %g", d)
			}
			if n, _, _ := peft.TrainableParams(fresh); n == 0 {
				t.Error("no trainable parameter after loading")
			}
			// Merge then forward equals the adapter's forward.
			if err := peft.MergeAdapters(fresh); err != nil {
				t.Fatal(err)
			}
			if d := peft.MaxAbsDiff(fresh.Forward(peft.TestTokens, 2).Value, want); d > 1e-12 {
				t.Errorf("merged logits differ by %g", d)
			}
		})
	}
}

// TestSaveAdaLoRANoTruncation: a dropped triplet whose λ has grown back is
// not dropped from the file (that would change the outputs).
func TestSaveAdaLoRANoTruncation(t *testing.T) {
	m := peft.NewMLP([]int{5, 7, 4}, 1)
	ctl, err := adalora.Add(m, adalora.Config{InitR: 3, TargetR: 2, Targets: []string{"fc1", "fc2"}, TotalStep: 10})
	if err != nil {
		t.Fatal(err)
	}
	al := ctl.Layers[0]
	al.SetKept([]bool{true, true, false}) // dropped at the last allocation,
	al.E.Value.Set(0, 0, 0.5)
	al.E.Value.Set(2, 0, 0.25) // nonzero since
	x := peft.NewConst(peft.TestMatrix(4, 5, 2))
	want := m.Forward(x).Value
	dir := t.TempDir()
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	if rp := readConfig(t, dir)["rank_pattern"]; rp != nil {
		t.Errorf("rank_pattern %v, want null", rp)
	}
	m2 := peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(dir, m2, ""); err != nil {
		t.Fatal(err)
	}
	if d := peft.MaxAbsDiff(m2.Forward(x).Value, want); d != 0 {
		t.Errorf("outputs differ by %g", d)
	}
}

// copyDir copies the adapter directory src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range []string{peft.AdapterConfigFile, peft.AdapterWeightsFile} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestLoadAdapterErrors(t *testing.T) {
	loraDir := filepath.Join(peftFixtures, "lora_rs")
	editConfig := func(edit func(c map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			c := readConfig(t, dir)
			edit(c)
			b, _ := json.Marshal(c)
			os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), b, 0o644)
		}
	}
	rewrite := func(edit func(ts map[string]*mat.Dense, shapes map[string][]int)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, peft.AdapterWeightsFile)
			ts, _, err := peft.ReadSafetensors(p)
			if err != nil {
				t.Fatal(err)
			}
			shapes := map[string][]int{}
			edit(ts, shapes)
			if err := peft.WriteSafetensorsShaped(p, ts, shapes, "F32", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name  string
		src   string
		spoil func(t *testing.T, dir string)
		frags []string
	}{
		{"no config", loraDir, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, peft.AdapterConfigFile)) }, []string{peft.AdapterConfigFile, "no such file"}},
		{"bad JSON", loraDir, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), []byte(`{"peft_type": "LORA",`), 0o644)
		}, []string{"not a JSON object"}},
		{"unsupported type", loraDir, editConfig(func(c map[string]any) { c["peft_type"] = "IA3" }), []string{`"peft_type"`, `"IA3"`}},
		{"fractional r", loraDir, editConfig(func(c map[string]any) { c["r"] = 2.5 }), []string{`"r"`, "2.5"}},
		{"r a string", loraDir, editConfig(func(c map[string]any) { c["r"] = "two" }), []string{`"r"`, "not a number"}},
		{"dropout out of range", loraDir, editConfig(func(c map[string]any) { c["lora_dropout"] = 1.5 }), []string{`"lora_dropout"`, "[0, 1)"}},
		{"bias", loraDir, editConfig(func(c map[string]any) { c["bias"] = "all" }), []string{`"bias"`}},
		{"bad rank_pattern", loraDir, editConfig(func(c map[string]any) { c["rank_pattern"] = map[string]any{"fc2": "x"} }), []string{`"rank_pattern"`, `"fc2"`}},
		{"rank disagrees with config", loraDir, editConfig(func(c map[string]any) { c["rank_pattern"] = map[string]any{} }), []string{"lora_A.weight", "rank 3", "rank 2"}},
		{"no weights", loraDir, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, peft.AdapterWeightsFile)) }, []string{peft.AdapterWeightsFile}},
		{"pickle only", loraDir, func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, peft.AdapterWeightsFile), filepath.Join(dir, "adapter_model.bin"))
		}, []string{"adapter_model.bin"}},
		{"truncated weights", loraDir, func(t *testing.T, dir string) {
			p := filepath.Join(dir, peft.AdapterWeightsFile)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-3)
		}, []string{peft.AdapterWeightsFile, "beyond"}},
		{"unknown module", loraDir, rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.fc9.lora_A.weight"] = ts["base_model.model.fc1.lora_A.weight"]
			ts["base_model.model.fc9.lora_B.weight"] = ts["base_model.model.fc1.lora_B.weight"]
		}), []string{`"fc9"`, `"fc1", "fc2"`}},
		{"no prefix", loraDir, rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			ts["fc1.lora_A.weight"] = ts["base_model.model.fc1.lora_A.weight"]
		}), []string{`"fc1.lora_A.weight"`, "base_model.model."}},
		{"unknown tensor", loraDir, rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.fc1.lora_embedding_A"] = ts["base_model.model.fc1.lora_A.weight"]
		}), []string{`"base_model.model.fc1.lora_embedding_A"`}},
		{"missing lora_B", loraDir, rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.fc2.lora_B.weight")
		}), []string{"fc2", "lora_B.weight"}},
		{"wrong in-width", loraDir, rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.fc1.lora_A.weight"] = peft.TestMatrix(2, 6, 1)
		}), []string{`"base_model.model.fc1.lora_A.weight"`, "[2 6]", "(7×5)", "(r×5)"}},
		{"wrong out-width", loraDir, rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.fc2.lora_B.weight"] = peft.TestMatrix(5, 3, 1)
		}), []string{`"base_model.model.fc2.lora_B.weight"`, "[5 3]", "(4×3)"}},
		{"DoRA magnitude 2-D", filepath.Join(peftFixtures, "dora"), rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.fc1.lora_magnitude_vector"] = peft.TestMatrix(7, 1, 1)
		}), []string{"lora_magnitude_vector", "[7 1]", "[7]"}},
		{"DoRA magnitude without use_dora", filepath.Join(peftFixtures, "dora"), editConfig(func(c map[string]any) { c["use_dora"] = false }), []string{"lora_magnitude_vector", "use_dora"}},
		{"AdaLoRA kept count disagrees", filepath.Join(peftFixtures, "adalora"), editConfig(func(c map[string]any) {
			c["rank_pattern"].(map[string]any)["fc1.lora_E"] = []bool{true, true, true, false}
		}), []string{"lora_A", "3 kept triplets", "[2 5]"}},
		{"AdaLoRA rank_pattern too short", filepath.Join(peftFixtures, "adalora"), editConfig(func(c map[string]any) {
			c["rank_pattern"].(map[string]any)["fc1.lora_E"] = []bool{true, true}
		}), []string{`"rank_pattern"`, "init_r = 4"}},
		{"AdaLoRA missing lora_E", filepath.Join(peftFixtures, "adalora"), rewrite(func(ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.fc2.lora_E")
		}), []string{"fc2", "lora_E"}},
		{"AdaLoRA init_r too big", filepath.Join(peftFixtures, "adalora"), editConfig(func(c map[string]any) { c["init_r"] = 9; c["rank_pattern"] = nil }), []string{"init_r = 9", "[1, 5]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, c.src)
			c.spoil(t, dir)
			m := peft.NewMLP([]int{5, 7, 4}, 1)
			err := peft.LoadAdapter(dir, m, "")
			if err == nil {
				t.Fatal("no error")
			}
			for _, f := range c.frags {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q lacks %q", err, f)
				}
			}
			for _, l := range m.Layers {
				if len(l.Adapters) != 0 || !l.W.Trainable {
					t.Errorf("a failed load changed %s", l.Name)
				}
			}
		})
	}
	// Loading twice under one name is an error; under another it is fine.
	m := peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(loraDir, m, "a"); err != nil {
		t.Fatal(err)
	}
	if err := peft.LoadAdapter(loraDir, m, "a"); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("second load under one name: %v", err)
	}
	if err := peft.LoadAdapter(loraDir, m, "b"); err != nil {
		t.Errorf("second adapter: %v", err)
	}
	if err := peft.SaveAdapter(t.TempDir(), m, "c"); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("saving a missing adapter: %v", err)
	}
}

// TestTorchLoadsGoAdapters has PyTorch load a base model and adapters that
// gopeft saved, into modules with PEFT's parameter layout, strictly by name
// and shape (testdata/safetensors/torch_load_go.py), and compares torch's
// outputs with gopeft's. Skipped in -short mode and without python3-torch.
func TestTorchLoadsGoAdapters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PyTorch")
	}
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		t.Skip("no PyTorch:", err)
	}
	dir := t.TempDir()
	sizes := []int{5, 7, 4}
	x := peft.TestMatrix(3, 5, 11)
	hexes := func(m *mat.Dense) []string {
		var s []string
		for _, v := range m.RawMatrix().Data {
			s = append(s, strconv.FormatFloat(v, 'x', -1, 64))
		}
		return s
	}
	if err := peft.SaveModel(filepath.Join(dir, "base.safetensors"), peft.NewMLP(sizes, 1)); err != nil {
		t.Fatal(err)
	}
	outputs := map[string][]string{}
	for _, method := range []string{"lora", "rslora_pattern", "dora", "adalora", "lora_f32"} {
		m := peft.NewMLP(sizes, 1)
		var err error
		switch method {
		case "lora", "lora_f32":
			_, err = lora.Add(m, lora.Config{R: 2, Alpha: 3, Targets: []string{"fc1", "fc2"}, Seed: 2})
		case "rslora_pattern":
			if _, err = lora.Add(m, lora.Config{R: 2, Alpha: 3, RSLoRA: true, Targets: []string{"fc1"}, Seed: 2}); err == nil {
				_, err = peft.AddAdapter(m, "default", []string{"fc2"}, func(l *peft.Linear) (peft.Adapter, error) {
					d, k := l.W.Dims()
					return lora.New(l.Name, "default", d, k, lora.Config{R: 3, Alpha: 5, RSLoRA: true}, rand.New(rand.NewSource(3)))
				})
			}
		case "dora":
			_, err = dora.Add(m, dora.Config{R: 2, Alpha: 2, Targets: []string{"fc1", "fc2"}, Seed: 2})
		case "adalora":
			var ctl *adalora.AdaLoRA
			if ctl, err = adalora.Add(m, adalora.Config{InitR: 3, TargetR: 2, Alpha: 6, Targets: []string{"fc1", "fc2"}, TotalStep: 10, Seed: 2}); err == nil {
				ctl.Layers[1].SetKept([]bool{false, true, true}) // dropped at the final allocation
			}
		}
		if err != nil {
			t.Fatal(method, err)
		}
		for i, p := range peft.AdapterParams(m.Modules()) {
			r, c := p.Dims()
			p.Value.Add(p.Value, peft.TestMatrix(r, c, uint64(50+i)))
		}
		if method == "adalora" {
			a := m.Layers[1].Adapters["default"].(*adalora.Layer)
			a.E.Value.Set(0, 0, 0) // λ of the dropped triplet
		}
		opt := peft.AdapterOptions{}
		if method == "lora_f32" {
			// F32 values: gopeft's output is recomputed from the rounded ones.
			opt.DType = "F32"
			for _, p := range peft.AdapterParams(m.Modules()) {
				p.Value.Apply(func(_, _ int, v float64) float64 { return float64(float32(v)) }, p.Value)
			}
		}
		if err := peft.SaveAdapterWith(filepath.Join(dir, method), m, "default", opt); err != nil {
			t.Fatal(err)
		}
		outputs[method] = hexes(m.Forward(peft.NewConst(x)).Value)
	}
	io, _ := json.Marshal(map[string]any{"sizes": sizes, "x": hexes(x), "x_shape": []int{3, 5}, "outputs": outputs})
	if err := os.WriteFile(filepath.Join(dir, "io.json"), io, 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs(filepath.Join("testdata", "safetensors", "torch_load_go.py"))
	out, err := exec.Command(python, script, dir).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok 5") {
		t.Errorf("torch: %v\n%s", err, out)
	}
}

func TestLoadAdapterBytes(t *testing.T) {
	src := filepath.Join(peftFixtures, "dora")
	cfg, _ := os.ReadFile(filepath.Join(src, peft.AdapterConfigFile))
	w, _ := os.ReadFile(filepath.Join(src, peft.AdapterWeightsFile))
	m1, m2 := peft.NewMLP([]int{5, 7, 4}, 1), peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(src, m1, ""); err != nil {
		t.Fatal(err)
	}
	if err := peft.LoadAdapterBytes(cfg, w, m2, ""); err != nil {
		t.Fatal(err)
	}
	x := peft.NewConst(peft.TestMatrix(3, 5, 1))
	if d := peft.MaxAbsDiff(m1.Forward(x).Value, m2.Forward(x).Value); d != 0 {
		t.Errorf("outputs differ by %g", d)
	}
	if err := peft.LoadAdapterBytes(cfg[:20], w, peft.NewMLP([]int{5, 7, 4}, 1), ""); err == nil || !strings.Contains(err.Error(), peft.AdapterConfigFile) {
		t.Errorf("cut config: %v", err)
	}
}

// FuzzLoadAdapter: no config and tensor file, however broken, makes
// LoadAdapter panic, and a failed load attaches nothing.
func FuzzLoadAdapter(f *testing.F) {
	for _, d := range []string{"lora_rs", "dora", "adalora"} {
		cfg, err1 := os.ReadFile(filepath.Join(peftFixtures, d, peft.AdapterConfigFile))
		w, err2 := os.ReadFile(filepath.Join(peftFixtures, d, peft.AdapterWeightsFile))
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		f.Add(cfg, w)
	}
	f.Fuzz(func(t *testing.T, cfg, w []byte) {
		m := peft.NewMLP([]int{5, 7, 4}, 1)
		err := peft.LoadAdapterBytes(cfg, w, m, "")
		for _, l := range m.Layers {
			if err != nil && len(l.Adapters) != 0 {
				t.Fatalf("failed (%v) but attached to %s", err, l.Name)
			}
		}
		if err == nil {
			m.Forward(peft.NewConst(mat.NewDense(2, 5, nil))) // must not panic
		}
	})
}
