package adalora

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// This file registers AdaLoRA and saves and loads it in HuggingFace PEFT's
// layout: peft_type "ADALORA" (PEFT's AdaLoraConfig), and for a module with
// weight W (out×in)
//
//	base_model.model.<module>.lora_A   Q (r×in)
//	base_model.model.<module>.lora_B   P (out×r)
//	base_model.model.<module>.lora_E   λ (r×1)
//
// PEFT does not save ranknum (it holds r_init and only scales); LoadAdapter
// accepts one of shape [1] (or [1, 1]) if present. After its final
// allocation PEFT saves only the kept triplets, with the kept mask of each
// module in the config's rank_pattern ({"<module>.lora_E": [true, false,
// …]}); SaveAdapter does the same when every triplet it drops has λ = 0 and
// every module keeps at least one, and LoadAdapter puts the kept triplets
// back in place among r_init (the dropped ones zero, and not kept), so the
// outputs and the ranks are unchanged either way. A module whose triplets
// were all dropped is saved whole (gonum has no empty matrix), and then
// loads with every triplet kept, λ zero.
//
// The schedule fields (target_r, tinit, tfinal, deltaT, beta1, beta2,
// orth_reg_weight, total_step) are the controller's, passed as
// peft.AdapterOptions.Controller; without one, PEFT's defaults are written
// with total_step = 1, which lets PEFT load the adapter for inference.
// Config.Order has no PEFT field and is not saved.

func init() {
	peft.Register(peft.Method{
		Name:    "AdaLoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Zhang et al. 2023, Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning (AdaLoRA), ICLR, arXiv:2303.10512",
		Package: "github.com/gopeft/gopeft/peft/adalora",
		Summary: "W₀ + α/r_init·P·diag(λ)·Q with λ zero at init; a training hook moves a global rank budget between layers by importance",
		Format: &peft.AdapterFormat{
			PEFTType: "ADALORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*Layer); return ok },
			Tensors:  []string{".lora_A", ".lora_B", ".lora_E", ".ranknum"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the AdaLoRA layers w.Adapters of w.Modules and their
// AdaLoraConfig, with the schedule of w.Options.Controller if set.
func save(w *peft.AdapterWriter) error {
	var ctl *AdaLoRA
	if w.Options.Controller != nil {
		c, ok := w.Options.Controller.(*AdaLoRA)
		if !ok {
			return fmt.Errorf("AdapterOptions.Controller is a %T; an AdaLoRA adapter's controller is the *adalora.AdaLoRA that adalora.Add returned", w.Options.Controller)
		}
		ctl = c
	}
	mods := w.Modules
	layers := make([]*Layer, len(w.Adapters))
	for i, a := range w.Adapters {
		al, ok := a.(*Layer)
		if !ok {
			return fmt.Errorf("module %s has a %T adapter, others AdaLoRA", mods[i].Name, a)
		}
		layers[i] = al
		if al.RInit != layers[0].RInit {
			return fmt.Errorf("modules %s and %s differ in r_init (%d, %d): PEFT's init_r is one setting for all", mods[0].Name, mods[i].Name, layers[0].RInit, al.RInit)
		}
		if al.Dropout != layers[0].Dropout || al.Scaling() != layers[0].Scaling() {
			return fmt.Errorf("modules %s and %s differ in dropout or α: PEFT has one setting for all", mods[0].Name, mods[i].Name)
		}
		if er, _ := al.E.Dims(); er != al.RInit || len(al.kept) != al.RInit {
			return fmt.Errorf("module %s: AdaLoRA layer holds %d triplets (mask of %d) for r_init = %d", mods[i].Name, er, len(al.kept), al.RInit)
		}
		if ctl != nil && !slices.Contains(ctl.Layers, al) {
			return fmt.Errorf("module %s: its AdaLoRA layer is not one of AdapterOptions.Controller's, whose schedule the config would record", mods[i].Name)
		}
	}
	// Truncate to the kept triplets, as PEFT does after its final
	// allocation, only if that changes no output: every dropped λ is 0.
	truncate, anyDropped := true, false
	for _, al := range layers {
		for i, k := range al.kept {
			if !k {
				anyDropped = true
				if al.E.Value.At(i, 0) != 0 {
					truncate = false
				}
			}
		}
	}
	for _, al := range layers {
		if al.Rank() == 0 {
			truncate = false // keep the file free of empty tensors
		}
	}
	truncate = truncate && anyDropped
	var rankPattern map[string][]bool // null unless truncated, as PEFT before its final allocation
	if truncate {
		rankPattern = map[string][]bool{}
	}
	targets := make([]string, len(mods))
	for i, al := range layers {
		l := mods[i]
		targets[i] = l.Name
		q, lam, pm := al.Q.Value, al.E.Value, al.P.Value
		if truncate {
			rankPattern[l.Name+".lora_E"] = al.Kept()
			var idx []int
			for j, k := range al.kept {
				if k {
					idx = append(idx, j)
				}
			}
			q, lam, pm = pickRows(q, idx), pickRows(lam, idx), pickCols(pm, idx)
		}
		w.Put(l.Name, ".lora_A", q)
		w.Put(l.Name, ".lora_B", pm)
		w.Put(l.Name, ".lora_E", lam)
	}
	sort.Strings(targets)
	al := layers[0]
	alpha := al.Alpha
	if alpha <= 0 {
		alpha = float64(al.RInit)
	}
	cfg := map[string]any{
		"init_r":          al.RInit,
		"target_r":        8,
		"lora_alpha":      alpha,
		"lora_dropout":    al.Dropout,
		"use_rslora":      false,
		"use_dora":        false,
		"target_modules":  targets,
		"rank_pattern":    rankPattern,
		"alpha_pattern":   map[string]float64{},
		"tinit":           0,
		"tfinal":          0,
		"deltaT":          1,
		"beta1":           0.85,
		"beta2":           0.85,
		"orth_reg_weight": 0.5,
		"total_step":      1,
		// LoraConfig's fields, as PEFT writes them.
		"bias":                "none",
		"fan_in_fan_out":      false,
		"init_lora_weights":   true,
		"modules_to_save":     nil,
		"layers_to_transform": nil,
		"layers_pattern":      nil,
	}
	if ctl != nil {
		c := ctl.Config()
		cfg["target_r"], cfg["tinit"], cfg["tfinal"], cfg["deltaT"] = c.TargetR, c.TInit, c.TFinal, c.DeltaT
		cfg["beta1"], cfg["beta2"], cfg["orth_reg_weight"], cfg["total_step"] = c.Beta1, c.Beta2, c.OrthRegWeight, c.TotalStep
	} else if al.RInit < 8 {
		cfg["target_r"] = al.RInit
	}
	for k, v := range cfg {
		w.Config[k] = v
	}
	return nil
}

// pickRows returns the rows idx of m; pickCols its columns idx.
func pickRows(m *mat.Dense, idx []int) *mat.Dense {
	_, c := m.Dims()
	out := mat.NewDense(len(idx), c, nil)
	for i, j := range idx {
		out.SetRow(i, m.RawRowView(j))
	}
	return out
}

func pickCols(m *mat.Dense, idx []int) *mat.Dense {
	r, _ := m.Dims()
	out := mat.NewDense(r, len(idx), nil)
	for i := 0; i < r; i++ {
		for k, j := range idx {
			out.Set(i, k, m.At(i, j))
		}
	}
	return out
}

// jsonField maps Config's fields to AdaLoraConfig's, for errors.
var jsonField = map[string]string{
	"InitR": "init_r", "TargetR": "target_r", "Alpha": "lora_alpha", "Dropout": "lora_dropout",
	"TotalStep": "total_step", "TInit": "tinit", "TFinal": "tfinal", "DeltaT": "deltaT",
	"Beta1": "beta1", "Beta2": "beta2", "OrthRegWeight": "orth_reg_weight",
}

// readConfig reads every AdaLoraConfig field PEFT writes and refuses the
// options gopeft does not implement (those lora.ReadSettings refuses, and
// rsLoRA, DoRA and LoftQ, which PEFT's AdaLoRA lacks too). It returns the
// settings as a Config; when the file gives total_step, the schedule is
// checked as Add checks it. Errors go to c.
func readConfig(c *peft.AdapterConfig) Config {
	cfg := Config{
		InitR:         c.Rank("init_r", 12),
		TargetR:       c.Rank("target_r", 8),
		Alpha:         c.Alpha("lora_alpha", 8),
		Dropout:       c.Prob("lora_dropout", 0),
		TotalStep:     c.Int("total_step", 0),
		TInit:         c.Int("tinit", 0),
		TFinal:        c.Int("tfinal", 0),
		DeltaT:        c.Rank("deltaT", 1),
		Beta1:         c.Float("beta1", 0.85),
		Beta2:         c.Float("beta2", 0.85),
		OrthRegWeight: c.Float("orth_reg_weight", 0.5),
	}
	// Config takes 0 for PEFT's default; in a file it is a value PEFT refuses.
	for _, z := range []struct {
		field string
		v     float64
		want  string
	}{{"beta1", cfg.Beta1, "in (0, 1)"}, {"beta2", cfg.Beta2, "in (0, 1)"}, {"orth_reg_weight", cfg.OrthRegWeight, "a γ > 0"}} {
		if z.v == 0 {
			c.Errorf(z.field, "0 is not %s", z.want)
		}
	}
	if c.Has("total_step") { // null in files of PEFT before 0.11; the layers do not need it
		if _, p := cfg.withDefaults(); p.field != "" {
			c.Errorf(jsonField[p.field], "the schedule fails adalora.Add's check: %s", p.msg)
		}
	}
	c.Int("r", 8) // LoraConfig's r, which AdaLoRA ignores (init_r is its rank)
	c.Require("use_rslora", "AdaLoRA with rsLoRA")
	c.Require("use_dora", "AdaLoRA with DoRA")
	c.Require("loftq_config", "AdaLoRA with LoftQ")
	c.Has("target_modules") // checked against the model by LoadAdapter
	var alphaPattern map[string]float64
	c.Decode("alpha_pattern", &alphaPattern) // ignored by PEFT's AdaLoRA, as here
	keys := make([]string, 0, len(alphaPattern))
	for k := range alphaPattern {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := alphaPattern[k]; !(v >= 0) {
			c.Errorf("alpha_pattern", "%q: %v is not a finite α ≥ 0", k, v)
		}
	}
	lora.RefuseUnsupported(c, "AdaLoRA")
	return cfg
}

// keptOf returns module's mask of kept triplets from rank_pattern, or nil
// (all kept) if rank_pattern is empty. Every value must be a list of init_r
// booleans, and a non-empty rank_pattern must have module's key
// "<module>.lora_E".
func keptOf(c *peft.AdapterConfig, module string, initR int) []bool {
	var pattern map[string]json.RawMessage
	if !c.Decode("rank_pattern", &pattern) || len(pattern) == 0 {
		return nil
	}
	keys := make([]string, 0, len(pattern))
	for k := range pattern {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	masks := map[string][]bool{}
	for _, k := range keys {
		var kept []bool
		if json.Unmarshal(pattern[k], &kept) != nil || len(kept) != initR {
			c.Errorf("rank_pattern", "%q: %s is not a list of init_r = %d booleans", k, pattern[k], initR)
			return nil
		}
		masks[k] = kept
	}
	kept, ok := masks[module+".lora_E"]
	if !ok {
		c.Errorf("rank_pattern", "has no key %q", module+".lora_E")
		return nil
	}
	return kept
}

// load builds module l's Layer from r, putting back the triplets that
// rank_pattern says were dropped as zeros, through fromTriplets as Add.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	c := r.Config
	cfg := readConfig(c)
	if err := c.Err(); err != nil {
		return nil, err
	}
	// A rank error when the file gives no init_r says that it is missing.
	rankErr := func(err error) error {
		if c.Has("init_r") {
			return err
		}
		return c.Errorf("init_r", "missing, so PEFT's default init_r = %d applies, which does not fit: %v", cfg.InitR, err)
	}
	out, in := l.W.Dims()
	rInit := cfg.InitR
	if rInit > min(out, in) {
		return nil, rankErr(fmt.Errorf("peft: LoadAdapter %s: init_r = %d out of range [1, %d] for the %s weight of %s", c.File(), rInit, min(out, in), peft.ShapeOf(out, in), l.Name))
	}
	kept := keptOf(c, l.Name, rInit)
	if err := c.Err(); err != nil {
		return nil, rankErr(err)
	}
	if !r.Has(".lora_A") || !r.Has(".lora_B") || !r.Has(".lora_E") {
		return nil, r.Errorf("", "module %s needs lora_A, lora_B and lora_E", l.Name)
	}
	// Which of the r_init triplets the file holds.
	var idx []int
	for i := 0; i < rInit; i++ {
		if kept == nil || kept[i] {
			idx = append(idx, i)
		}
	}
	n := len(idx)
	q, err := r.Tensor(".lora_A", n, in, fmt.Sprintf("lora_A (Q) of %s with %d kept triplets", l.Name, n))
	if err != nil {
		return nil, rankErr(err)
	}
	p, err := r.Tensor(".lora_B", out, n, fmt.Sprintf("lora_B (P) of %s with %d kept triplets", l.Name, n))
	if err != nil {
		return nil, rankErr(err)
	}
	e, err := r.Tensor(".lora_E", n, 1, fmt.Sprintf("lora_E (λ) of %s with %d kept triplets", l.Name, n))
	if err != nil {
		return nil, rankErr(err)
	}
	if r.Has(".ranknum") { // PyTorch's shape is [1]
		what := "the ranknum of " + l.Name
		if _, err := r.Vector(".ranknum", 1, what); err != nil {
			if _, err2 := r.Tensor(".ranknum", 1, 1, what); err2 != nil {
				return nil, err
			}
		}
	}
	// full returns the rows×cols matrix with src's rows (byRow) or columns
	// in the places idx, zero elsewhere.
	full := func(rows, cols int, src *mat.Dense, byRow bool) *mat.Dense {
		d := mat.NewDense(rows, cols, nil)
		for j, i := range idx {
			if byRow {
				d.SetRow(i, src.RawRowView(j))
			} else {
				for k := 0; k < rows; k++ {
					d.Set(k, i, src.At(k, j))
				}
			}
		}
		return d
	}
	return fromTriplets(l.Name, r.Name, out, in, full(out, rInit, p, false), full(rInit, 1, e, true), full(rInit, in, q, true),
		kept, cfg.Alpha, cfg.Dropout, r.Rand)
}
