package dora

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
)

// This file registers DoRA and saves and loads it in HuggingFace PEFT's
// layout: LoRA's (peft_type "LORA", LoraConfig's fields, see
// lora.WriteConfig) with use_dora true, and for a module with weight W
// (out×in)
//
//	base_model.model.<module>.lora_A.weight          A (r×in)
//	base_model.model.<module>.lora_B.weight          B (out×r)
//	base_model.model.<module>.lora_magnitude_vector  M, 1-D [out]

func init() {
	peft.Register(peft.Method{
		Name:    "DoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Liu et al. 2024, DoRA: Weight-Decomposed Low-Rank Adaptation, ICML, arXiv:2402.09353",
		Package: "github.com/gopeft/gopeft/peft/dora",
		Summary: "W' = diag(M/‖W + s·B·A‖_row)·(W + s·B·A): a trained magnitude M per output unit times a LoRA-updated direction",
		Format: &peft.AdapterFormat{
			PEFTType: "LORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*DoRA); return ok },
			Claims:   func(c *peft.AdapterConfig) bool { return c.Bool("use_dora", false) },
			Tensors:  []string{".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the DoRA adapters w.Adapters (SaveAdapter has checked that
// every one is a *DoRA).
func save(w *peft.AdapterWriter) error {
	settings := make([]lora.Settings, len(w.Adapters))
	for i, a := range w.Adapters {
		d, mod := a.(*DoRA), w.Modules[i].Name
		settings[i] = d.Settings()
		w.Put(mod, ".lora_A.weight", d.A.Value)
		w.Put(mod, ".lora_B.weight", d.B.Value)
		w.PutVector(mod, ".lora_magnitude_vector", d.M.Value) // 1-D [out]
	}
	return lora.WriteConfig(w, settings, true)
}

// load rebuilds module l's DoRA adapter through FromFactors, so that a
// loaded adapter passes the checks of one made by Add.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	s, a, b, err := lora.ReadFactors(r, l)
	if err != nil {
		return nil, err
	}
	out, in := l.W.Dims()
	m, err := r.Vector(".lora_magnitude_vector", out, fmt.Sprintf("the magnitude of %s, whose weight is %s", l.Name, peft.ShapeOf(out, in)))
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, r.Errorf(".lora_magnitude_vector", "empty magnitude for the %s weight of %s", peft.ShapeOf(out, in), l.Name)
	}
	return FromFactors(l.Name, r.Name, a, b, m, Config{Alpha: s.Alpha, RSLoRA: s.RSLoRA, Dropout: s.Dropout}, r.Rand)
}
