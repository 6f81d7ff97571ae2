package maestro

import (
	"fmt"
	"math/rand"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file registers Maestro and saves and loads its layers. HuggingFace
// PEFT has no Maestro, so the layout is gopeft's own: peft_type
// "GOPEFT_MAESTRO", and for a module with weight W₀ (out×in) at width k
//
//	base_model.model.<module>.maestro_U.weight   U_{:k} (out×k)
//	base_model.model.<module>.maestro_V.weight   V_{:k} (in×k)
//
// with adapter_config.json's fields r (the largest width among the modules;
// each module's own is its tensors') and target_modules. Only the kept
// components are written, so a loaded layer starts at K = k. The file
// replaces the modules' weights (W = U·Vᵀ, the module's bias kept), so it
// holds the whole layer, not a change to it; the controller's λ, threshold
// and interval are training settings and are not saved.

func init() {
	peft.Register(peft.Method{
		Name:    "Maestro",
		Kind:    peft.AdapterMethod,
		Paper:   "Horváth, Laskaridis, Rajput and Wang 2024, Maestro: Uncovering Low-Rank Structures via Trainable Decomposition, arXiv:2308.14929",
		Package: "github.com/gopeft/gopeft/peft/maestro",
		Summary: "W₀ replaced by U·Vᵀ from its SVD (U = P√Σ, V = Q√Σ), trained with ordered dropout over the width, a hierarchical group lasso and progressive truncation",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_MAESTRO",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*Layer); return ok },
			Tensors:  []string{".maestro_U.weight", ".maestro_V.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the first k columns of each layer's U and V.
func save(w *peft.AdapterWriter) error {
	ls := As(w.Adapters)
	targets := make([]string, len(ls))
	r := 0
	for i, l := range ls {
		mi := w.Modules[i].Name
		out, _ := l.U.Dims()
		in, _ := l.V.Dims()
		targets[i] = mi
		w.Put(mi, ".maestro_U.weight", mat.DenseCopyOf(l.U.Value.Slice(0, out, 0, l.width)))
		w.Put(mi, ".maestro_V.weight", mat.DenseCopyOf(l.V.Value.Slice(0, in, 0, l.width)))
		r = max(r, l.width)
	}
	sort.Strings(targets)
	w.Config["r"] = r
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's Maestro layer at the width its tensors hold.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	out, in := l.W.Dims()
	c := r.Config
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every Maestro adapter")
	}
	rmax := c.Rank("r", 1)
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	u, err := r.Tensor(".maestro_U.weight", out, -1, fmt.Sprintf("maestro_U of %s, whose weight is %s", l.Name, peft.ShapeOf(out, in)))
	if err != nil {
		return nil, err
	}
	_, k := u.Dims()
	if k < 1 || k > min(out, in, rmax) {
		return nil, r.Errorf(".maestro_U.weight", "width %d out of range for W %s and r = %d: want 1 ≤ k ≤ %d", k, peft.ShapeOf(out, in), rmax, min(out, in, rmax))
	}
	v, err := r.Tensor(".maestro_V.weight", in, k, fmt.Sprintf("maestro_V of %s, whose weight is %s, at U's width %d", l.Name, peft.ShapeOf(out, in), k))
	if err != nil {
		return nil, err
	}
	return FromFactors(l.Name, r.Name, u, v, rand.New(rand.NewSource(r.Rand.Int63()))), nil
}
