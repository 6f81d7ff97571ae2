package wara

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers WaRA and saves and loads it. HuggingFace PEFT has no
// WaRA (its WaveFT, arXiv:2505.12532, is another method: sparse trainable
// wavelet coefficients), so the layout is gopeft's own: peft_type
// "GOPEFT_WARA", and for a module with weight W₀ (d×k), d′ and k′ d and k
// rounded up to even,
//
//	base_model.model.<module>.wara_A.weight   A (4r × k′/2): A_LL; A_LH; A_HL; A_HH by rows
//	base_model.model.<module>.wara_B.weight   B (d′/2 × 4r): B_LL B_LH B_HL B_HH by columns
//
// with adapter_config.json's fields
//
//	r               the rank of each subband's factors (one for all modules)
//	lora_alpha      α (one for all modules); s = α/r
//	wavelet         "haar", the only transform gopeft has (one level)
//	target_modules  the adapted modules

func init() {
	peft.Register(peft.Method{
		Name:    "WaRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Heidari et al. 2025, WaRA: Wavelet Low Rank Adaptation, arXiv:2506.24092",
		Package: "github.com/gopeft/gopeft/peft/wara",
		Summary: "W₀ + (α/r)·IDWT([B_LL·A_LL B_LH·A_LH; B_HL·A_HL B_HH·A_HH]), a rank-r pair per Haar subband, B zero at init: rank(ΔW) up to 4r for 2r·(d+k) numbers",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_WARA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*WaRA); return ok },
			Tensors:  []string{".wara_A.weight", ".wara_B.weight"},
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
		case a.R != a0.R:
			return fmt.Errorf("modules %s and %s differ in r (%d, %d): gopeft's WaRA config has one r", m0, mi, a0.R, a.R)
		case a.Alpha != a0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): gopeft's WaRA config has one lora_alpha", m0, mi, a0.Alpha, a.Alpha)
		}
		targets[i] = mi
		w.Put(mi, ".wara_A.weight", a.A.Value)
		w.Put(mi, ".wara_B.weight", a.B.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = a0.R
	w.Config["lora_alpha"] = a0.Alpha
	w.Config["wavelet"] = "haar"
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's WaRA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	for _, f := range []string{"r", "lora_alpha"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every WaRA adapter")
		}
	}
	cfg := Config{R: c.Rank("r", 1), Alpha: c.Alpha("lora_alpha", 1)}
	c.Require("wavelet", "gopeft's WaRA has only the one-level Haar transform", `"haar"`)
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		return nil, c.Errorf("lora_alpha", "0 would make ΔW zero (New reads α = 0 as α = r); gopeft never writes it")
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	dp, kp := Padded(d, k)
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", t, l.Name, peft.ShapeOf(d, k), cfg.R)
	}
	a, err := r.Tensor(".wara_A.weight", 4*cfg.R, kp/2, what("wara_A"))
	if err != nil {
		return nil, err
	}
	b, err := r.Tensor(".wara_B.weight", dp/2, 4*cfg.R, what("wara_B"))
	if err != nil {
		return nil, err
	}
	w, err := New(l.Name, r.Name, d, k, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	w.A.Value.Copy(a)
	w.B.Value.Copy(b)
	return w, nil
}
