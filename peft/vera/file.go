package vera

import (
	"fmt"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file registers VeRA and saves and loads it in HuggingFace PEFT's
// layout: peft_type "VERA", and for a module with weight W (d×k)
//
//	base_model.model.<module>.vera_lambda_b   λ_b [d]
//	base_model.model.<module>.vera_lambda_d   λ_d [r]
//
// with the pair of projections shared by all modules
//
//	base_model.vera_A   A (r×k_max)
//	base_model.vera_B   B (d_max×r)
//
// PEFT writes the projections only when the config's save_projection is
// true (its default), and otherwise regenerates them on load from
// projection_prng_key with PyTorch's generator, which gopeft cannot
// reproduce: gopeft therefore always writes them, and refuses a file
// without them.

func init() {
	peft.Register(peft.Method{
		Name:    "VeRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Kopiczko et al. 2023, VeRA: Vector-based Random Matrix Adaptation, ICLR 2024, arXiv:2310.11454",
		Package: "github.com/gopeft/gopeft/peft/vera",
		Summary: "W₀ + diag(λ_b)·B·diag(λ_d)·A with frozen random A (r×k_max) and B (d_max×r) shared by all layers; only λ_b (zero at init) and λ_d are trained",
		Format: &peft.AdapterFormat{
			PEFTType: "VERA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*VeRA); return ok },
			Tensors:  []string{".vera_lambda_b", ".vera_lambda_d"},
			Shared:   []string{"vera_A", "vera_B"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes PEFT's VeraConfig fields and the tensors of w's adapters,
// which must share one pair of projections and one setting of what
// VeraConfig sets once for all (r, dropout, d_initial, the seed).
func save(w *peft.AdapterWriter) error {
	vs := As(w.Adapters)
	v0, m0 := vs[0], w.Modules[0].Name
	for i, v := range vs {
		mi := w.Modules[i].Name
		switch {
		case v.A != v0.A || v.B != v0.B:
			return fmt.Errorf("modules %s and %s have different VeRA projections (attached by separate vera.Add calls): one PEFT VeRA adapter shares one pair", m0, mi)
		case v.Dropout != v0.Dropout:
			return fmt.Errorf("modules %s and %s differ in dropout (%g, %g): PEFT's vera_dropout is one setting for all", m0, mi, v0.Dropout, v.Dropout)
		case v.DInitial != v0.DInitial:
			return fmt.Errorf("modules %s and %s differ in d_initial (%g, %g): PEFT's d_initial is one setting for all", m0, mi, v0.DInitial, v.DInitial)
		case v.Seed != v0.Seed:
			return fmt.Errorf("modules %s and %s differ in seed (%d, %d): PEFT's projection_prng_key is one setting for all", m0, mi, v0.Seed, v.Seed)
		}
	}
	targets := make([]string, len(vs))
	for i, v := range vs {
		targets[i] = w.Modules[i].Name
		w.PutVector(targets[i], ".vera_lambda_b", v.LambdaB.Value)
		w.PutVector(targets[i], ".vera_lambda_d", v.LambdaD.Value)
	}
	w.PutShared("vera_A", v0.A.Value, false)
	w.PutShared("vera_B", v0.B.Value, false)
	sort.Strings(targets)
	for k, val := range map[string]any{
		"r":                   v0.R,
		"target_modules":      targets,
		"projection_prng_key": v0.Seed,
		"save_projection":     true,
		"vera_dropout":        v0.Dropout,
		"d_initial":           v0.DInitial,
		"fan_in_fan_out":      false,
		"bias":                "none",
		"modules_to_save":     nil,
		"init_weights":        true,
		"layers_to_transform": nil,
		"layers_pattern":      nil,
	} {
		w.Config[k] = val
	}
	return nil
}

// readConfig reads the VeraConfig fields and refuses the options gopeft
// does not implement.
func readConfig(c *peft.AdapterConfig) Config {
	cfg := Config{
		R:        c.Rank("r", 256),
		DInitial: c.Float("d_initial", DefaultDInitial),
		Dropout:  c.Prob("vera_dropout", 0),
		Seed:     int64(c.Int("projection_prng_key", 0)),
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if !c.Bool("save_projection", true) {
		c.Errorf("save_projection", "false: PEFT would regenerate vera_A and vera_B from projection_prng_key with PyTorch's generator, which gopeft cannot reproduce; save the adapter with save_projection=True")
	}
	c.Require("bias", "gopeft's VeRA trains no bias", `"none"`)
	c.Require("fan_in_fan_out", "Conv1D-style weights")
	c.Require("modules_to_save", "gopeft saves no full modules beside an adapter")
	c.Require("layers_to_transform", "give the modules in target_modules instead")
	c.Require("layers_pattern", "give the modules in target_modules instead")
	c.Require("exclude_modules", "give the modules in target_modules instead")
	// The init of a loaded adapter is its saved weights.
	c.Bool("init_weights", true)
	return cfg
}

// projections returns the shared A (r×k_max) and B (d_max×r) of the file r
// reads, read once per LoadAdapter call (kept in r.Load).
func projections(r *peft.AdapterReader, rank int) (a, b *peft.Tensor, err error) {
	if p, ok := r.Load["vera"].([2]*peft.Tensor); ok {
		return p[0], p[1], nil
	}
	what := "VeRA's shared projection %s (%s); PEFT saves it with save_projection=True, and gopeft cannot regenerate it from projection_prng_key"
	av, err := r.Shared("vera_A", -1, -1, false, fmt.Sprintf(what, "A", "r×k_max"))
	if err != nil {
		return nil, nil, err
	}
	bv, err := r.Shared("vera_B", -1, -1, false, fmt.Sprintf(what, "B", "d_max×r"))
	if err != nil {
		return nil, nil, err
	}
	if av == nil || bv == nil {
		return nil, nil, r.Errorf("", "base_model.vera_A or base_model.vera_B has a zero dimension")
	}
	ar, ak := av.Dims()
	bd, br := bv.Dims()
	if ar != rank || br != rank {
		return nil, nil, r.Errorf("", "the shared vera_A %s and vera_B %s do not fit the config's rank r = %d: want (%d×k_max) and (d_max×%d)",
			peft.ShapeOf(ar, ak), peft.ShapeOf(bd, br), rank, rank, rank)
	}
	a, b = peft.NewConst(av), peft.NewConst(bv)
	a.Name, b.Name = "vera_A", "vera_B"
	r.Load["vera"] = [2]*peft.Tensor{a, b}
	return a, b, nil
}

// load rebuilds module l's VeRA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	cfg := readConfig(r.Config)
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	dInitial := cfg.DInitial
	a, b, err := projections(r, cfg.R)
	if err != nil {
		if !r.Config.Has("r") {
			return nil, r.Config.Errorf("r", "missing, so PEFT's default r = %d applies, which does not fit: %v", cfg.R, err)
		}
		return nil, err
	}
	if ak, bd := a.Value.RawMatrix().Cols, b.Value.RawMatrix().Rows; ak < k || bd < d {
		return nil, r.Errorf("", "the shared vera_A %s and vera_B %s are too small for module %s, whose weight is %s: want k_max ≥ %d and d_max ≥ %d",
			peft.ShapeOf(cfg.R, ak), peft.ShapeOf(bd, cfg.R), l.Name, peft.ShapeOf(d, k), k, d)
	}
	lb, err := r.Vector(".vera_lambda_b", d, fmt.Sprintf("vera_lambda_b of %s, whose weight is %s", l.Name, peft.ShapeOf(d, k)))
	if err != nil {
		return nil, err
	}
	ld, err := r.Vector(".vera_lambda_d", cfg.R, fmt.Sprintf("vera_lambda_d of %s with the config's r = %d", l.Name, cfg.R))
	if err != nil {
		return nil, err
	}
	v, err := New(l.Name, r.Name, d, k, a, b, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	v.LambdaB.Value.Copy(lb)
	v.LambdaD.Value.Copy(ld)
	v.DInitial = dInitial // as the file has it, 0 included
	return v, nil
}
