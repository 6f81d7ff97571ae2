package hut

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers HUT and saves and loads it. HuggingFace PEFT has no
// HUT, so the layout is gopeft's own: peft_type "GOPEFT_HUT", and for a
// module with weight W₀ (d×k)
//
//	base_model.model.<module>.hut_A.weight   A (r×k)
//	base_model.model.<module>.hut_B.weight   B (d×r)
//
// with adapter_config.json's fields r (one for all modules) and
// target_modules. ΔW = W₀ ⊙ (B·A) is tied to the base weight, so the file
// is meant for the base model it was trained on, as PEFT's HiRA files are.

func init() {
	peft.Register(peft.Method{
		Name:    "HUT",
		Kind:    peft.AdapterMethod,
		Paper:   "Zhang, Zhou and Chen 2024, HUT: A More Computation Efficient Fine-Tuning Method With Hadamard Updated Transformation, arXiv:2409.13501",
		Package: "github.com/gopeft/gopeft/peft/hut",
		Summary: "W₀ ⊙ (J + B·A) with B (d×r) zero and A (r×k) random at init: a rank-r mask, a full-rank update",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_HUT",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*HUT); return ok },
			Tensors:  []string{".hut_A.weight", ".hut_B.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r.
func save(w *peft.AdapterWriter) error {
	hs := As(w.Adapters)
	targets := make([]string, len(hs))
	for i, h := range hs {
		mi := w.Modules[i].Name
		if h.R != hs[0].R {
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): gopeft's HUT config has one r", w.Modules[0].Name, mi, hs[0].R, h.R)
		}
		targets[i] = mi
		w.Put(mi, ".hut_A.weight", h.A.Value)
		w.Put(mi, ".hut_B.weight", h.B.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = hs[0].R
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's HUT adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every HUT adapter")
	}
	cfg := Config{R: c.Rank("r", 1)}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", t, l.Name, peft.ShapeOf(d, k), cfg.R)
	}
	a, err := r.Tensor(".hut_A.weight", cfg.R, k, what("hut_A"))
	if err != nil {
		return nil, err
	}
	b, err := r.Tensor(".hut_B.weight", d, cfg.R, what("hut_B"))
	if err != nil {
		return nil, err
	}
	h, err := New(l.Name, r.Name, d, k, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	h.A.Value.Copy(a)
	h.B.Value.Copy(b)
	return h, nil
}
