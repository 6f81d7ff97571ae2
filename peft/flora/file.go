package flora

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers FLoRA and saves and loads it. HuggingFace PEFT has no
// FLoRA, so the layout is gopeft's own: peft_type "GOPEFT_FLORA", and for a
// module with mode dims (d_1, …, d_N) (its Kernel, or W's (out, in))
//
//	base_model.model.<module>.flora_G.weight    G_(1) (r_1 × r_2⋯r_N)
//	base_model.model.<module>.flora_U<k>.weight U_k (d_k × r_k), k = 1…N
//
// G is stored as its mode-1 unfolding, row-major in modes 2…N (the order
// of its N-d shape, so a reader reshapes it to (r_1, …, r_N) unchanged).
// adapter_config.json's fields:
//
//	ranks           {"<module>": [r_1, …, r_N], …}, every module, in W's
//	                mode order (out, in, …), not the reference code's
//	scale           s (one for all modules)
//	dropout         dropout on the adapter's input (one for all modules)
//	target_modules  the adapted modules

func init() {
	tensors := []string{".flora_G.weight"}
	for k := 1; k <= MaxModes; k++ {
		tensors = append(tensors, fmt.Sprintf(".flora_U%d.weight", k))
	}
	peft.Register(peft.Method{
		Name:    "FLoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Si, Wang, Yang et al. 2025 (ICLR), FLoRA: Low-Rank Core Space for N-dimension, arXiv:2405.14739",
		Package: "github.com/gopeft/gopeft/peft/flora",
		Summary: "Tucker update s·G ×₁ U_1 ⋯ ×_N U_N of an N-d weight (conv kernel or matrix), core G zero at init",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_FLORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*FLoRA); return ok },
			Tensors:  tensors,
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on s and dropout.
func save(w *peft.AdapterWriter) error {
	fs := As(w.Adapters)
	ranks := map[string][]int{}
	targets := make([]string, len(fs))
	for i, f := range fs {
		mi := w.Modules[i].Name
		if f.Scale != fs[0].Scale {
			return fmt.Errorf("modules %s and %s differ in scale (%g, %g): gopeft's FLoRA config has one scale", w.Modules[0].Name, mi, fs[0].Scale, f.Scale)
		}
		if f.Dropout != fs[0].Dropout {
			return fmt.Errorf("modules %s and %s differ in dropout (%g, %g): gopeft's FLoRA config has one dropout", w.Modules[0].Name, mi, fs[0].Dropout, f.Dropout)
		}
		targets[i] = mi
		ranks[mi] = f.Ranks()
		w.Put(mi, ".flora_G.weight", f.G.Value)
		for k, u := range f.U {
			w.Put(mi, fmt.Sprintf(".flora_U%d.weight", k+1), u.Value)
		}
	}
	sort.Strings(targets)
	w.Config["ranks"] = ranks
	w.Config["scale"] = fs[0].Scale
	w.Config["dropout"] = fs[0].Dropout
	w.Config["target_modules"] = targets
	return nil
}

// configField maps a Config field to its adapter_config.json field.
var configField = map[string]string{"R": "ranks", "Ranks": "ranks", "Scale": "scale", "Dropout": "dropout", "Kernel": "ranks"}

// load rebuilds module l's FLoRA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	c := r.Config
	var ranks map[string][]int
	if !c.Decode("ranks", &ranks) && c.Err() == nil {
		c.Errorf("ranks", "missing: gopeft writes it in every FLoRA adapter")
	}
	scale := c.Float("scale", 1)
	if scale <= 0 {
		c.Errorf("scale", "%v; want s > 0", scale)
	}
	cfg := Config{Scale: scale, Dropout: c.Prob("dropout", 0)}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	rk, ok := ranks[l.Name]
	if !ok {
		return nil, c.Errorf("ranks", "no entry for module %s", l.Name)
	}
	cfg.Ranks = rk
	if cfg.Ranks == nil {
		cfg.Ranks = []int{} // null: N = 0 modes, refused below
	}
	dims, err := Dims(l)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(l.Name, dims); err != nil {
		return nil, c.Errorf(configField[err.Field], "%s", strings.TrimPrefix(err.Msg, "peft: "))
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose modes are %s, with ranks %v", t, l.Name, modeStr(dims), rk)
	}
	rest := 1
	for _, v := range rk[1:] {
		rest *= v
	}
	g, err := r.Tensor(".flora_G.weight", rk[0], rest, what("flora_G"))
	if err != nil {
		return nil, err
	}
	f, err := New(l.Name, r.Name, dims, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	f.G.Value.Copy(g)
	for k, d := range dims {
		suffix := fmt.Sprintf(".flora_U%d.weight", k+1)
		u, err := r.Tensor(suffix, d, rk[k], what(suffix[1:len(suffix)-len(".weight")]))
		if err != nil {
			return nil, err
		}
		f.U[k].Value.Copy(u)
	}
	return f, nil
}
