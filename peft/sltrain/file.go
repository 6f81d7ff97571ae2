package sltrain

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file registers SLTrain and saves and loads it. HuggingFace PEFT has
// no SLTrain, so the layout is gopeft's own, with the names of the paper's
// SpLoRaLinear: peft_type "GOPEFT_SLTRAIN", and for a module with weight W
// (d×k)
//
//	base_model.model.<module>.lora_A.weight   A (r×k)
//	base_model.model.<module>.lora_B.weight   B (d×r)
//	base_model.model.<module>.sparse_value    s [N], S's values in Ω's order
//
// with adapter_config.json's fields
//
//	r, lora_alpha     r and α
//	sp_ratio          δ; every module's Ω has ⌊δ·d·k⌋ entries
//	keep_base         true: the update is added to W₀ (KeepBase)
//	sparse_index      {"<module>": [Ω's flat indices i·k + j, increasing], …}
//	target_modules    the adapted modules
//
// Ω goes into the JSON config, not the safetensors file, because gopeft
// writes every tensor in one floating-point dtype and F16 or BF16 cannot
// hold indices above 2048 or 256 exactly. An adapter file holds only the
// reparameterized layers: after pretraining, save the rest of the model
// (biases, embeddings, …) with peft.SaveModel.

func init() {
	peft.Register(peft.Method{
		Name:    "SLTrain",
		Kind:    peft.AdapterMethod,
		Paper:   "Han et al. 2024, SLTrain: a sparse plus low-rank approach for parameter and memory efficient pretraining, NeurIPS 2024, arXiv:2406.02214",
		Package: "github.com/gopeft/gopeft/peft/sltrain",
		Summary: "W = (α/r)·B·A + S trained from scratch in place of W₀, S on a fixed random support of ⌊δ·d·k⌋ entries; with KeepBase added to a frozen W₀",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_SLTRAIN",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*SLTrain); return ok },
			Tensors:  []string{".lora_A.weight", ".lora_B.weight", ".sparse_value"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on what the config sets once for all (r, α, δ, KeepBase).
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	a0, m0 := as[0], w.Modules[0].Name
	indices := map[string][]int{}
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		switch {
		case a.R != a0.R:
			return fmt.Errorf("modules %s and %s differ in rank (%d, %d): gopeft's SLTrain config has one r", m0, mi, a0.R, a.R)
		case a.Alpha != a0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): gopeft's SLTrain config has one lora_alpha", m0, mi, a0.Alpha, a.Alpha)
		case a.Delta != a0.Delta:
			return fmt.Errorf("modules %s and %s differ in δ (%g, %g): gopeft's SLTrain config has one sp_ratio", m0, mi, a0.Delta, a.Delta)
		case a.KeepBase != a0.KeepBase:
			return fmt.Errorf("modules %s and %s differ in KeepBase (%v, %v): gopeft's SLTrain config has one keep_base", m0, mi, a0.KeepBase, a.KeepBase)
		}
		targets[i] = mi
		indices[mi] = a.Support()
		w.Put(mi, ".lora_A.weight", a.A.Value)
		w.Put(mi, ".lora_B.weight", a.B.Value)
		w.PutVector(mi, ".sparse_value", a.S.Value)
	}
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":              a0.R,
		"lora_alpha":     a0.Alpha,
		"sp_ratio":       a0.Delta,
		"keep_base":      a0.KeepBase,
		"sparse_index":   indices,
		"target_modules": targets,
	} {
		w.Config[k] = v
	}
	return nil
}

// readConfig reads the config fields every module shares.
func readConfig(c *peft.AdapterConfig) Config {
	for _, f := range []string{"r", "sp_ratio", "sparse_index"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every SLTrain adapter")
		}
	}
	cfg := Config{
		R:        c.Rank("r", 1),
		Alpha:    c.Alpha("lora_alpha", 0),
		Delta:    c.Float("sp_ratio", DefaultDelta),
		KeepBase: c.Bool("keep_base", false),
	}
	if !(cfg.Delta > 0 && cfg.Delta < 1) {
		c.Errorf("sp_ratio", "%v is outside (0, 1)", cfg.Delta)
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	return cfg
}

// supportOf returns module's Ω from the sparse_index of r's file, which is
// decoded once per LoadAdapter call (kept in r.Load), each module's list
// when its module loads.
func supportOf(r *peft.AdapterReader, module string) ([]int, error) {
	idx, ok := r.Load["sltrain.sparse_index"].(map[string]json.RawMessage)
	if !ok {
		idx = map[string]json.RawMessage{}
		r.Config.Decode("sparse_index", &idx)
		r.Load["sltrain.sparse_index"] = idx
	}
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	raw, ok := idx[module]
	if !ok {
		return nil, r.Config.Errorf("sparse_index", "no entry for module %s, whose tensors the file holds", module)
	}
	var fs []float64
	if err := json.Unmarshal(raw, &fs); err != nil {
		return nil, r.Config.Errorf("sparse_index", "module %s: not a list of indices", module)
	}
	omega := make([]int, len(fs))
	for t, f := range fs {
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, r.Config.Errorf("sparse_index", "module %s: Ω[%d] = %v is not an integer index", module, t, f)
		}
		omega[t] = int(f)
	}
	return omega, nil
}

// load rebuilds module l's SLTrain adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	cfg := readConfig(r.Config)
	omega, err := supportOf(r, l.Name)
	if err != nil {
		return nil, err
	}
	if err := peft.CheckSupport(omega, d, k); err != nil {
		return nil, r.Config.Errorf("sparse_index", "module %s: %v", l.Name, err)
	}
	if n := NonZeros(cfg.Delta, d, k); len(omega) != n {
		return nil, r.Config.Errorf("sparse_index", "module %s has %d entries, but sp_ratio δ = %v gives ⌊δ·d·k⌋ = %d for its weight %s",
			l.Name, len(omega), cfg.Delta, n, peft.ShapeOf(d, k))
	}
	a, err := r.Tensor(".lora_A.weight", -1, k, fmt.Sprintf("lora_A of %s, whose weight is %s", l.Name, peft.ShapeOf(d, k)))
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, r.Errorf(".lora_A.weight", "rank 0")
	}
	if rank, _ := a.Dims(); rank != cfg.R {
		return nil, r.Errorf(".lora_A.weight", "rank %d, but the config's \"r\" is %d", rank, cfg.R)
	}
	b, err := r.Tensor(".lora_B.weight", d, cfg.R, fmt.Sprintf("lora_B of %s with r = %d", l.Name, cfg.R))
	if err != nil {
		return nil, err
	}
	s, err := r.Vector(".sparse_value", len(omega), fmt.Sprintf("sparse_value of %s, one value per entry of its sparse_index", l.Name))
	if err != nil {
		return nil, err
	}
	alpha := cfg.Alpha
	ad, err := New(l.Name, r.Name, d, k, omega, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	ad.Alpha = alpha // as the file has it, 0 included
	ad.A.Value.Copy(a)
	ad.B.Value.Copy(b)
	ad.S.Value.Copy(s)
	return ad, nil
}
