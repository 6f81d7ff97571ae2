package snella

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers SNELLA and saves and loads it. HuggingFace PEFT has
// no SNELLA, so the layout is gopeft's own: peft_type "GOPEFT_SNELLA", and
// for a module with weight W₀ (d×k)
//
//	base_model.model.<module>.snella_A.weight   A = [A₀ | A₁] (k×q)
//	base_model.model.<module>.snella_B.weight   B = [B₀ | B₁] (d×q)
//	base_model.model.<module>.snella_alpha      α, 1-D of length 1
//	base_model.model.<module>.snella_gamma      γ, 1-D of length 1
//	base_model.model.<module>.snella_beta       β, 1-D of length 1
//	base_model.model.<module>.snella_mask       M (d×k), 0 or 1
//
// with adapter_config.json's fields
//
//	q               int, the width of A and B (one for all modules)
//	kernel_scale    0.1, each head's kernel weight (only 0.1 is read)
//	target_modules  the adapted modules
//
// The mask is stored, not recomputed: the loaded adapter uses it until
// training (or the Allocator, or Refresh) recomputes it, so that its
// outputs are the saved adapter's exactly in F64, and a rounding of A or B
// in F32 or BF16 cannot move an entry across the mask's threshold. Each
// layer's κ is the mask's number of ones.

func init() {
	peft.Register(peft.Method{
		Name:    "SNELLA",
		Kind:    peft.AdapterMethod,
		Paper:   "Shen et al. 2025, Kernelized Sparse Fine-Tuning with Bi-level Parameter Competition for Vision Models, arXiv:2510.24037",
		Package: "github.com/gopeft/gopeft/peft/snella",
		Summary: "sparse ΔW merged from A (k×q), B (d×q) by a difference of distance kernels (high rank), plus α·softmax(ΔW/γ)+β; kept counts allocated across layers by importance",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_SNELLA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*SNELLA); return ok },
			Tensors:  []string{".snella_A.weight", ".snella_B.weight", ".snella_alpha", ".snella_gamma", ".snella_beta", ".snella_mask"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on q.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		if a.Q != as[0].Q {
			return fmt.Errorf("modules %s and %s differ in q (%d, %d): gopeft's SNELLA config has one q", w.Modules[0].Name, mi, as[0].Q, a.Q)
		}
		targets[i] = mi
		w.Put(mi, ".snella_A.weight", a.A.Value)
		w.Put(mi, ".snella_B.weight", a.B.Value)
		w.PutVector(mi, ".snella_alpha", a.Alpha.Value)
		w.PutVector(mi, ".snella_gamma", a.Gamma.Value)
		w.PutVector(mi, ".snella_beta", a.Beta.Value)
		w.Put(mi, ".snella_mask", a.mask)
	}
	sort.Strings(targets)
	w.Config["q"] = as[0].Q
	w.Config["kernel_scale"] = KernelScale
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's SNELLA adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	if !c.Has("q") {
		c.Errorf("q", "missing: gopeft writes it in every SNELLA adapter")
	}
	cfg := Config{Q: c.Rank("q", 2)}
	if s := c.Float("kernel_scale", KernelScale); s != KernelScale {
		c.Errorf("kernel_scale", "%v: gopeft's SNELLA has the fixed kernel weight %v", s, KernelScale)
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("q", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with q = %d", t, l.Name, peft.ShapeOf(d, k), cfg.Q)
	}
	a, err := r.Tensor(".snella_A.weight", k, cfg.Q, what("snella_A"))
	if err != nil {
		return nil, err
	}
	b, err := r.Tensor(".snella_B.weight", d, cfg.Q, what("snella_B"))
	if err != nil {
		return nil, err
	}
	var scalars [3]float64
	for i, s := range []string{"alpha", "gamma", "beta"} {
		v, err := r.Vector(".snella_"+s, 1, what("snella_"+s))
		if err != nil {
			return nil, err
		}
		scalars[i] = v.At(0, 0)
	}
	m, err := r.Tensor(".snella_mask", d, k, what("snella_mask"))
	if err != nil {
		return nil, err
	}
	for i, v := range m.RawMatrix().Data {
		if v != 0 && v != 1 {
			return nil, r.Errorf(".snella_mask", "entry %d (row %d, column %d) is %v: a mask holds 0 or 1", i, i/k, i%k, v)
		}
	}
	s, err := New(l.Name, r.Name, d, k, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	s.A.Value.Copy(a)
	s.B.Value.Copy(b)
	s.Alpha.Value.Set(0, 0, scalars[0])
	s.Gamma.Value.Set(0, 0, scalars[1])
	s.Beta.Value.Set(0, 0, scalars[2])
	s.setMask(m)
	return s, nil
}
