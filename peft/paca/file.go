package paca

import (
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file registers PaCA and saves and loads it in HuggingFace PEFT's
// layout: peft_type "PACA", PacaConfig's fields, and for a module with
// weight W (d×k)
//
//	base_model.model.<module>.paca_delta     Δ (d×r)
//	base_model.model.<module>.paca_indices   idx [r], the selected columns
//
// PEFT keeps paca_indices as int64; gopeft's files store every tensor in one
// float type (F64 unless AdapterOptions.DType says otherwise), and PEFT's
// load_state_dict casts it into its int64 buffer. F64 and F32 hold every
// column number a layer can have exactly, F16 those up to 2048 and BF16
// those up to 256, so SaveAdapter refuses to write a larger one in those. On
// load gopeft reads integer tensors (PEFT's I64) as well as float ones, and
// refuses an index that is not a whole number in [0, k) or is repeated.
// PEFT's random_seed only draws the columns of a new adapter; gopeft
// records its own seed there and ignores it on load.

func init() {
	peft.Register(peft.Method{
		Name:    "PaCA",
		Kind:    peft.AdapterMethod,
		Paper:   "Woo et al. 2025, PaCA: Partial Connection Adaptation for Efficient Fine-Tuning, ICLR 2025, arXiv:2503.01905",
		Package: "github.com/gopeft/gopeft/peft/paca",
		Summary: "trains r random columns of W itself: W[:, idx] + (α/r)·Δ with Δ (d×r) zero at init and no adapter matrices; the other columns never change",
		Format: &peft.AdapterFormat{
			PEFTType: "PACA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*PaCA); return ok },
			Tensors:  []string{".paca_delta", ".paca_indices"},
			Save:     save,
			Load:     load,
		},
	})
}

// PEFT's PacaConfig defaults, which a config without the field gets.
const (
	peftDefaultR     = 8
	peftDefaultAlpha = 8
)

// exactInts is the largest n such that every integer in [0, n] is exact in
// each dtype a saved adapter may use.
var exactInts = map[string]int{"F64": 1 << 53, "F32": 1 << 24, "F16": 2048, "BF16": 256}

// save writes PEFT's PacaConfig fields and the tensors of w's adapters,
// which must agree on what PacaConfig sets once for all (r, α, the seed).
func save(w *peft.AdapterWriter) error {
	ps := As(w.Adapters)
	p0, m0 := ps[0], w.Modules[0].Name
	targets := make([]string, len(ps))
	for i, p := range ps {
		mi := w.Modules[i].Name
		switch {
		case p.R != p0.R:
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): PEFT's r is one setting for all", m0, mi, p0.R, p.R)
		case p.Alpha != p0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): PEFT's paca_alpha is one setting for all", m0, mi, p0.Alpha, p.Alpha)
		case p.Seed != p0.Seed:
			return fmt.Errorf("modules %s and %s differ in seed (%d, %d): PEFT's random_seed is one setting for all", m0, mi, p0.Seed, p.Seed)
		}
		idx := mat.NewDense(1, p.R, nil)
		for c, j := range p.Idx {
			if limit, ok := exactInts[w.Options.DType]; ok && j > limit {
				return fmt.Errorf("module %s: paca_indices holds column %d, which %s cannot store exactly (integers up to %d); save as F32 or F64", mi, j, w.Options.DType, limit)
			}
			idx.Set(0, c, float64(j))
		}
		targets[i] = mi
		w.Put(mi, ".paca_delta", p.D.Value)
		w.PutVector(mi, ".paca_indices", idx)
	}
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":                   p0.R,
		"paca_alpha":          p0.Alpha,
		"target_modules":      targets,
		"exclude_modules":     nil,
		"layers_to_transform": nil,
		"layers_pattern":      nil,
		"random_seed":         p0.Seed,
		"init_weights":        true,
		"modules_to_save":     nil,
	} {
		w.Config[k] = v
	}
	return nil
}

// readConfig reads the PacaConfig fields and refuses the options gopeft
// does not implement.
func readConfig(c *peft.AdapterConfig) Config {
	cfg := Config{
		R:     c.Rank("r", peftDefaultR),
		Alpha: c.Alpha("paca_alpha", peftDefaultAlpha),
		Seed:  int64(c.Int("random_seed", 0)),
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	c.Require("exclude_modules", "give the modules in target_modules instead")
	c.Require("layers_to_transform", "give the modules in target_modules instead")
	c.Require("layers_pattern", "give the modules in target_modules instead")
	c.Require("modules_to_save", "gopeft saves no full modules beside an adapter")
	// The init of a loaded adapter is its saved weights.
	c.Bool("init_weights", true)
	return cfg
}

// load rebuilds module l's PaCA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	cfg := readConfig(r.Config)
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	alpha := cfg.Alpha
	iv, err := r.Vector(".paca_indices", -1, fmt.Sprintf("paca_indices of %s, the selected columns of its weight %s", l.Name, peft.ShapeOf(d, k)))
	if err != nil {
		return nil, err
	}
	var raw []float64
	if iv != nil {
		raw = iv.RawRowView(0)
	}
	if len(raw) != cfg.R {
		if !r.Config.Has("r") {
			return nil, r.Config.Errorf("r", "missing, so PEFT's default r = %d applies to module %s, whose paca_indices has %d columns", cfg.R, l.Name, len(raw))
		}
		return nil, r.Errorf(".paca_indices", "%d columns, but the config's r is %d", len(raw), cfg.R)
	}
	idx := make([]int, len(raw))
	seen := map[int]bool{}
	for c, v := range raw {
		j := int(v)
		switch {
		case v != math.Trunc(v) || v < 0 || v >= float64(k):
			return nil, r.Errorf(".paca_indices", "column %v of %v is not a whole number in [0, %d) for module %s, whose weight is %s", v, raw, k, l.Name, peft.ShapeOf(d, k))
		case seen[j]:
			return nil, r.Errorf(".paca_indices", "column %d of %v is repeated", j, raw)
		}
		seen[j] = true
		idx[c] = j
	}
	delta, err := r.Tensor(".paca_delta", d, cfg.R, fmt.Sprintf("paca_delta of %s, whose weight is %s, with the config's r = %d", l.Name, peft.ShapeOf(d, k), cfg.R))
	if err != nil {
		return nil, err
	}
	p, err := New(l.Name, r.Name, d, k, idx, cfg)
	if err != nil {
		return nil, err
	}
	p.D.Value.Copy(delta)
	p.Alpha = alpha // as the file has it, 0 included
	return p, nil
}
