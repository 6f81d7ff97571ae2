// Package eva is EVA, Explained Variance Adaptation: LoRA whose A is
// initialized from the principal directions of each layer's inputs, with
// the ranks redistributed across layers by the variance they explain. Its
// adapters are plain *lora.LoRA, trained, merged and saved as LoRA.
//
// EVA (Paischer, Hauzenberger, Schmied, Alkin, Deisenroth and Hochreiter,
// 2024, "One Initialization to Rule them All: Fine-tuning via Explained
// Variance Adaptation", arXiv:2410.07170). For each target layer with
// weight W₀ (d×k) and inputs x (k) drawn from the fine-tuning data, EVA
// runs a PCA of the inputs (mean-centred, as PEFT's incremental PCA):
//
//	X (N×k) the layer's input rows over the batches seen, μ (1×k) their mean
//	S = (X − 1μ)ᵀ(X − 1μ) = V·diag(λ)·Vᵀ   (k×k), λ₁ ≥ λ₂ ≥ … ≥ 0
//	ratio_i = λ_i / Σ_j λ_j                 explained variance ratio
//
// and sets, with r_l the layer's rank after redistribution,
//
//	A = V[:, :r_l]ᵀ  (r_l×k), so A·Aᵀ = I    B = 0 (d×r_l)
//	α_l = α·r_l/r  (PEFT's adjust_scaling_factors), so s = α_l/r_l = α/r
//
// Redistribution: with L target layers and rank r, the budget is L·r. Each
// layer offers its first c_l = min(⌊ρ·r⌋, min(d, k)) ratios; the L·r
// largest of all those, across layers, are kept, and r_l counts layer l's
// (a global greedy: the allocation that explains the most variance in sum
// under Σ r_l = L·r and r_l ≤ c_l ≤ ρ·r). A layer given r_l = 0 gets no
// adapter, as in PEFT. B = 0 makes the adapted model the base model at
// init; unlike PiSSA the base weights are not changed.
//
// The PCA is computed over batches drawn from the data, as PEFT does,
// until it has converged: after each batch a layer's first c_l principal
// directions are compared with the previous batch's, and direction i has
// converged when |cos(v_i, v_i′)| ≥ τ. A layer is done when its first r_l
// directions (for the current allocation) have converged; its inputs are
// then no longer added, and are added again if a later allocation gives it
// a direction that has not converged. Fitting stops when every layer is
// done, and is an error after MaxBatches batches.
//
// Defaults (PEFT's EvaConfig): ρ = 2, τ = 0.99, no whitening, scaling
// adjusted. With Whiten, row i of A is divided by √s_i, s_i = √λ_i the i-th
// singular value of the centred inputs, as PEFT does (A·Aᵀ is then
// diagonal, not I).
//
// Where gopeft departs from PEFT's eva.py, and why:
//   - PEFT updates a truncated incremental PCA (Ross et al.'s algorithm,
//     keeping c_l components and a randomized SVD per batch). gopeft keeps
//     the exact scatter matrix S (k×k) and its running mean, merged batch
//     by batch (Chan et al.'s pairwise update), and takes its eigenvectors:
//     the exact PCA of every row seen, deterministic, at k² memory per
//     layer, which is small for gopeft's models.
//   - PEFT's cosine similarity is signed, and sklearn-style sign fixing
//     keeps the sign stable. gopeft compares |cos|, as a direction and its
//     negation give the same LoRA up to the sign of A, and makes the
//     largest entry of each final direction positive.
//   - A direction with no variance (λ_i ≤ 1e-12·Σλ) counts as converged:
//     any unit vector orthogonal to the others explains the same nothing,
//     and the eigen-solver's choice among them need not settle.
//   - The per-layer cap is ⌊ρ·r⌋, where PEFT rounds ρ·r half to even, so
//     that r_l ≤ ρ·r holds as the paper states (the two agree whenever ρ·r
//     is a whole number, as at the default ρ = 2), and it is also capped by
//     min(d, k), the largest rank a gopeft LoRA holds.
//   - PEFT runs one PCA for layers whose inputs are equal (q, k and v of an
//     attention block) and masks padded or label-masked tokens; gopeft runs
//     one PCA per layer and uses every input row (its batches have no
//     padding). The allocation is the same either way.
//
// gopeft has no forward hooks: Fit captures each target layer's input with
// a temporary adapter (named "eva-capture") attached to the layer, which
// records x and passes the output through the layer's active adapter, if
// any, unchanged; it is detached, and the active adapter restored, before
// Fit returns.
//
// Files: the adapters are *lora.LoRA, so SaveAdapter writes them in PEFT's
// LORA layout, the per-layer ranks and α in rank_pattern and alpha_pattern,
// and PEFT loads them as LoRA (EVA's init is in the weights).
package eva

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "EVA",
		Kind:    peft.AdapterMethod,
		Paper:   "Paischer et al. 2024, One Initialization to Rule them All: Fine-tuning via Explained Variance Adaptation, arXiv:2410.07170",
		Package: "github.com/gopeft/gopeft/peft/eva",
		Summary: "LoRA with A = the top principal directions of each layer's inputs (B = 0), ranks redistributed across layers by explained variance",
		// nil: the adapters are *lora.LoRA, which LoRA's format saves and
		// loads (r_l and α_l in rank_pattern and alpha_pattern).
		Format: nil,
	})
}

// Defaults of Config's zero fields.
const (
	DefaultRho        = 2.0
	DefaultTau        = 0.99
	DefaultBatchSize  = 16
	DefaultMaxBatches = 200
)

// Config configures Fit and Add.
type Config struct {
	R       int      // rank r: the budget is L·r over the L targets; 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // LoRA dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α_l/√r_l
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the batches drawn from the data and the dropout masks

	Rho float64 // ρ ≥ 1: a layer's rank is at most ⌊ρ·r⌋; 0 means 2
	Tau float64 // τ in (0, 1]: a direction has converged at |cos| ≥ τ; 0 means 0.99
	// Whiten divides row i of A by √s_i, s_i the i-th singular value of
	// the layer's centred inputs (PEFT's whiten).
	Whiten bool
	// FixedAlpha keeps α on every layer; by default α_l = α·r_l/r (PEFT's
	// adjust_scaling_factors, on by default), so every layer scales by α/r.
	FixedAlpha bool
	BatchSize  int // examples (sequences for text) per batch; 0 means 16
	MaxBatches int // batches drawn before Fit gives up; 0 means 200
}

func (cfg Config) withDefaults() Config {
	if cfg.Rho == 0 {
		cfg.Rho = DefaultRho
	}
	if cfg.Tau == 0 {
		cfg.Tau = DefaultTau
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaxBatches == 0 {
		cfg.MaxBatches = DefaultMaxBatches
	}
	return cfg
}

// check returns an error naming the field and its value if cfg (with
// defaults) is out of range, and for a module if r, α or dropout does not
// fit it.
func (cfg Config) check(mods []*peft.Linear) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: EVA: %s = %v; want %s", field, v, want)
	}
	switch {
	case !(cfg.Rho >= 1) || math.IsInf(cfg.Rho, 0):
		return bad("Rho", cfg.Rho, "a finite ρ ≥ 1")
	case !(cfg.Tau > 0 && cfg.Tau <= 1):
		return bad("Tau", cfg.Tau, "τ in (0, 1]")
	case cfg.BatchSize < 1:
		return bad("BatchSize", cfg.BatchSize, "≥ 1 (0: 16)")
	case cfg.MaxBatches < 2:
		return bad("MaxBatches", cfg.MaxBatches, "≥ 2, as convergence compares two batches (0: 200)")
	}
	lc := cfg.loraConfig()
	for _, l := range mods {
		d, k := l.W.Dims()
		if err := lc.Check("EVA", l.Name, d, k); err != nil {
			return err
		}
		if m := l.Merged(); m != "" {
			return fmt.Errorf("peft: EVA on %s: adapter %q is merged; unmerge it first (EVA reads the layer's input through a temporary adapter)", l.Name, m)
		}
	}
	return nil
}

func (cfg Config) loraConfig() lora.Config {
	return lora.Config{R: cfg.R, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA}
}

// Cap returns c = min(⌊ρ·r⌋, min(d, k)), the most components a layer with
// weight (d×k) may get.
func Cap(rho float64, r, d, k int) int {
	return min(int(math.Floor(rho*float64(r)+1e-9)), min(d, k))
}

// Layer is what Fit found for one target layer.
type Layer struct {
	Module string
	D, K   int // the layer's weight is (d×k)
	// Rank is r_l, the layer's rank after redistribution (0: no adapter).
	Rank int
	// Cap is c_l = min(⌊ρ·r⌋, min(d, k)), the most it could get.
	Cap int
	// Variance holds λ_i/(N − 1), the variance of the inputs along each
	// principal direction, all k of them, descending: the layer's input
	// spectrum.
	Variance []float64
	// Ratio holds the explained variance ratios λ_i/Σλ, descending.
	Ratio []float64
	// Singular holds s_i = √λ_i, the singular values of the centred
	// inputs, descending.
	Singular []float64
	// Components (c_l×k) holds the first c_l principal directions as
	// orthonormal rows, each with its largest entry positive: A is its
	// first r_l rows (divided by √s_i with Whiten).
	Components *mat.Dense
	// Rows is the number of input rows the PCA saw (fewer than the
	// batches gave once the layer had converged).
	Rows int
	// Similarity holds |cos| between each of the c_l directions and the
	// previous batch's estimate, at the last batch the layer took.
	Similarity []float64
}

// A returns the layer's init of A (r_l×k): the first r_l principal
// directions, divided by √s_i if whiten. It is nil when r_l = 0.
func (ly *Layer) A(whiten bool) *mat.Dense {
	if ly.Rank == 0 {
		return nil
	}
	a := mat.DenseCopyOf(ly.Components.Slice(0, ly.Rank, 0, ly.K))
	if whiten {
		for i := 0; i < ly.Rank; i++ {
			if s := ly.Singular[i]; s > 0 {
				row := a.RawRowView(i)
				for j := range row {
					row[j] /= math.Sqrt(s)
				}
			}
		}
	}
	return a
}

// Result is what Fit found: each target layer's input spectrum, principal
// directions and rank.
type Result struct {
	Layers  []Layer // in model order
	R       int     // r: the budget is len(Layers)·R
	Rho     float64 // ρ used
	Batches int     // batches drawn from the data
}

// Ranks returns r_l by module name (0 for a layer with no adapter).
func (res *Result) Ranks() map[string]int {
	out := map[string]int{}
	for _, ly := range res.Layers {
		out[ly.Module] = ly.Rank
	}
	return out
}

// Budget returns L·r, the sum of the ranks.
func (res *Result) Budget() int { return len(res.Layers) * res.R }

// Layer returns the layer named module, or nil.
func (res *Result) Layer(module string) *Layer {
	for i := range res.Layers {
		if res.Layers[i].Module == module {
			return &res.Layers[i]
		}
	}
	return nil
}

// Add runs Fit and attaches the adapters it gives: a *lora.LoRA with A from
// the layer's principal directions and B = 0 on every target layer of
// positive rank, named cfg.Name and made active, with m's base frozen. It
// returns the adapters in model order and what Fit found.
func Add(ctx context.Context, m peft.Model, data peft.Dataset, cfg Config) ([]*lora.LoRA, *Result, error) {
	res, err := Fit(ctx, m, data, cfg)
	if err != nil {
		return nil, nil, err
	}
	ls, err := res.Attach(m, cfg)
	if err != nil {
		return nil, nil, err
	}
	return ls, res, nil
}

// Attach attaches res's adapters to m as Add does, with cfg's name, α,
// dropout, rsLoRA, whitening and scaling (cfg.R must be res.R).
func (res *Result) Attach(m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	if cfg.R != res.R {
		return nil, fmt.Errorf("peft: EVA: Config.R = %d, but the result was fitted with r = %d", cfg.R, res.R)
	}
	name := peft.AdapterName(cfg.Name)
	alpha := cfg.Alpha
	if alpha == 0 {
		alpha = float64(cfg.R)
	}
	byName := map[string]*Layer{}
	var targets []string
	for i := range res.Layers {
		ly := &res.Layers[i]
		if ly.Rank > 0 {
			byName[ly.Module] = ly
			targets = append(targets, "^"+regexp.QuoteMeta(ly.Module)+"$")
		}
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, targets, func(l *peft.Linear) (peft.Adapter, error) {
		ly := byName[l.Name]
		d, k := l.W.Dims()
		if d != ly.D || k != ly.K {
			return nil, fmt.Errorf("peft: EVA on %s: W is %s, but the result was fitted on %s", l.Name, peft.ShapeOf(d, k), peft.ShapeOf(ly.D, ly.K))
		}
		lc := cfg.loraConfig()
		lc.Alpha = alpha
		if !cfg.FixedAlpha {
			lc.Alpha = alpha * float64(ly.Rank) / float64(cfg.R)
		}
		return lora.FromFactors(l.Name, name, ly.A(cfg.Whiten), mat.NewDense(d, ly.Rank, nil), lc, rand.New(rand.NewSource(rng.Int63())))
	})
	if err != nil {
		return nil, err
	}
	return lora.As(added), nil
}

// captureName is the name of the temporary adapters Fit attaches.
const captureName = "eva-capture"

// capture is the temporary adapter through which Fit reads a layer's
// input: it adds x to the layer's statistics while on, and returns what
// the layer's own active adapter (if any) returns.
type capture struct {
	prev peft.Adapter
	st   *stats
	on   bool
}

func (c *capture) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	if c.on {
		c.st.add(x.Value)
	}
	if c.prev != nil {
		return c.prev.Forward(l, x, base)
	}
	return base
}
func (c *capture) Params() []*peft.Tensor { return nil }
func (c *capture) Rank() int              { return 0 }
func (c *capture) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if c.prev != nil {
		return c.prev.MergedWeight(w0)
	}
	return mat.DenseCopyOf(w0)
}

// Fit draws batches of cfg.BatchSize examples from data (seeded with
// cfg.Seed), runs m's loss on each with training off (no gradient is
// taken) and computes each target layer's input PCA and rank, until every
// layer's first r_l directions have converged (see the package doc). It
// changes nothing in m but its training mode, which it leaves off. Bad
// configs are errors naming the module, field and value; so is a PCA that
// has not converged after cfg.MaxBatches batches. Cancelling ctx stops it
// between batches.
func Fit(ctx context.Context, m peft.Model, data peft.Dataset, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(mods); err != nil {
		return nil, err
	}
	if data == nil {
		return nil, fmt.Errorf("peft: EVA: no data: the PCA reads the layers' inputs on batches of it")
	}
	L := len(mods)
	caps := make([]int, L)
	layers := make([]Layer, L)
	for i, l := range mods {
		d, k := l.W.Dims()
		caps[i] = Cap(cfg.Rho, cfg.R, d, k)
		layers[i] = Layer{Module: l.Name, D: d, K: k, Cap: caps[i]}
	}
	// Attach the captures; each layer's adapters and switches are restored
	// on return.
	cs := make([]*capture, L)
	type state struct {
		active   string
		disabled bool
	}
	saved := make([]state, 0, L)
	defer func() {
		for i, s := range saved {
			l := mods[i]
			_ = l.Detach(captureName)
			l.Active, l.Disabled = s.active, s.disabled
		}
	}()
	for i, l := range mods {
		_, k := l.W.Dims()
		c := &capture{st: newStats(k, caps[i]), on: true}
		if !l.Disabled {
			c.prev = l.ActiveAdapter()
		}
		cs[i] = c
		s := state{l.Active, l.Disabled}
		if err := l.Attach(captureName, c); err != nil {
			return nil, fmt.Errorf("peft: EVA on %s: %w", l.Name, err)
		}
		saved = append(saved, s)
		l.Disabled = false
	}
	m.SetTraining(false)

	rng := rand.New(rand.NewSource(cfg.Seed))
	budget := L * cfg.R
	ranks := append([]int(nil), caps...) // until the first allocation
	batches := 0
	for ; batches < cfg.MaxBatches; batches++ {
		// A layer takes this batch unless its directions in use have
		// converged.
		all := true
		for i, c := range cs {
			c.on = !c.st.converged(ranks[i], cfg.Tau)
			all = all && !c.on
		}
		if all {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("peft: EVA stopped before batch %d: %w", batches+1, err)
		}
		b := data.Sample(rng, cfg.BatchSize)
		if err := peft.Maybe(func() { m.Loss(b) }); err != nil {
			return nil, fmt.Errorf("peft: EVA: batch %d: %w", batches+1, err)
		}
		for i, c := range cs {
			if c.on {
				if err := c.st.update(); err != nil {
					return nil, fmt.Errorf("peft: EVA on %s: batch %d: %w", mods[i].Name, batches+1, err)
				}
			}
		}
		ratios := make([][]float64, L)
		ready := true
		for i, c := range cs {
			ready = ready && c.st.comps != nil
			ratios[i] = c.st.ratio
		}
		if ready {
			ranks = Allocate(ratios, caps, budget)
		}
	}
	var open []string
	for i, c := range cs {
		if !c.st.converged(ranks[i], cfg.Tau) {
			open = append(open, fmt.Sprintf("%s (rank %d, |cos| %s)", mods[i].Name, ranks[i], fmtSims(c.st.sim[:ranks[i]])))
		}
	}
	if len(open) > 0 {
		return nil, fmt.Errorf("peft: EVA: the input PCA has not converged to τ = %g after MaxBatches = %d batches of %d: %s; raise MaxBatches or BatchSize, or lower Tau",
			cfg.Tau, cfg.MaxBatches, cfg.BatchSize, strings.Join(open, "; "))
	}
	for i, c := range cs {
		ly := &layers[i]
		ly.Rank = ranks[i]
		ly.Variance, ly.Ratio, ly.Singular = c.st.variances(), c.st.ratio, c.st.singular()
		ly.Components = c.st.finalComponents()
		ly.Rows = c.st.n
		ly.Similarity = append([]float64(nil), c.st.sim...)
	}
	return &Result{Layers: layers, R: cfg.R, Rho: cfg.Rho, Batches: batches}, nil
}
