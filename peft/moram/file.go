package moram

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers MoRAM and saves and loads it. HuggingFace PEFT has
// no MoRAM, so the layout is gopeft's own: peft_type "GOPEFT_MORAM", and
// for a module with weight W₀ (d×k), after T tasks of r atoms each,
//
//	base_model.model.<module>.moram_A.weight   A (T·r × k), old atoms first
//	base_model.model.<module>.moram_B.weight   B (d × T·r), old atoms first
//
// with adapter_config.json's fields, one value for all modules:
//
//	r               atoms per task r
//	num_tasks       T; the last r atoms are the current task's (trainable
//	                after loading), the first (T−1)·r are frozen
//	top_k           k, atoms kept per input row
//	tau             τ, a number, or the string "inf" for τ = +Inf (JSON
//	                has no infinity)
//	delta           δ; negative: no eval pruning
//	target_modules  the adapted modules
//
// The frozen atoms are saved with the current ones because every atom
// takes part in every row's norm and top-k: without them the outputs would
// change.

func init() {
	peft.Register(peft.Method{
		Name:    "MoRAM",
		Kind:    peft.AdapterMethod,
		Paper:   "Lu et al. 2025, Little By Little: Continual Learning via Self-Activated Sparse Mixture-of-Rank Adaptive Learning (the paper's MoRA, not Jiang et al.'s), arXiv:2506.21035",
		Package: "github.com/gopeft/gopeft/peft/moram",
		Summary: "rank-1 experts (a_i, b_i) self-routed by top-k softmax of x·a_i/‖x·A‖, r new trainable atoms per task, earlier ones frozen",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_MORAM",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*MoRAM); return ok },
			Tensors:  []string{".moram_A.weight", ".moram_B.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r, T, k, τ and δ.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	a0, m0 := as[0], w.Modules[0].Name
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		for _, f := range []struct {
			field  string
			v, v0  any
			differ bool
		}{
			{"r", a.R, a0.R, a.R != a0.R},
			{"num_tasks", a.Tasks, a0.Tasks, a.Tasks != a0.Tasks},
			{"top_k", a.TopK, a0.TopK, a.TopK != a0.TopK},
			{"tau", a.Tau, a0.Tau, a.Tau != a0.Tau},
			{"delta", a.Delta, a0.Delta, a.Delta != a0.Delta},
		} {
			if f.differ {
				return fmt.Errorf("modules %s and %s differ in %s (%v, %v): gopeft's MoRAM config has one %s", m0, mi, f.field, f.v0, f.v, f.field)
			}
		}
		targets[i] = mi
		A, B := a.atoms()
		w.Put(mi, ".moram_A.weight", A.Value)
		w.Put(mi, ".moram_B.weight", B.Value)
	}
	sort.Strings(targets)
	var tau any = a0.Tau
	if math.IsInf(a0.Tau, 1) {
		tau = "inf"
	}
	for k, v := range map[string]any{
		"r":              a0.R,
		"num_tasks":      a0.Tasks,
		"top_k":          a0.TopK,
		"tau":            tau,
		"delta":          a0.Delta,
		"target_modules": targets,
	} {
		w.Config[k] = v
	}
	return nil
}

// readConfig reads the fields every module shares, and T.
func readConfig(c *peft.AdapterConfig) (Config, int) {
	for _, f := range []string{"r", "num_tasks", "top_k", "tau", "delta"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every MoRAM adapter")
		}
	}
	cfg := Config{R: c.Rank("r", 1), TopK: c.Rank("top_k", 1), Delta: c.Float("delta", DefaultDelta)}
	tasks := c.Rank("num_tasks", 1)
	var tau any
	c.Decode("tau", &tau)
	switch v := tau.(type) {
	case float64:
		cfg.Tau = v
	case string:
		if v != "inf" {
			c.Errorf("tau", "%q is not a number or \"inf\"", v)
		}
		cfg.Tau = math.Inf(1)
	default:
		c.Errorf("tau", "%v is not a number or \"inf\"", v)
	}
	if cfg.Tau <= 0 {
		c.Errorf("tau", "%v is not a temperature τ > 0", cfg.Tau)
	}
	if cfg.Delta == 0 { // Config's 0 would mean the default
		c.Errorf("delta", "0 is not written by gopeft (a positive δ ≤ 1, or negative for no pruning)")
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	return cfg, tasks
}

// load rebuilds module l's MoRAM adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	cfg, tasks := readConfig(c)
	if err := c.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		field := "r"
		switch msg := err.Error(); {
		case strings.Contains(msg, "Delta"):
			field = "delta"
		case strings.Contains(msg, "TopK"):
			field = "top_k"
		}
		return nil, c.Errorf(field, "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	R := tasks * cfg.R
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d and num_tasks = %d", t, l.Name, peft.ShapeOf(d, k), cfg.R, tasks)
	}
	A, err := r.Tensor(".moram_A.weight", R, k, what("moram_A"))
	if err != nil {
		return nil, err
	}
	B, err := r.Tensor(".moram_B.weight", d, R, what("moram_B"))
	if err != nil {
		return nil, err
	}
	a, err := New(l.Name, r.Name, d, k, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	for t := 1; t < tasks; t++ {
		a.IncrementTask()
	}
	old := (tasks - 1) * cfg.R
	if old > 0 {
		a.OldA.Value.Copy(A.Slice(0, old, 0, k))
		a.OldB.Value.Copy(B.Slice(0, d, 0, old))
	}
	a.A.Value.Copy(A.Slice(old, R, 0, k))
	a.B.Value.Copy(B.Slice(0, d, old, R))
	return a, nil
}
