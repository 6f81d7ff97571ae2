package salt

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers SALT and saves and loads it. HuggingFace PEFT has no
// SALT, so the layout is gopeft's own: peft_type "GOPEFT_SALT", and for a
// module with weight W₀ (d×k), m = min(d, k)
//
//	base_model.model.<module>.salt_scale   α [r]
//	base_model.model.<module>.salt_shift   β [r]
//	base_model.model.<module>.salt_X       X ((m−r)×r_L), absent if r = m
//	base_model.model.<module>.salt_Y       Y (r_L×(m−r)), absent if r = m
//
// with adapter_config.json's fields
//
//	r                 r, one for all modules
//	r_lora            r_L as configured (each module caps it at its m − r)
//	singular_values   {"<module>": [σ_1, …, σ_m], …}: W₀'s singular values
//	target_modules    the adapted modules
//
// The frozen U and V are not saved: they are as large as W₀ itself. On load
// they are recomputed from the model's base weight with accel.ThinSVD, whose
// sign convention is fixed, so the same W₀ gives the same basis bit for bit.
// The saved σ (JSON keeps float64 exactly, whatever the tensors' dtype) must
// then match the recomputed one to 1e-6·σ_1: α, β, X and Y only mean
// something in the singular basis of the weight they were trained on, so an
// adapter loaded onto another base is an error rather than a silently
// different model.

func init() {
	peft.Register(peft.Method{
		Name:    "SALT",
		Kind:    peft.AdapterMethod,
		Paper:   "Elsayed et al. 2025, SALT: Singular Value Adaptation with Low-Rank Transformation, arXiv:2503.16055",
		Package: "github.com/gopeft/gopeft/peft/salt",
		Summary: "W₀ = U·diag(σ)·Vᵀ with the top-r σ_i → α_i·σ_i + β_i (α = 1, β = 0 at init) and a LoRA X·Y (Y = 0 at init) added to the remaining block of singular values",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_SALT",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*SALT); return ok },
			Tensors:  []string{".salt_scale", ".salt_shift", ".salt_X", ".salt_Y"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r and r_L, set once for all in the config.
func save(w *peft.AdapterWriter) error {
	ss := As(w.Adapters)
	s0, m0 := ss[0], w.Modules[0].Name
	sigmas := map[string][]float64{}
	targets := make([]string, len(ss))
	for i, s := range ss {
		mi := w.Modules[i].Name
		switch {
		case s.R != s0.R:
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): gopeft's SALT config has one r", m0, mi, s0.R, s.R)
		case s.RLoRA != s0.RLoRA:
			return fmt.Errorf("modules %s and %s differ in r_lora (%d, %d): gopeft's SALT config has one r_lora", m0, mi, s0.RLoRA, s.RLoRA)
		}
		targets[i] = mi
		sigmas[mi] = append([]float64(nil), s.sigma...)
		w.PutVector(mi, ".salt_scale", s.Scale.Value)
		w.PutVector(mi, ".salt_shift", s.Shift.Value)
		if s.X != nil {
			w.Put(mi, ".salt_X", s.X.Value)
			w.Put(mi, ".salt_Y", s.Y.Value)
		}
	}
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":               s0.R,
		"r_lora":          s0.RLoRA,
		"singular_values": sigmas,
		"target_modules":  targets,
	} {
		w.Config[k] = v
	}
	return nil
}

// readConfig reads the fields every module shares.
func readConfig(c *peft.AdapterConfig) Config {
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every SALT adapter")
	}
	cfg := Config{R: c.Rank("r", 1), RLoRA: c.Rank("r_lora", DefaultRLoRA)}
	c.Has("target_modules") // checked against the model by LoadAdapter
	return cfg
}

// singularValues returns the singular_values of the file r reads, decoded
// once per LoadAdapter call (kept in r.Load).
func singularValues(r *peft.AdapterReader) map[string][]float64 {
	if sv, ok := r.Load["salt.singular_values"].(map[string][]float64); ok {
		return sv
	}
	sv := map[string][]float64{}
	if !r.Config.Decode("singular_values", &sv) {
		r.Config.Errorf("singular_values", "missing: gopeft writes W₀'s singular values of every module, to check the base weight")
	}
	r.Load["salt.singular_values"] = sv
	return sv
}

// sigmaTol is how far, relative to σ_1, a saved singular value may be from
// the recomputed one.
const sigmaTol = 1e-6

// load rebuilds module l's SALT adapter from r, through New on the model's
// base weight.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	cfg := readConfig(r.Config)
	saved, ok := singularValues(r)[l.Name]
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	if !ok {
		return nil, r.Config.Errorf("singular_values", "no entry for module %s, whose tensors the file holds", l.Name)
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, r.Config.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	s, err := New(context.Background(), l.Name, r.Name, l.W.Value, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	if len(saved) != s.m {
		return nil, r.Config.Errorf("singular_values", "module %s has %d values, but its weight %s has min(d, k) = %d", l.Name, len(saved), peft.ShapeOf(d, k), s.m)
	}
	tol := sigmaTol * math.Max(s.sigma[0], math.Abs(saved[0]))
	for i, v := range saved {
		if !(math.Abs(v-s.sigma[i]) <= tol) {
			return nil, r.Config.Errorf("singular_values", "module %s: σ_%d is %g in the file but %g in the model's weight %s (tolerance %.3g): SALT's parameters live in the singular basis of the weight they were trained on, and this is another weight",
				l.Name, i+1, v, s.sigma[i], peft.ShapeOf(d, k), tol)
		}
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d and r_lora = %d", t, l.Name, peft.ShapeOf(d, k), cfg.R, cfg.RLoRA)
	}
	scale, err := r.Vector(".salt_scale", cfg.R, what("salt_scale"))
	if err != nil {
		return nil, err
	}
	shift, err := r.Vector(".salt_shift", cfg.R, what("salt_shift"))
	if err != nil {
		return nil, err
	}
	s.Scale.Value.Copy(scale)
	s.Shift.Value.Copy(shift)
	if s.X != nil {
		rest, rl := s.m-s.R, s.LoRARank() // X (m−r × min(r_lora, m−r)), Y its transpose's shape
		x, err := r.Tensor(".salt_X", rest, rl, what("salt_X"))
		if err != nil {
			return nil, err
		}
		y, err := r.Tensor(".salt_Y", rl, rest, what("salt_Y"))
		if err != nil {
			return nil, err
		}
		s.X.Value.Copy(x)
		s.Y.Value.Copy(y)
	}
	return s, nil
}
