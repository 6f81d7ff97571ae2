package lorasb

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers LoRA-SB and saves and loads it. HuggingFace PEFT has
// no LoRA-SB, so the layout is gopeft's own: peft_type "GOPEFT_LORASB",
// and for a module with weight W₀ (d×k)
//
//	base_model.model.<module>.lorasb_B.weight   B (d×r), frozen
//	base_model.model.<module>.lorasb_R.weight   R (r×r), trained
//	base_model.model.<module>.lorasb_A.weight   A (r×k), frozen
//
// with adapter_config.json's fields r and lora_alpha (one for all modules)
// and target_modules. W₀ is not changed by LoRA-SB, so the file applies to
// the pre-trained model as it is. The init's settings (LR, minibatches)
// are not saved: a loaded adapter is its factors.

func init() {
	peft.Register(peft.Method{
		Name:    "LoRA-SB",
		Kind:    peft.AdapterMethod,
		Paper:   "Ponkshe, Singhal, Gorbunov, Tumanov, Horváth and Vepakomma 2024, Initialization using update approximation is a silver bullet for extremely efficient low-rank fine-tuning, arXiv:2411.19557",
		Package: "github.com/gopeft/gopeft/peft/lorasb",
		Summary: "W₀ + s·B·R·A with B, A frozen and only R (r×r) trained, B·R·A the truncated SVD of the estimated first Adam step −η·sign(ΣG)",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_LORASB",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*LoRASB); return ok },
			Tensors:  []string{".lorasb_B.weight", ".lorasb_R.weight", ".lorasb_A.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r and α.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	a0, m0 := as[0], w.Modules[0].Name
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		switch {
		case a.r != a0.r:
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): gopeft's LoRA-SB config has one r", m0, mi, a0.r, a.r)
		case a.Alpha != a0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): gopeft's LoRA-SB config has one lora_alpha", m0, mi, a0.Alpha, a.Alpha)
		}
		targets[i] = mi
		w.Put(mi, ".lorasb_B.weight", a.B.Value)
		w.Put(mi, ".lorasb_R.weight", a.R.Value)
		w.Put(mi, ".lorasb_A.weight", a.A.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = a0.r
	w.Config["lora_alpha"] = a0.Alpha
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's LoRA-SB adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every LoRA-SB adapter")
	}
	cfg := Config{R: c.Rank("r", 1), Alpha: c.Alpha("lora_alpha", 0)}
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
	b, err := r.Tensor(".lorasb_B.weight", d, cfg.R, what("lorasb_B"))
	if err != nil {
		return nil, err
	}
	rm, err := r.Tensor(".lorasb_R.weight", cfg.R, cfg.R, what("lorasb_R"))
	if err != nil {
		return nil, err
	}
	a, err := r.Tensor(".lorasb_A.weight", cfg.R, k, what("lorasb_A"))
	if err != nil {
		return nil, err
	}
	return New(l.Name, r.Name, b, rm, a, cfg)
}
