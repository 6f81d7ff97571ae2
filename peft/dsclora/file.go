package dsclora

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers DSCLoRA and saves and loads its ConvLoRA adapters.
// HuggingFace PEFT's conv LoRA factorizes differently (see ConvLoRA), so
// the layout is gopeft's own: peft_type "GOPEFT_DSCLORA", and for a module
// whose kernel is (C_out, C_in, k, k)
//
//	base_model.model.<module>.lora_A.weight   A (r·k × C_in·k)
//	base_model.model.<module>.lora_B.weight   B (C_out·k × r·k)
//
// loralib's names and shapes, with adapter_config.json's fields r and
// lora_alpha (one each for all modules) and target_modules. k is not
// stored: it is the module's, read from its Kernel when loading.

func init() {
	peft.Register(peft.Method{
		Name:    "DSCLoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Chai et al. 2025, Distillation-Supervised Convolutional Low-Rank Adaptation for Efficient Image Super-Resolution (DSCLoRA), arXiv:2504.11271",
		Package: "github.com/gopeft/gopeft/peft/dsclora",
		Summary: "ConvLoRA (loralib): kernel W₀ + (α/r)·reshape(B·A), A (r·k × C_in·k), B (C_out·k × r·k) zero at init; trained by Distill with a teacher's output and spatial affinity",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_DSCLORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*ConvLoRA); return ok },
			Tensors:  []string{".lora_A.weight", ".lora_B.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which
// must agree on r and α.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		if a.R != as[0].R || a.Alpha != as[0].Alpha {
			return fmt.Errorf("modules %s and %s differ in r or α ((%d, %g), (%d, %g)): gopeft's DSCLoRA config has one of each", w.Modules[0].Name, mi, as[0].R, as[0].Alpha, a.R, a.Alpha)
		}
		targets[i] = mi
		w.Put(mi, ".lora_A.weight", a.A.Value)
		w.Put(mi, ".lora_B.weight", a.B.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = as[0].R
	w.Config["lora_alpha"] = as[0].Alpha
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's ConvLoRA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	c := r.Config
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every DSCLoRA adapter")
	}
	cfg := Config{R: c.Rank("r", 1), Alpha: c.Alpha("lora_alpha", 0)}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	cout, cin, k, err := KernelOf(l)
	if err != nil {
		return nil, r.Errorf("", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	if err := cfg.Check(l.Name, cout, cin, k); err != nil {
		return nil, c.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose kernel is (%d, %d, %d, %d), with r = %d", t, l.Name, cout, cin, k, k, cfg.R)
	}
	a, err := r.Tensor(".lora_A.weight", cfg.R*k, cin*k, what("lora_A"))
	if err != nil {
		return nil, err
	}
	b, err := r.Tensor(".lora_B.weight", cout*k, cfg.R*k, what("lora_B"))
	if err != nil {
		return nil, err
	}
	ad, err := New(l, r.Name, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	ad.A.Value.Copy(a)
	ad.B.Value.Copy(b)
	ad.Alpha = cfg.Alpha // as saved: 0 stays 0 (s = 0), as LoRA's FromFactors
	return ad, nil
}
