package randlora

import (
	"fmt"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file registers RandLoRA and saves and loads it in HuggingFace PEFT's
// layout: peft_type "RANDLORA", RandLoraConfig's fields, and for a module
// with weight W (d×k), m = min(d, k), n = ⌈m/r⌉
//
//	base_model.model.<module>.randlora_lambda   Λ, shape [r, n]
//	base_model.model.<module>.randlora_gamma    Γ, shape [n, m]
//
// with the bases shared by all modules, in the 3-D shapes of PEFT's buffers
//
//	base_model.randlora_A   A (r×m_max),          shape [r, 1, m_max]
//	base_model.randlora_B   B̃ (M_max×n_max·r),   shape [M_max, n_max, r]
//
// which hold the matrices' numbers unchanged, in the same (row-major)
// order: B̃[j, i·r + c] is PEFT's randlora_B[j, i, c]. A file whose bases
// have other shapes (2-D ones included) is refused, naming both shapes.
//
// Where the file departs from PEFT's, and why:
//
//   - Copies. PEFT's layers hold the shared bases too, and PEFT saves every
//     tensor whose name has "randlora_", so its files also carry
//     base_model.model.<module>.randlora_A and .randlora_B, copies of the
//     shared ones (of the same shapes). gopeft writes the bases once (PEFT
//     fills its layers' copies from base_model.randlora_A and _B, which are
//     the same tensors) and on load accepts the copies if they have the
//     shared bases' shapes and numbers.
//   - Projections. PEFT writes the bases only when save_projection is true
//     (its default), and otherwise regenerates them from
//     projection_prng_key with PyTorch's generator, which gopeft cannot
//     reproduce: gopeft always writes them, and refuses a file without
//     them.

func init() {
	peft.Register(peft.Method{
		Name:    "RandLoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Albert et al. 2025, RandLoRA: Full-rank parameter-efficient fine-tuning of large models, arXiv:2502.00987",
		Package: "github.com/gopeft/gopeft/peft/randlora",
		Summary: "W₀ + (α/r)·Σᵢ Bᵢ·Λᵢ·A·Γᵢ over n = ⌈min(d,k)/r⌉ frozen random rank-r bases shared by all layers; only the diagonals Λ (r×n, zero at init) and Γ (n×min(d,k)) are trained, and ΔW reaches full rank",
		Format: &peft.AdapterFormat{
			PEFTType: "RANDLORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*RandLoRA); return ok },
			Tensors:  []string{".randlora_lambda", ".randlora_gamma", ".randlora_A", ".randlora_B"},
			Shared:   []string{"randlora_A", "randlora_B"},
			Save:     save,
			Load:     load,
		},
	})
}

// PEFT's RandLoraConfig defaults, which a config without the field gets.
const (
	peftDefaultR     = 32
	peftDefaultAlpha = 640
)

// save writes PEFT's RandLoraConfig fields and the tensors of w's adapters,
// which must share one pair of bases and one setting of what RandLoraConfig
// sets once for all (r, α, dropout, the kind of bases, the seed).
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	a0, m0 := as[0], w.Modules[0].Name
	for i, a := range as {
		mi := w.Modules[i].Name
		switch {
		case a.A != a0.A || a.B != a0.B:
			return fmt.Errorf("modules %s and %s have different RandLoRA bases (attached by separate randlora.Add calls): one PEFT RandLoRA adapter shares one pair", m0, mi)
		case a.Alpha != a0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): PEFT's randlora_alpha is one setting for all", m0, mi, a0.Alpha, a.Alpha)
		case a.Dropout != a0.Dropout:
			return fmt.Errorf("modules %s and %s differ in dropout (%g, %g): PEFT's randlora_dropout is one setting for all", m0, mi, a0.Dropout, a.Dropout)
		case a.Basis != a0.Basis:
			return fmt.Errorf("modules %s and %s differ in basis (%v, %v): PEFT's sparse and very_sparse are one setting for all", m0, mi, a0.Basis, a.Basis)
		case a.Seed != a0.Seed:
			return fmt.Errorf("modules %s and %s differ in seed (%d, %d): PEFT's projection_prng_key is one setting for all", m0, mi, a0.Seed, a.Seed)
		}
	}
	targets := make([]string, len(as))
	for i, a := range as {
		targets[i] = w.Modules[i].Name
		w.Put(targets[i], ".randlora_lambda", a.Lambda.Value)
		w.Put(targets[i], ".randlora_gamma", a.Gamma.Value)
	}
	putBases(w, a0.A.Value, a0.B.Value, a0.R)
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":                   a0.R,
		"randlora_alpha":      a0.Alpha,
		"randlora_dropout":    a0.Dropout,
		"target_modules":      targets,
		"projection_prng_key": a0.Seed,
		"save_projection":     true,
		"sparse":              a0.Basis == SparseBasis,
		"very_sparse":         a0.Basis == VerySparseBasis,
		"fan_in_fan_out":      false,
		"bias":                "none",
		"modules_to_save":     nil,
		"init_weights":        true,
		"layers_to_transform": nil,
		"layers_pattern":      nil,
	} {
		w.Config[k] = v
	}
	return nil
}

// putBases writes the shared A (r×m_max) and B̃ (M_max×n_max·r) in PEFT's
// shapes [r, 1, m_max] and [M_max, n_max, r].
func putBases(w *peft.AdapterWriter, a, b *mat.Dense, rank int) {
	w.PutSharedShaped("randlora_A", a, aShape(a, rank))
	w.PutSharedShaped("randlora_B", b, bShape(b, rank))
}

// aShape and bShape are PEFT's shapes of the shared A (r×m_max) and
// B̃ (M_max×n_max·r) of rank r.
func aShape(a *mat.Dense, rank int) []int { _, m := a.Dims(); return []int{rank, 1, m} }
func bShape(b *mat.Dense, rank int) []int { bm, bc := b.Dims(); return []int{bm, bc / rank, rank} }

// readConfig reads the RandLoraConfig fields and refuses the options gopeft
// does not implement.
func readConfig(c *peft.AdapterConfig) Config {
	cfg := Config{
		R:       c.Rank("r", peftDefaultR),
		Alpha:   c.Alpha("randlora_alpha", peftDefaultAlpha),
		Dropout: c.Prob("randlora_dropout", 0),
		Seed:    int64(c.Int("projection_prng_key", 0)),
	}
	// PEFT checks very_sparse first.
	sparse, verySparse := c.Bool("sparse", false), c.Bool("very_sparse", false)
	switch {
	case verySparse:
		cfg.Basis = VerySparseBasis
	case sparse:
		cfg.Basis = SparseBasis
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if !c.Bool("save_projection", true) {
		c.Errorf("save_projection", "false: PEFT would regenerate randlora_A and randlora_B from projection_prng_key with PyTorch's generator, which gopeft cannot reproduce; save the adapter with save_projection=True")
	}
	c.Require("bias", "gopeft's RandLoRA trains no bias", `"none"`)
	c.Require("fan_in_fan_out", "Conv1D-style weights")
	c.Require("modules_to_save", "gopeft saves no full modules beside an adapter")
	c.Require("layers_to_transform", "give the modules in target_modules instead")
	c.Require("layers_pattern", "give the modules in target_modules instead")
	c.Require("exclude_modules", "give the modules in target_modules instead")
	// The init of a loaded adapter is its saved weights.
	c.Bool("init_weights", true)
	return cfg
}

// readBases returns the shared A (r×m_max) and B̃ (M_max×n_max·r) of the
// file r reads, stored in PEFT's shapes [r, 1, m_max] and
// [M_max, n_max, r], read once per LoadAdapter call (kept in r.Load).
func readBases(r *peft.AdapterReader, rank int) (a, b *peft.Tensor, err error) {
	if p, ok := r.Load["randlora"].([2]*peft.Tensor); ok {
		return p[0], p[1], nil
	}
	what := "RandLoRA's shared basis %s, PEFT's shape %s with the config's r = %d"
	if !r.HasShared("randlora_A") || !r.HasShared("randlora_B") {
		what += "; PEFT saves it with save_projection=True, and gopeft cannot regenerate it from projection_prng_key"
	}
	av, err := r.SharedShaped("randlora_A", []int{rank, 1, -1}, fmt.Sprintf(what, "A", "[r, 1, m_max]", rank))
	if err != nil {
		return nil, nil, err
	}
	bv, err := r.SharedShaped("randlora_B", []int{-1, -1, rank}, fmt.Sprintf(what, "B", "[M_max, n_max, r]", rank))
	if err != nil {
		return nil, nil, err
	}
	if av == nil || bv == nil {
		return nil, nil, r.Errorf("", "base_model.randlora_A or base_model.randlora_B has a zero dimension")
	}
	// SharedShaped gives [r, 1, m_max] as r×m_max and [M_max, n_max, r] as
	// M_max×n_max·r: A and B̃ as they are.
	a, b = peft.NewConst(av), peft.NewConst(bv)
	a.Name, b.Name = "randlora_A", "randlora_B"
	r.Load["randlora"] = [2]*peft.Tensor{a, b}
	return a, b, nil
}

// load rebuilds module l's RandLoRA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	cfg := readConfig(r.Config)
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	alpha := cfg.Alpha
	a, b, err := readBases(r, cfg.R)
	if err != nil {
		if !r.Config.Has("r") {
			return nil, r.Config.Errorf("r", "missing, so PEFT's default r = %d applies, which does not fit: %v", cfg.R, err)
		}
		return nil, err
	}
	m, big := min(d, k), max(d, k)
	n := NumBases(m, cfg.R)
	ash, bsh := aShape(a.Value, cfg.R), bShape(b.Value, cfg.R)
	if ash[2] < m || bsh[0] < big || bsh[1] < n {
		return nil, r.Errorf("", "the shared randlora_A %v and randlora_B %v are too small for module %s, whose weight is %s: want m_max ≥ %d, M_max ≥ %d and n_max ≥ %d (shapes [r, 1, m_max] and [M_max, n_max, r], r = %d)",
			ash, bsh, l.Name, peft.ShapeOf(d, k), m, big, n, cfg.R)
	}
	for _, c := range []struct {
		suffix string
		shared *peft.Tensor
		shape  []int
	}{{".randlora_A", a, ash}, {".randlora_B", b, bsh}} {
		if !r.Has(c.suffix) {
			continue
		}
		cp, err := r.TensorShaped(c.suffix, c.shape, "PEFT's per-module copy of base_model"+c.suffix+", of the same shape")
		if err != nil {
			return nil, err
		}
		if cp == nil || !mat.Equal(cp, c.shared.Value) {
			return nil, r.Errorf(c.suffix, "differs from base_model%s, of which PEFT's layers hold the same tensor", c.suffix)
		}
	}
	lambda, err := r.Tensor(".randlora_lambda", cfg.R, n, fmt.Sprintf("randlora_lambda of %s, whose weight is %s, with the config's r = %d (n = ⌈%d/%d⌉ bases)", l.Name, peft.ShapeOf(d, k), cfg.R, m, cfg.R))
	if err != nil {
		return nil, err
	}
	gamma, err := r.Tensor(".randlora_gamma", n, m, fmt.Sprintf("randlora_gamma of %s, whose weight is %s, with the config's r = %d", l.Name, peft.ShapeOf(d, k), cfg.R))
	if err != nil {
		return nil, err
	}
	v, err := New(l.Name, r.Name, d, k, a, b, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	v.Lambda.Value.Copy(lambda)
	v.Gamma.Value.Copy(gamma)
	v.Alpha = alpha // as the file has it, 0 included
	return v, nil
}
