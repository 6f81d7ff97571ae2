package abmll

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// This file registers ABMLL and saves and loads it. HuggingFace PEFT has
// no ABMLL, so the layout is gopeft's own: peft_type "GOPEFT_ABMLL", and
// for a module with weight W₀ (d×k)
//
//	base_model.model.<module>.abmll_mu_A.weight      A_μ (r×k)
//	base_model.model.<module>.abmll_mu_B.weight      B_μ (d×r)
//	base_model.model.<module>.abmll_sigma_A.weight   A_σ (r×k)
//	base_model.model.<module>.abmll_sigma_B.weight   B_σ (d×r)
//
// with adapter_config.json's fields r and log_sigma0 (c, one of each for
// all modules) and target_modules. The file holds θ (or a task's φ, if
// saved after Adapt); the noise ε is not saved, and a loaded adapter has
// ε = 0.

func init() {
	peft.Register(peft.Method{
		Name:    "ABMLL",
		Kind:    peft.AdapterMethod,
		Paper:   "Zhang, Snell and Griffiths 2025, Amortized Bayesian Meta-Learning for Low-Rank Adaptation of Large Language Models, arXiv:2508.14285",
		Package: "github.com/gopeft/gopeft/peft/abmll",
		Summary: "a Gaussian over ΔW, μ = B_μ·A_μ and log σ = c + B_σ·A_σ, sampled as μ + σ⊙ε; θ meta-learned over tasks, φ_i reached by a few inner steps (MetaTrain, Adapt)",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_ABMLL",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*ABMLL); return ok },
			Tensors:  []string{".abmll_sigma_A.weight", ".abmll_sigma_B.weight", ".abmll_mu_A.weight", ".abmll_mu_B.weight"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on r and c.
func save(w *peft.AdapterWriter) error {
	as := As(w.Adapters)
	targets := make([]string, len(as))
	for i, a := range as {
		mi := w.Modules[i].Name
		if a.R != as[0].R || a.C != as[0].C {
			return fmt.Errorf("modules %s and %s differ in r (%d, %d) or log_sigma0 (%g, %g): gopeft's ABMLL config has one of each",
				w.Modules[0].Name, mi, as[0].R, a.R, as[0].C, a.C)
		}
		targets[i] = mi
		w.Put(mi, ".abmll_mu_A.weight", a.MuA.Value)
		w.Put(mi, ".abmll_mu_B.weight", a.MuB.Value)
		w.Put(mi, ".abmll_sigma_A.weight", a.SigmaA.Value)
		w.Put(mi, ".abmll_sigma_B.weight", a.SigmaB.Value)
	}
	sort.Strings(targets)
	w.Config["r"] = as[0].R
	w.Config["log_sigma0"] = as[0].C
	w.Config["target_modules"] = targets
	return nil
}

// load rebuilds module l's ABMLL adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	c := r.Config
	for _, f := range []string{"r", "log_sigma0"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every ABMLL adapter")
		}
	}
	cfg := Config{R: c.Rank("r", 1)}
	logSigma0 := c.Float("log_sigma0", 0)
	c.Has("target_modules") // checked against the model by LoadAdapter
	if err := c.Err(); err != nil {
		return nil, err
	}
	cfg.SigmaInit = math.Exp(logSigma0)
	if cfg.SigmaInit == 0 || math.IsInf(cfg.SigmaInit, 0) {
		return nil, c.Errorf("log_sigma0", "%g gives σ₀ = %g; want a finite σ₀ > 0", logSigma0, cfg.SigmaInit)
	}
	if err := cfg.Check(l.Name, d, k); err != nil {
		return nil, c.Errorf("r", "%s", strings.TrimPrefix(err.Error(), "peft: "))
	}
	a, err := New(l.Name, r.Name, d, k, cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	a.C = logSigma0
	for _, t := range []struct {
		suffix     string
		rows, cols int
		dst        *peft.Tensor
	}{
		{".abmll_mu_A.weight", cfg.R, k, a.MuA},
		{".abmll_mu_B.weight", d, cfg.R, a.MuB},
		{".abmll_sigma_A.weight", cfg.R, k, a.SigmaA},
		{".abmll_sigma_B.weight", d, cfg.R, a.SigmaB},
	} {
		what := fmt.Sprintf("%s of %s, whose weight is %s, with r = %d", strings.TrimSuffix(strings.TrimPrefix(t.suffix, "."), ".weight"), l.Name, peft.ShapeOf(d, k), cfg.R)
		v, err := r.Tensor(t.suffix, t.rows, t.cols, what)
		if err != nil {
			return nil, err
		}
		t.dst.Value.Copy(v)
	}
	return a, nil
}
