package peft_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adalora"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/vera"
)

// withConfig copies the adapter src to a new directory, applies edit to its
// config (a nil value deletes the field) and returns the directory.
func withConfig(t *testing.T, src string, edit map[string]any) string {
	t.Helper()
	dir := copyDir(t, src)
	c := readConfig(t, dir)
	for k, v := range edit {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadInto loads dir into a fresh MLP 5→7→4 and checks that a failed load
// attaches nothing.
func loadInto(t *testing.T, dir string, sizes ...int) error {
	t.Helper()
	if len(sizes) == 0 {
		sizes = []int{5, 7, 4}
	}
	m := peft.NewMLP(sizes, 1)
	err := peft.LoadAdapter(dir, m, "")
	if err != nil {
		for _, l := range m.Layers {
			if len(l.Adapters) != 0 {
				t.Errorf("a failed load attached an adapter to %s", l.Name)
			}
		}
	}
	return err
}

// TestLoadAdapterConfigFields: every LoraConfig field gopeft does not honour
// is an error naming the field and its value when it asks for something,
// and the fields it may ignore (init-only, runtime, the QALoRA group size
// PEFT ≥ 0.18 writes) load. See lora.RefuseUnsupported's table.
func TestLoadAdapterConfigFields(t *testing.T) {
	src := filepath.Join(peftFixtures, "lora_rs")
	for _, c := range []struct {
		field string
		value any
		frags []string // in the error; none: the load must succeed
	}{
		{"layers_to_transform", []int{0}, []string{`"layers_to_transform"`, "[0]"}},
		{"layers_to_transform", 1, []string{`"layers_to_transform"`, "1"}},
		{"layers_pattern", "layers", []string{`"layers_pattern"`, `"layers"`}},
		{"layers_pattern", []string{"h", "blocks"}, []string{`"layers_pattern"`, `["h","blocks"]`}},
		{"exclude_modules", []string{"fc2"}, []string{`"exclude_modules"`, `["fc2"]`}},
		{"modules_to_save", []string{"fc2"}, []string{`"modules_to_save"`, `["fc2"]`}},
		{"bias", "lora_only", []string{`"bias"`, `"lora_only"`}},
		{"bias", "all", []string{`"bias"`, `"all"`}},
		{"fan_in_fan_out", true, []string{`"fan_in_fan_out"`, "true"}},
		{"lora_bias", true, []string{`"lora_bias"`, "true"}},
		{"layer_replication", [][]int{{0, 1}}, []string{`"layer_replication"`, "[[0,1]]"}},
		{"megatron_config", map[string]any{"tp": 2}, []string{`"megatron_config"`}},
		{"trainable_token_indices", []int{3}, []string{`"trainable_token_indices"`, "[3]"}},
		{"target_parameters", []string{"w"}, []string{`"target_parameters"`}},
		{"use_qalora", true, []string{`"use_qalora"`, "true"}},
		{"alora_invocation_tokens", []int{5, 6}, []string{`"alora_invocation_tokens"`, "[5,6]"}},
		{"arrow_config", map[string]any{"top_k": 2}, []string{`"arrow_config"`}},
		{"ensure_weight_tying", true, []string{`"ensure_weight_tying"`, "true"}},
		{"use_bdlora", map[string]any{"blocks": 2}, []string{`"use_bdlora"`}},
		{"init_lora_weights", "pissa", []string{`"init_lora_weights"`, `"pissa"`, "base weights"}},
		{"init_lora_weights", "pissa_niter_4", []string{`"init_lora_weights"`, `"pissa_niter_4"`}},
		{"init_lora_weights", "olora", []string{`"init_lora_weights"`, `"olora"`}},
		{"init_lora_weights", "corda", []string{`"init_lora_weights"`, `"corda"`}},
		{"init_lora_weights", "loftq", []string{`"init_lora_weights"`, `"loftq"`}},
		{"some_future_option", "on", []string{`"some_future_option"`, `"on"`}},
		{"qalora_group_size", 2.5, []string{`"qalora_group_size"`, "2.5"}},
		// Accepted: a loaded adapter's weights are its init; runtime only.
		{"init_lora_weights", true, nil},
		{"init_lora_weights", false, nil},
		{"init_lora_weights", "gaussian", nil},
		{"init_lora_weights", "orthogonal", nil},
		{"init_lora_weights", "eva", nil},
		{"qalora_group_size", 16, nil},
		{"qalora_group_size", 64, nil},
		{"loftq_config", map[string]any{"loftq_bits": 4}, nil},
		{"eva_config", map[string]any{"rho": 2}, nil},
		{"runtime_config", map[string]any{"ephemeral_gpu_offload": true}, nil},
		{"bias", "none", nil},
		{"layers_to_transform", nil, nil},
		{"exclude_modules", []string{}, nil},
		{"ensure_weight_tying", false, nil},
	} {
		name := c.field + "=" + strings.ReplaceAll(string(must(json.Marshal(c.value))), "/", "_")
		t.Run(name, func(t *testing.T) {
			var dir string
			if c.value == nil {
				dir = withConfig(t, src, map[string]any{c.field: nil})
			} else {
				dir = withConfig(t, src, map[string]any{c.field: c.value})
			}
			err := loadInto(t, dir)
			if c.frags == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded: the field was ignored")
			}
			for _, f := range append(c.frags, peft.AdapterConfigFile) {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q lacks %q", err, f)
				}
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestLoadAdapterPEFT019Config: a config with every field PEFT 0.19 writes
// for a plain LoRA (qalora_group_size 16, lora_ga_config, use_bdlora, …)
// loads.
func TestLoadAdapterPEFT019Config(t *testing.T) {
	dir := withConfig(t, filepath.Join(peftFixtures, "lora_rs"), map[string]any{
		"corda_config": nil, "ensure_weight_tying": false, "eva_config": nil, "lora_ga_config": nil,
		"peft_version": "0.19.1", "qalora_group_size": 16, "use_bdlora": nil, "use_qalora": false,
		"alora_invocation_tokens": nil, "arrow_config": nil, "task_type": "CAUSAL_LM",
		"runtime_config": map[string]any{"ephemeral_gpu_offload": false},
	})
	if err := loadInto(t, dir); err != nil {
		t.Fatal(err)
	}
	// AdaLoRA's config is a LoraConfig too.
	dir = withConfig(t, filepath.Join(peftFixtures, "adalora"), map[string]any{"qalora_group_size": 16, "use_qalora": false})
	if err := loadInto(t, dir); err != nil {
		t.Fatal(err)
	}
	dir = withConfig(t, filepath.Join(peftFixtures, "adalora"), map[string]any{"init_lora_weights": "olora"})
	if err := loadInto(t, dir); err == nil || !strings.Contains(err.Error(), `"init_lora_weights"`) {
		t.Errorf("AdaLoRA with an OLoRA init: %v", err)
	}
}

// TestLoadAdapterTargetModules: target_modules is honoured as PEFT reads
// it. An entry naming no module of the model is an error naming it; a
// module whose tensors the file holds but which target_modules does not
// take in is an error naming it (PEFT would not load those tensors);
// entries match whole names or dotted suffixes, a string is one regular
// expression over whole names.
func TestLoadAdapterTargetModules(t *testing.T) {
	src := filepath.Join(peftFixtures, "lora_rs")
	for _, c := range []struct {
		value any
		frags []string
	}{
		{[]string{"fc1", "fc3"}, []string{`"target_modules"`, `"fc3"`, "matches no module", `"fc1", "fc2"`}},
		{[]string{"fc1", "attn"}, []string{`"target_modules"`, `"attn"`, "matches no module"}},
		{[]string{"fc1"}, []string{`"target_modules"`, `["fc1"]`, `"fc2"`, "tensors"}},
		{"fc1", []string{`"target_modules"`, `"fc1"`, `"fc2"`, "tensors"}},
		{"fc[3-9]", []string{`"target_modules"`, `"fc[3-9]"`, "matches no module"}},
		{"fc(", []string{`"target_modules"`, `"fc("`}},
		{[]any{"fc1", 2}, []string{`"target_modules"`, "2"}},
		{"fc[12]", nil},
		{"fc.*", nil},
		{[]string{"fc2", "fc1"}, nil},
		{[]string{}, nil}, // nothing: the tensors say
	} {
		t.Run(string(must(json.Marshal(c.value))), func(t *testing.T) {
			err := loadInto(t, withConfig(t, src, map[string]any{"target_modules": c.value}))
			if c.frags == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, f := range c.frags {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q lacks %q", err, f)
				}
			}
		})
	}
	// A dotted suffix: "q" takes in blocks.0.attn.q, not blocks.0.attn.qq.
	g := peft.NewGPT(peft.TestGPTConfig(1))
	if _, err := lora.Add(g, lora.Config{R: 2, Targets: []string{"attn.q"}}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a")
	if err := peft.SaveAdapter(dir, g, ""); err != nil {
		t.Fatal(err)
	}
	dir = withConfig(t, dir, map[string]any{"target_modules": []string{"q"}})
	if err := peft.LoadAdapter(dir, peft.NewGPT(peft.TestGPTConfig(1)), ""); err != nil {
		t.Errorf("suffix entry: %v", err)
	}
	dir = withConfig(t, dir, map[string]any{"target_modules": []string{"attn"}})
	if err := peft.LoadAdapter(dir, peft.NewGPT(peft.TestGPTConfig(1)), ""); err == nil || !strings.Contains(err.Error(), `"blocks.0.attn.q"`) {
		t.Errorf("an entry naming a parent module: %v", err)
	}
}

// TestLoadAdapterPatternOrder: rank_pattern and alpha_pattern keys are
// tried in the file's order, as PEFT's get_pattern_key does, not sorted.
func TestLoadAdapterPatternOrder(t *testing.T) {
	dir := copyDir(t, filepath.Join(peftFixtures, "lora_rs"))
	// fc2's tensors have rank 3; "f.2" sorts before "fc2" and matches too.
	raw, _ := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	s := strings.Replace(string(raw), `"rank_pattern": {
    "fc2": 3
  }`, `"rank_pattern": {"fc2": 3, "f.2": 5}`, 1)
	s = strings.Replace(s, `"alpha_pattern": {
    "fc2": 6
  }`, `"alpha_pattern": {"fc2": 6, "f.2": 1}`, 1)
	if s == string(raw) {
		t.Fatal("the fixture changed")
	}
	os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), []byte(s), 0o644)
	m := peft.NewMLP([]int{5, 7, 4}, 1)
	if err := peft.LoadAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	if a := m.Layers[1].Adapters["default"].(*lora.LoRA); a.R != 3 || a.Alpha != 6 {
		t.Errorf("fc2: r %d α %g, want the first keys' 3 and 6", a.R, a.Alpha)
	}
}

// TestLoadAdapterMissingRank: a config without its rank field takes PEFT's
// default; when the tensors disagree, the error says that the field is
// missing and names the config file, for LoRA ("r"), AdaLoRA ("init_r")
// and VeRA ("r").
func TestLoadAdapterMissingRank(t *testing.T) {
	check := func(t *testing.T, err error, frags ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("loaded")
		}
		for _, f := range append(frags, "missing", peft.AdapterConfigFile) {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error %q lacks %q", err, f)
			}
		}
		if strings.Contains(err.Error(), "the config gives") || strings.Contains(err.Error(), `"r" gives`) {
			t.Errorf("error %q blames a value the file does not give", err)
		}
	}
	t.Run("lora", func(t *testing.T) {
		dir := withConfig(t, filepath.Join(peftFixtures, "lora_rs"), map[string]any{"r": nil, "rank_pattern": map[string]any{}})
		check(t, loadInto(t, dir), `field "r"`, "default r = 8", "rank 2")
		// fc2's rank comes from rank_pattern: its error is about rank_pattern.
		dir = withConfig(t, filepath.Join(peftFixtures, "lora_rs"), map[string]any{"r": nil, "rank_pattern": map[string]any{"fc2": 4}})
		err := loadInto(t, dir)
		check(t, err, `field "r"`) // fc1 comes first
		// With rank-8 tensors, PEFT's default fits and the adapter loads.
		m := peft.NewMLP([]int{16, 16, 16}, 1)
		if _, err := lora.Add(m, lora.Config{R: 8, Targets: []string{"fc1", "fc2"}}); err != nil {
			t.Fatal(err)
		}
		d8 := filepath.Join(t.TempDir(), "a")
		if err := peft.SaveAdapter(d8, m, ""); err != nil {
			t.Fatal(err)
		}
		if err := loadInto(t, withConfig(t, d8, map[string]any{"r": nil}), 16, 16, 16); err != nil {
			t.Errorf("rank 8 without r: %v", err)
		}
	})
	t.Run("adalora", func(t *testing.T) {
		dir := withConfig(t, filepath.Join(peftFixtures, "adalora"), map[string]any{"init_r": nil, "rank_pattern": map[string]any{}})
		check(t, loadInto(t, dir), `field "init_r"`, "init_r = 12")
		dir = withConfig(t, filepath.Join(peftFixtures, "adalora"), map[string]any{"init_r": nil})
		check(t, loadInto(t, dir), `field "init_r"`)
		m := peft.NewMLP([]int{16, 16, 16}, 1)
		if _, err := adalora.Add(m, adalora.Config{InitR: 3, TargetR: 2, Targets: []string{"fc1", "fc2"}, TotalStep: 10}); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(t.TempDir(), "a")
		if err := peft.SaveAdapter(d, m, ""); err != nil {
			t.Fatal(err)
		}
		check(t, loadInto(t, withConfig(t, d, map[string]any{"init_r": nil}), 16, 16, 16), `field "init_r"`, "init_r = 12", "[3 16]")
	})
	t.Run("vera", func(t *testing.T) {
		m := peft.NewMLP([]int{16, 16, 16}, 1)
		if _, err := vera.Add(m, vera.Config{R: 4, Targets: []string{"fc1", "fc2"}}); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(t.TempDir(), "a")
		if err := peft.SaveAdapter(d, m, ""); err != nil {
			t.Fatal(err)
		}
		check(t, loadInto(t, withConfig(t, d, map[string]any{"r": nil}), 16, 16, 16), `field "r"`, "r = 256")
	})
}

// TestLoadAdapterConfigNotUTF8: a config whose strings are not valid UTF-8
// is an error quoting the string, not a value silently changed.
func TestLoadAdapterConfigNotUTF8(t *testing.T) {
	dir := copyDir(t, filepath.Join(peftFixtures, "lora_rs"))
	p := filepath.Join(dir, peft.AdapterConfigFile)
	raw, _ := os.ReadFile(p)
	for _, bad := range []string{"\"fc\xff1\"", `"fc\udc001"`} {
		os.WriteFile(p, []byte(strings.Replace(string(raw), `"fc1"`, bad, 1)), 0o644)
		err := loadInto(t, dir)
		if err == nil || !strings.Contains(err.Error(), "UTF-8") || !strings.Contains(err.Error(), peft.AdapterConfigFile) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if err := loadInto(t, dir); err == nil || !strings.Contains(err.Error(), `"fc\xed\xb0\x801"`) {
		t.Errorf("the unpaired surrogate is not quoted: %v", err)
	}
}
