package loldu

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers LoLDU and saves and loads it. HuggingFace PEFT has no
// LoLDU, so the layout is gopeft's own: peft_type "GOPEFT_LOLDU", and for a
// module with weight W (d×k)
//
//	base_model.model.<module>.loldu_L.weight   L_r (d×r), unit lower-trapezoidal
//	base_model.model.<module>.loldu_U.weight   U_r (r×k), unit upper-trapezoidal
//	base_model.model.<module>.loldu_z          z [r]
//	base_model.model.<module>.loldu_s          s [1]
//
// with adapter_config.json's fields
//
//	r, lora_alpha      r and α (one for all modules)
//	train_scale        whether s is trained
//	row_permutation    {"<module>": [Perm[0], …, Perm[d−1]], …}, P as in LDU
//	target_modules     the adapted modules
//
// The permutation goes into the JSON config, as SLTrain's support does,
// because gopeft writes every tensor in one floating-point dtype and BF16
// cannot hold row indices above 256 exactly. The update is relative to
// W_res, not to the pre-trained W: the file is meant for the model whose
// weights LoLDU rewrote, so save that base model too (peft.SaveModel).

func init() {
	peft.Register(peft.Method{
		Name:    "LoLDU",
		Kind:    peft.AdapterMethod,
		Paper:   "Shi et al. 2024, LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition for Parameter-Efficient Fine-Tuning, arXiv:2410.13618",
		Package: "github.com/gopeft/gopeft/peft/loldu",
		Summary: "W = W_res + s·P·L_r·diag(z)·U_r from the first r steps of W's pivoted LU, only z (r numbers per layer) trained",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_LOLDU",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*LoLDU); return ok },
			Tensors:  []string{".loldu_L.weight", ".loldu_U.weight", ".loldu_z", ".loldu_s"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r, α and TrainScale.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	a0, m0 := as[0], w.Modules[0].Name
	perms := map[string][]int{}
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		switch {
		case a.R != a0.R:
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): gopeft's LoLDU config has one r", m0, mi, a0.R, a.R)
		case a.Alpha != a0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): gopeft's LoLDU config has one lora_alpha", m0, mi, a0.Alpha, a.Alpha)
		case a.S.Trainable != a0.S.Trainable:
			return fmt.Errorf("modules %s and %s differ in TrainScale (%v, %v): gopeft's LoLDU config has one train_scale", m0, mi, a0.S.Trainable, a.S.Trainable)
		}
		targets[i] = mi
		perms[mi] = a.Perm
		w.Put(mi, ".loldu_L.weight", a.L)
		w.Put(mi, ".loldu_U.weight", a.U)
		w.PutVector(mi, ".loldu_z", a.Z.Value)
		w.PutVector(mi, ".loldu_s", a.S.Value)
	}
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":               a0.R,
		"lora_alpha":      a0.Alpha,
		"train_scale":     a0.S.Trainable,
		"row_permutation": perms,
		"target_modules":  targets,
	} {
		w.Config[k] = v
	}
	return nil
}

// permOf returns module's permutation from the row_permutation of r's
// config, decoded once per LoadAdapter call (kept in r.Load).
func permOf(r *peft.AdapterReader, module string) ([]int, error) {
	all, ok := r.Load["loldu.row_permutation"].(map[string]json.RawMessage)
	if !ok {
		all = map[string]json.RawMessage{}
		r.Config.Decode("row_permutation", &all)
		r.Load["loldu.row_permutation"] = all
	}
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	raw, ok := all[module]
	if !ok {
		return nil, r.Config.Errorf("row_permutation", "no entry for module %s, whose tensors the file holds", module)
	}
	var fs []float64
	if err := json.Unmarshal(raw, &fs); err != nil {
		return nil, r.Config.Errorf("row_permutation", "module %s: not a list of row indices", module)
	}
	perm := make([]int, len(fs))
	for i, f := range fs {
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, r.Config.Errorf("row_permutation", "module %s: entry %d is %v, not an integer", module, i, f)
		}
		perm[i] = int(f)
	}
	return perm, nil
}

// load rebuilds module l's LoLDU adapter from r, through FromFactors.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	for _, f := range []string{"r", "row_permutation"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every LoLDU adapter")
		}
	}
	cfg := Config{R: c.Rank("r", 1), Alpha: c.Alpha("lora_alpha", 0), TrainScale: c.Bool("train_scale", false)}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	perm, err := permOf(r, l.Name)
	if err != nil {
		return nil, err
	}
	if err := checkPerm(perm, d); err != nil {
		return nil, c.Errorf("row_permutation", "module %s, whose weight is %s: %v", l.Name, peft.ShapeOf(d, k), err)
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", t, l.Name, peft.ShapeOf(d, k), cfg.R)
	}
	lr, err := r.Tensor(".loldu_L.weight", d, cfg.R, what("loldu_L"))
	if err != nil {
		return nil, err
	}
	ur, err := r.Tensor(".loldu_U.weight", cfg.R, k, what("loldu_U"))
	if err != nil {
		return nil, err
	}
	z, err := r.Vector(".loldu_z", cfg.R, what("loldu_z"))
	if err != nil {
		return nil, err
	}
	s, err := r.Vector(".loldu_s", 1, what("loldu_s"))
	if err != nil {
		return nil, err
	}
	return FromFactors(l.Name, r.Name, lr, ur, perm, z, s.At(0, 0), cfg)
}
