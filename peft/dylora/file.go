package dylora

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers DyLoRA and saves and loads it. HuggingFace PEFT has
// no DyLoRA, so the layout is gopeft's own: peft_type "GOPEFT_DYLORA", and
// for a module with weight W₀ (d×k)
//
//	base_model.model.<module>.dylora_A.weight   A (r×k)
//	base_model.model.<module>.dylora_B.weight   B (d×r)
//
// with adapter_config.json's fields r, lora_alpha, frozen, lora_dropout,
// fixed_scale and rank (the inference rank b of SetRank), one value of each
// for all modules, and target_modules. A file holds all r components, so the
// loaded adapter still works at every rank.

func init() {
	peft.Register(peft.Method{
		Name:    "DyLoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Valipour, Rezagholizadeh, Kobyzev and Ghodsi 2023, DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using Dynamic Search-Free Low-Rank Adaptation, arXiv:2210.07558",
		Package: "github.com/gopeft/gopeft/peft/dylora",
		Summary: "LoRA trained at a rank b ~ U{1..r} drawn every step, update (α/b)·B_{:b}·A_{:b}: one adapter usable at every rank b ≤ r",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_DYLORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*Layer); return ok },
			Tensors:  []string{".dylora_A.weight", ".dylora_B.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's layers, which must
// agree on r, α, frozen, dropout and rank.
func save(w *peft.AdapterWriter) error {
	ls := As(w.Adapters)
	targets := make([]string, len(ls))
	l0 := ls[0]
	for i, a := range ls {
		mi := w.Modules[i].Name
		if a.R != l0.R || a.Alpha != l0.Alpha || a.Frozen != l0.Frozen || a.Dropout != l0.Dropout || a.rank != l0.rank || a.FixedScale != l0.FixedScale {
			return fmt.Errorf("modules %s and %s differ in r, α, frozen, dropout, rank or fixed scale ((%d, %g, %v, %g, %d, %v) and (%d, %g, %v, %g, %d, %v)): gopeft's DyLoRA config has one of each",
				w.Modules[0].Name, mi, l0.R, l0.Alpha, l0.Frozen, l0.Dropout, l0.rank, l0.FixedScale, a.R, a.Alpha, a.Frozen, a.Dropout, a.rank, a.FixedScale)
		}
		targets[i] = mi
		w.Put(mi, ".dylora_A.weight", a.A.Value)
		w.Put(mi, ".dylora_B.weight", a.B.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = l0.R
	w.Config["lora_alpha"] = l0.Alpha
	w.Config["frozen"] = l0.Frozen
	w.Config["lora_dropout"] = l0.Dropout
	w.Config["rank"] = l0.rank
	w.Config["fixed_scale"] = l0.FixedScale
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's DyLoRA layer through FromFactors.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every DyLoRA adapter")
	}
	cfg := Config{
		R:          c.Rank("r", 1),
		Alpha:      c.Alpha("lora_alpha", 0),
		Frozen:     c.Bool("frozen", false),
		Dropout:    c.Prob("lora_dropout", 0),
		FixedScale: c.Bool("fixed_scale", false),
	}
	b := c.Rank("rank", cfg.R)
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	if b > cfg.R {
		return nil, c.Errorf("rank", "%d is above r = %d", b, cfg.R)
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", t, l.Name, peft.ShapeOf(d, k), cfg.R)
	}
	a, err := r.Tensor(".dylora_A.weight", cfg.R, k, what("dylora_A"))
	if err != nil {
		return nil, err
	}
	bm, err := r.Tensor(".dylora_B.weight", d, cfg.R, what("dylora_B"))
	if err != nil {
		return nil, err
	}
	ly, err := FromFactors(l.Name, r.Name, a, bm, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	ly.rank = b
	return ly, nil
}
