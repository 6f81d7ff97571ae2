package codyra

import (
	"fmt"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file registers CoDyRA and saves and loads it. HuggingFace PEFT has
// no CoDyRA, so the layout is gopeft's own, with the reference code's
// names: peft_type "GOPEFT_CODYRA", and for a module with weight W₀ (d×k)
//
//	base_model.model.<module>.lora_A.weight   A (r'×k)
//	base_model.model.<module>.lora_B.weight   B (d×r')
//	base_model.model.<module>.lora_gate       g [r']
//
// with adapter_config.json's fields r (the rank each task starts with, one
// for all modules), lora_alpha and target_modules. r' is r, or less after
// Prune; zero gates are stored as zeros. The file holds the current task's
// adapter only: earlier tasks are merged into W₀ (NextTask), so save the
// base model too once a task has ended.

func init() {
	peft.Register(peft.Method{
		Name:    "CoDyRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Lu, Zhao, Xue, Yao, Moore and Gong 2024, Adaptive Rank, Reduced Forgetting: Knowledge Retention in Continual Learning Vision-Language Models with Dynamic Rank-Selective LoRA, arXiv:2412.01004",
		Package: "github.com/gopeft/gopeft/peft/codyra",
		Summary: "W₀ + (α/r)·B·diag(g)·A with gates g soft-thresholded after each step (Prox), so each layer's rank is the number of nonzero gates; tasks merged into W₀ one after another (NextTask)",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_CODYRA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*CoDyRA); return ok },
			Tensors:  []string{".lora_A.weight", ".lora_B.weight", ".lora_gate"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r and α.
func save(w *peft.AdapterWriter) error {
	cs := As(w.Adapters)
	targets := make([]string, len(cs))
	for i, c := range cs {
		mi := w.Modules[i].Name
		switch {
		case c.R != cs[0].R:
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): gopeft's CoDyRA config has one r", w.Modules[0].Name, mi, cs[0].R, c.R)
		case c.Alpha != cs[0].Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): gopeft's CoDyRA config has one lora_alpha", w.Modules[0].Name, mi, cs[0].Alpha, c.Alpha)
		}
		targets[i] = mi
		w.Put(mi, ".lora_A.weight", c.A.Value)
		w.Put(mi, ".lora_B.weight", c.B.Value)
		w.PutVector(mi, ".lora_gate", c.G.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = cs[0].R
	w.Config["lora_alpha"] = cs[0].Alpha
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's CoDyRA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	for _, f := range []string{"r", "lora_alpha"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every CoDyRA adapter")
		}
	}
	cfg := Config{R: c.Rank("r", 1), Alpha: c.Alpha("lora_alpha", 1)}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("r", "%v", err)
	}
	if cfg.Alpha == 0 {
		return nil, c.Errorf("lora_alpha", "0: gopeft writes the α it scales by, which is > 0")
	}
	a, err := r.Tensor(".lora_A.weight", -1, k, fmt.Sprintf("lora_A of %s, whose weight is %s", l.Name, peft.ShapeOf(d, k)))
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, r.Errorf(".lora_A.weight", "rank 0")
	}
	rp, _ := a.Dims()
	if rp > cfg.R {
		return nil, r.Errorf(".lora_A.weight", "%d components, more than the config's r = %d", rp, cfg.R)
	}
	b, err := r.Tensor(".lora_B.weight", d, rp, fmt.Sprintf("lora_B of %s with %d components", l.Name, rp))
	if err != nil {
		return nil, err
	}
	g, err := r.Vector(".lora_gate", rp, fmt.Sprintf("lora_gate of %s, one gate per component", l.Name))
	if err != nil {
		return nil, err
	}
	ad, err := New(l.Name, r.Name, d, k, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	ad.setFactors(a, b, g)
	return ad, nil
}
