package soka

import (
	"fmt"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file registers SoKA and saves and loads it. HuggingFace PEFT has no
// SoKA, so the layout is gopeft's own: peft_type "GOPEFT_SOKA", and for a
// module with weight W (d×k), U_k (m1×n1), V_k (m2×n2) and r terms
//
//	base_model.model.<module>.soka_U.weight   (r·m1 × n1), U_0; U_1; … stacked
//	base_model.model.<module>.soka_V.weight   (r·m2 × n2), V_0; V_1; … stacked
//	base_model.model.<module>.soka_S.weight   [r], σ
//
// with adapter_config.json's fields r (the most common rank, the smaller on
// a tie), rank_pattern (module → rank, for the others) and target_modules.
// The factor shapes are read from the tensors (m1 = rows of soka_U / r).
// As with PiSSA, the adapter belongs to the residual weights W_res that Add
// left in the model: load it onto those (save the base model too).

func init() {
	peft.Register(peft.Method{
		Name:    "SoKA",
		Kind:    peft.AdapterMethod,
		Paper:   "Chong and Qu 2025, Singular Value Decomposition on Kronecker Adaptation for Large Language Model (SoKA), arXiv:2506.15251",
		Package: "github.com/gopeft/gopeft/peft/soka",
		Summary: "ΔW = Σ_k σ_k·U_k ⊗ V_k, W's principal Kronecker-SVD terms at init with the residual frozen; rank by energy and elbow",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_SOKA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*SoKA); return ok },
			Tensors:  []string{".soka_U.weight", ".soka_V.weight", ".soka_S.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes r, rank_pattern, target_modules and each module's tensors.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	count := map[int]int{}
	for _, a := range as {
		count[a.R]++
	}
	r := as[0].R
	for k, n := range count {
		if n > count[r] || (n == count[r] && k < r) {
			r = k
		}
	}
	targets := make([]string, len(as))
	pattern := map[string]int{}
	for i, a := range as {
		mi := w.Modules[i].Name
		targets[i] = mi
		if a.R != r {
			pattern[mi] = a.R
		}
		w.Put(mi, ".soka_U.weight", a.U.Value)
		w.Put(mi, ".soka_V.weight", a.V.Value)
		w.PutVector(mi, ".soka_S.weight", a.S.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = r
	w.Config["rank_pattern"] = pattern
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's adapter, checking the tensors against the
// config's rank and the module's weight.
func load(rd *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := rd.Config
	if !c.Has("r") {
		c.Errorf("r", "missing: gopeft writes it in every SoKA adapter")
	}
	r := c.Rank("r", 1)
	var n float64
	if c.ModuleValue("rank_pattern", l.Name, &n) {
		r = int(n)
		if n != float64(r) || n < 1 {
			c.Errorf("rank_pattern", "%v for module %s is not a rank ≥ 1", n, l.Name)
		}
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	what := func(t string) string {
		return fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", t, l.Name, peft.ShapeOf(d, k), r)
	}
	s, err := rd.Vector(".soka_S.weight", r, what("soka_S"))
	if err != nil {
		return nil, err
	}
	u, err := rd.Tensor(".soka_U.weight", -1, -1, what("soka_U"))
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, rd.Errorf(".soka_U.weight", "empty")
	}
	ur, n1 := u.Dims()
	m1 := ur / r
	if ur%r != 0 || d%m1 != 0 || k%n1 != 0 || m1 == 0 {
		return nil, rd.Errorf(".soka_U.weight", "shape (%d×%d) is not r = %d blocks U_k (m1×n1) with m1 dividing d = %d and n1 dividing k = %d of W %s", ur, n1, r, d, k, peft.ShapeOf(d, k))
	}
	m2, n2 := d/m1, k/n1
	if p := Terms(d, k, m1, n1); r > p {
		return nil, rd.Errorf(".soka_S.weight", "r = %d above the %d Kronecker terms of W %s with U_k (%d×%d)", r, p, peft.ShapeOf(d, k), m1, n1)
	}
	v, err := rd.Tensor(".soka_V.weight", r*m2, n2, fmt.Sprintf("soka_V of %s with soka_U (%d×%d): r = %d blocks V_k (%d×%d)", l.Name, ur, n1, r, m2, n2))
	if err != nil {
		return nil, err
	}
	return fromFactors(l.Name, rd.Name, u, v, s, m1, m2), nil
}
