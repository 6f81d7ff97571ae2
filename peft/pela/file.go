package pela

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file registers PELA and saves and loads it. HuggingFace PEFT has no
// PELA, so the layout is gopeft's own: peft_type "GOPEFT_PELA", and for a
// module with weight W (d×k) compressed to rank r
//
//	base_model.model.<module>.pela_L.weight   L (d×r)
//	base_model.model.<module>.pela_R.weight   R (r×k)
//
// with adapter_config.json's fields compression_ratio (c, or 0 if the rank
// was given), rank_pattern ({"<module>": r, …}, keys as regular
// expressions matching the whole module name, as PEFT's) and
// target_modules. The factors replace W, so the file does not depend on
// the base weights (the biases are the base model's).

func init() {
	peft.Register(peft.Method{
		Name:    "PELA",
		Kind:    peft.AdapterMethod,
		Paper:   "Guo, Wang and Kankanhalli 2024, PELA: Learning Parameter-Efficient Models with Low-Rank Approximation, CVPR 2024, arXiv:2310.10700",
		Package: "github.com/gopeft/gopeft/peft/pela",
		Summary: "W replaced by L·R, its best rank-r approximation with r = ⌊d·k/(c·(d+k))⌋ (truncated SVD), L and R then trained by distillation from the original model (Distill)",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_PELA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*PELA); return ok },
			Tensors:  []string{".pela_L.weight", ".pela_R.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on c.
func save(w *peft.AdapterWriter) error {
	ps := As(w.Adapters)
	targets := make([]string, len(ps))
	ranks := map[string]int{}
	for i, p := range ps {
		mi := w.Modules[i].Name
		if p.C != ps[0].C {
			return fmt.Errorf("modules %s and %s differ in the compression ratio (%g, %g): gopeft's PELA config has one compression_ratio", w.Modules[0].Name, mi, ps[0].C, p.C)
		}
		targets[i] = mi
		ranks[regexp.QuoteMeta(mi)] = p.rank
		w.Put(mi, ".pela_L.weight", p.L.Value)
		w.Put(mi, ".pela_R.weight", p.R.Value)
	}
	sort.Strings(targets)
	w.Config["compression_ratio"] = ps[0].C
	w.Config["rank_pattern"] = ranks
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's PELA adapter from r.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	for _, f := range []string{"compression_ratio", "rank_pattern"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every PELA adapter")
		}
	}
	ratio := c.Float("compression_ratio", 0)
	var rank int
	if !c.ModuleValue("rank_pattern", l.Name, &rank) && c.Err() == nil {
		c.Errorf("rank_pattern", "no entry for module %s, whose tensors the file holds", l.Name)
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	cfg := Config{R: rank}
	if ratio != 0 {
		cfg = Config{C: ratio}
	}
	want, err := cfg.Rank(l.Name, d, k)
	if err != nil {
		return nil, c.Errorf("compression_ratio", "%v", err)
	}
	if want != rank {
		return nil, c.Errorf("rank_pattern", "module %s: rank %d, but compression_ratio %g gives %d for W %s", l.Name, rank, ratio, want, peft.ShapeOf(d, k))
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", t, l.Name, peft.ShapeOf(d, k), rank)
	}
	lf, err := r.Tensor(".pela_L.weight", d, rank, what("pela_L"))
	if err != nil {
		return nil, err
	}
	rf, err := r.Tensor(".pela_R.weight", rank, k, what("pela_R"))
	if err != nil {
		return nil, err
	}
	p := fromFactors(l.Name, r.Name, lf, rf)
	p.C = ratio
	return p, nil
}
