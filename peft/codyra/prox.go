package codyra

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
)

// Defaults of ProxConfig, from the reference code (main.py and
// runner_codyra.sh): κ reaches 0.005 (runner_codyra.sh; main.py's own
// default is 7e-4) in 50 stages, after a dense phase of half the steps.
const (
	DefaultMaxKappa  = 0.005
	DefaultStages    = 50
	DefaultDenseFrac = 0.5
)

// ProxConfig configures NewProx.
type ProxConfig struct {
	Steps     int     // the training run's steps T, ≥ 1 (TrainConfig.Steps)
	MaxKappa  float64 // κ_max ≥ 0; DefaultMaxKappa if 0
	Stages    int     // number of κ values from 0 to κ_max, ≥ 1; DefaultStages if 0
	DenseFrac float64 // fraction of steps before the first proximal step, in [0, 1); DefaultDenseFrac if 0 (give a tiny positive number for none)
	// TraceEvery records the ranks every this many steps (and at the
	// last); 0 records them only where κ changes and at the last step.
	TraceEvery int
}

// Prox is the peft.Hook that makes CoDyRA's gates sparse: after each
// optimizer step t past the dense phase it applies SoftThreshold with κ(t)
// (see Kappa) to every gate of its adapters. It also records each
// adapter's rank as training goes (Trace). Give it to
// peft.TrainConfig.Hooks; a new task (NextTask) needs a new Prox only if
// the number of steps changes, since NextTask keeps the adapters.
type Prox struct {
	Adapters []*CoDyRA
	Config   ProxConfig

	trace peft.RankTrace
	last  float64 // κ of the previous step, for the trace
}

var _ peft.Hook = (*Prox)(nil)

// NewProx returns the proximal hook of ads with cfg's schedule (its zero
// fields set to the defaults). It is an error, naming the field and its
// value, if cfg is out of range, or if ads is empty.
func NewProx(ads []*CoDyRA, cfg ProxConfig) (*Prox, error) {
	if cfg.MaxKappa == 0 {
		cfg.MaxKappa = DefaultMaxKappa
	}
	if cfg.Stages == 0 {
		cfg.Stages = DefaultStages
	}
	if cfg.DenseFrac == 0 {
		cfg.DenseFrac = DefaultDenseFrac
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: CoDyRA Prox: ProxConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case len(ads) == 0:
		return nil, fmt.Errorf("peft: CoDyRA Prox: no adapters (add CoDyRA first, then pass codyra.Of(model))")
	case cfg.Steps < 1:
		return nil, bad("Steps", cfg.Steps, "≥ 1, the training run's steps")
	case !(cfg.MaxKappa >= 0) || math.IsInf(cfg.MaxKappa, 0):
		return nil, bad("MaxKappa", cfg.MaxKappa, "a finite κ_max ≥ 0")
	case cfg.Stages < 1:
		return nil, bad("Stages", cfg.Stages, "≥ 1")
	case !(cfg.DenseFrac >= 0 && cfg.DenseFrac < 1):
		return nil, bad("DenseFrac", cfg.DenseFrac, "in [0, 1)")
	case cfg.TraceEvery < 0:
		return nil, bad("TraceEvery", cfg.TraceEvery, "≥ 0")
	}
	p := &Prox{Adapters: ads, Config: cfg, last: -1}
	for _, a := range ads {
		p.trace.Modules = append(p.trace.Modules, a.module)
		p.trace.Ranks = append(p.trace.Ranks, nil)
	}
	return p, nil
}

// SoftThreshold sets each g_i to sign(g_i)·max(|g_i| − κ, 0): the
// proximal operator of κ·‖g‖₁. Exactly the entries with |g_i| ≤ κ become
// zero; the others move κ towards zero. It panics if κ < 0.
func SoftThreshold(g []float64, kappa float64) {
	if !(kappa >= 0) {
		panic(peft.ArgError{Op: "codyra.SoftThreshold", Msg: fmt.Sprintf("κ = %v; want κ ≥ 0", kappa)})
	}
	for i, v := range g {
		switch {
		case v > kappa:
			g[i] = v - kappa
		case v < -kappa:
			g[i] = v + kappa
		default:
			g[i] = 0
		}
	}
}

// Kappa returns κ after optimizer step t (from 1), and whether the
// proximal step runs then, following the reference code's schedule with
// i = t − 1, D = DenseFrac·T, S stages and stage length L = ⌊(T − D)/S⌋:
//
//	the step runs iff i > D (none during the dense phase);
//	κ = κ_max·min(c, S − 1)/(S − 1), c = #{j : D ≤ j ≤ i, j mod L = 0}
//
// so κ climbs from 0 in S equal steps to κ_max (κ = κ_max throughout if
// S = 1). Where the reference leaves κ at 0 for good when L = 0 (fewer
// steps than stages), gopeft takes L = 1.
func (p *Prox) Kappa(t int) (kappa float64, on bool) {
	cfg := p.Config
	i := float64(t - 1)
	d := cfg.DenseFrac * float64(cfg.Steps)
	if i <= d {
		return 0, false
	}
	if cfg.Stages == 1 {
		return cfg.MaxKappa, true
	}
	l := max(1, int(math.Floor((float64(cfg.Steps)-d)/float64(cfg.Stages))))
	first := int(math.Ceil(d)) // the first j ≥ D
	// c = number of multiples of l in [first, i].
	c := floorDiv(t-1, l) - floorDiv(first-1, l)
	c = min(c, cfg.Stages-1)
	return cfg.MaxKappa * float64(c) / float64(cfg.Stages-1), true
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Regularizer returns nil: the sparsity acts through the proximal step.
func (p *Prox) Regularizer(int) *peft.Tensor { return nil }

// AfterBackward does nothing.
func (p *Prox) AfterBackward(int) {}

// AfterStep applies the proximal step of step t to every gate and records
// the ranks.
func (p *Prox) AfterStep(t int) error {
	kappa, on := p.Kappa(t)
	if on {
		for _, a := range p.Adapters {
			SoftThreshold(a.G.Value.RawRowView(0), kappa)
		}
	}
	every := p.Config.TraceEvery
	if (every > 0 && t%every == 0) || (every == 0 && kappa != p.last) || t == p.Config.Steps {
		p.record(t)
	}
	p.last = kappa
	return nil
}

func (p *Prox) record(t int) {
	if n := len(p.trace.Steps); n > 0 && p.trace.Steps[n-1] == t {
		return
	}
	total := 0
	p.trace.Steps = append(p.trace.Steps, t)
	for i, a := range p.Adapters {
		r := a.Rank()
		total += r
		p.trace.Ranks[i] = append(p.trace.Ranks[i], r)
	}
	p.trace.Budget = append(p.trace.Budget, total)
}

// Trace returns the ranks recorded so far: each adapter's number of
// nonzero gates at the recorded steps, and their sum as the Budget (viz's
// rank heatmap reads it). The steps restart from 1 with each training run;
// Reset clears the record between tasks.
func (p *Prox) Trace() *peft.RankTrace { return p.trace.Clone() }

// Reset clears the recorded trace, for the next task's run.
func (p *Prox) Reset() {
	p.trace.Steps, p.trace.Budget = nil, nil
	for i := range p.trace.Ranks {
		p.trace.Ranks[i] = nil
	}
	p.last = -1
}

// Ranks returns each adapter's current rank, by module name.
func (p *Prox) Ranks() map[string]int {
	out := map[string]int{}
	for _, a := range p.Adapters {
		out[a.module] = a.Rank()
	}
	return out
}
