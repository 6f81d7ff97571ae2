// Package lrpretrain is low-rank pretraining from scratch with the two
// restart techniques of Glentis et al.: weight refactorization, which
// re-balances the factors of each W = B·A without changing the product,
// and momentum reset, which zeroes Adam's moments of the factors at the
// same time.
package lrpretrain

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/sltrain"
	"gonum.org/v1/gonum/mat"
)

// Restarter is the training hook of the low-rank pretraining restarts of
// Glentis, Li, Shang, Han, Tsaknakis, Wei and Hong (2025, "Scalable
// Parameter and Memory Efficient Pretraining for LLM: Recent Algorithmic
// Advances and Benchmarking", arXiv:2505.22922). The model's targeted
// weights are trained in low-rank form only, with no full weight behind
// them:
//
//	W = s·B·A (d×k),  B: d×r,  A: r×k,  both trained (Add)
//
// and every T steps, after the optimizer's update, Restarter
//
//  1. refactors each pair (Refactor): B·A = U·Σ·Vᵀ (rank r), then
//     B ← U·Σ^½ (d×r), A ← Σ^½·Vᵀ (r×k), so that B·A is unchanged and the
//     factors are balanced, BᵀB = A·Aᵀ = Σ and ‖B‖_F = ‖A‖_F (the paper
//     motivates the even split, exponent ½, by the conditioning of the
//     Hessian in B and A);
//  2. resets the momentum (Adam.ResetState): Adam's moments m, v of the
//     factors and their step counts go to 0, since after the change of
//     basis they describe coordinates that no longer exist.
//
// Either technique can be used alone (RestartConfig.Refactor, .Reset).
//
// Defaults: T = 200 (DefaultPeriod), about the interval reported for the
// paper's runs (gopeft's notes take it from a secondary summary). The
// paper's runs use r = 128, α = 32 and lr 1.5e-3 on LLaMA 60M–1B.
//
// Where gopeft departs from the paper's code (OptimAI-Lab/
// Memory_Efficient_Pretraining, whose low-rank layer is referenced but not
// published) and why:
//
//   - The momentum reset zeroes the factors' moments only; the paper's
//     code rebuilds the whole optimizer, resetting every tensor. The other
//     tensors' coordinates do not change at a restart, so their moments
//     stay valid; RestartConfig.ResetAll gives the paper's behaviour.
//   - The "quick recovery" warm-up of the learning rate after a restart
//     (a scheduler in the paper's code) is Adam.Recovery, applied to the
//     tensors reset.
//   - The SVD of B·A is computed from thin QRs of B and Aᵀ and the SVD of
//     the r×r core, O((d+k)·r²) instead of O(d·k·min(d,k)); same result.
//
// Restarter implements peft.Hook and SetContext: peft.Train gives it the
// run's context, so that cancelling the run stops its SVDs.
type Restarter struct {
	Pairs  []Pair
	Opt    *Adam // whose moments Reset zeroes; may be nil without Reset
	Config RestartConfig

	ctx      context.Context
	restarts []int // the steps at which restarts happened
}

var _ peft.Hook = (*Restarter)(nil)

// DefaultPeriod is T when RestartConfig.Period is 0.
const DefaultPeriod = 200

// RestartConfig configures NewRestarter.
type RestartConfig struct {
	// Period T ≥ 1: restarts follow steps T, 2T, …; 0 selects
	// DefaultPeriod.
	Period int
	// Refactor re-balances each pair's factors at a restart (Refactor).
	Refactor bool
	// Reset zeroes Adam's moments of each pair's factors at a restart.
	Reset bool
	// ResetAll, with Reset, zeroes every tensor's moments, as the paper's
	// code does by rebuilding the optimizer.
	ResetAll bool
}

// Pair is one weight trained in low-rank form, W = s·B·A (d×k), by its two
// factors. B and A are the adapter's own tensors: refactoring writes them.
type Pair struct {
	Module string       // the Linear layer's name
	B      *peft.Tensor // (d×r)
	A      *peft.Tensor // (r×k)
}

// Pairs returns the factor pairs of m's active low-rank adapters, in model
// order: LoRA's (as Add makes them) and SLTrain's low-rank parts. It is an
// error if there is none.
func Pairs(m peft.Model) ([]Pair, error) {
	var ps []Pair
	for _, l := range m.Modules() {
		switch a := l.ActiveAdapter().(type) {
		case *lora.LoRA:
			ps = append(ps, Pair{Module: l.Name, B: a.B, A: a.A})
		case *sltrain.SLTrain:
			ps = append(ps, Pair{Module: l.Name, B: a.B, A: a.A})
		}
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("peft: lrpretrain: no module of the model has an active LoRA or SLTrain adapter (use lrpretrain.Add); the model has %v", peft.ModuleNames(m))
	}
	return ps, nil
}

// NewRestarter returns the restart hook of pairs with cfg (Period 0
// selects DefaultPeriod). It is an error, naming the field and its value,
// if the period is negative, if neither Refactor nor Reset is set, if
// ResetAll is set without Reset, or if Reset is set and opt is nil.
func NewRestarter(pairs []Pair, opt *Adam, cfg RestartConfig) (*Restarter, error) {
	if cfg.Period == 0 {
		cfg.Period = DefaultPeriod
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: lrpretrain: RestartConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.Period < 0:
		return nil, bad("Period", cfg.Period, "T ≥ 1 (0 selects 200)")
	case !cfg.Refactor && !cfg.Reset:
		return nil, fmt.Errorf("peft: lrpretrain: RestartConfig.Refactor and .Reset are both false: a restart would do nothing")
	case cfg.ResetAll && !cfg.Reset:
		return nil, bad("ResetAll", true, "false unless Reset is true")
	case cfg.Reset && opt == nil:
		return nil, fmt.Errorf("peft: lrpretrain: RestartConfig.Reset = true with a nil *Adam: give the optimizer whose moments to reset")
	case len(pairs) == 0:
		return nil, fmt.Errorf("peft: lrpretrain: no factor pairs (see Pairs)")
	}
	for _, p := range pairs {
		d, r := p.B.Dims()
		r2, k := p.A.Dims()
		if r != r2 || r > min(d, k) {
			return nil, fmt.Errorf("peft: lrpretrain: pair %s: B %s and A %s: want B (d×r), A (r×k) with r ≤ min(d, k)", p.Module, peft.ShapeOf(d, r), peft.ShapeOf(r2, k))
		}
	}
	return &Restarter{Pairs: pairs, Opt: opt, Config: cfg}, nil
}

// SetContext sets the context of the following SVDs (nil means
// context.Background()).
func (h *Restarter) SetContext(ctx context.Context) { h.ctx = ctx }

// Regularizer returns nil: the restarts act between steps.
func (h *Restarter) Regularizer(int) *peft.Tensor { return nil }

// AfterBackward does nothing.
func (h *Restarter) AfterBackward(int) {}

// AfterStep restarts after steps T, 2T, …: it refactors every pair (if
// Refactor), computing all of them before writing any, then resets the
// moments (if Reset). It returns an SVD's error (a cancelled context, a
// non-finite factor) naming the module and the step; then nothing has
// changed.
func (h *Restarter) AfterStep(step int) error {
	if step%h.Config.Period != 0 {
		return nil
	}
	if h.Config.Refactor {
		ctx := h.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		bs := make([]*mat.Dense, len(h.Pairs))
		as := make([]*mat.Dense, len(h.Pairs))
		for i, p := range h.Pairs {
			bs[i], as[i] = mat.DenseCopyOf(p.B.Value), mat.DenseCopyOf(p.A.Value)
			if _, err := Refactor(ctx, bs[i], as[i]); err != nil {
				return fmt.Errorf("peft: lrpretrain: refactoring %s at step %d: %w", p.Module, step, err)
			}
		}
		for i, p := range h.Pairs {
			p.B.Value.Copy(bs[i])
			p.A.Value.Copy(as[i])
		}
	}
	if h.Config.Reset {
		if h.Config.ResetAll {
			h.Opt.ResetState()
		} else {
			for _, p := range h.Pairs {
				h.Opt.ResetState(p.B, p.A)
			}
		}
	}
	h.restarts = append(h.restarts, step)
	return nil
}

// Restarts returns the steps at which restarts happened.
func (h *Restarter) Restarts() []int { return append([]int(nil), h.restarts...) }

// Refactor re-balances the factors of B·A in place, b (d×r) and a (r×k)
// with r ≤ min(d, k): with B·A = U·diag(σ)·Vᵀ its thin SVD of rank r, it
// sets b = U·diag(√σ) and a = diag(√σ)·Vᵀ, so that b·a is unchanged (to
// rounding), bᵀb = a·aᵀ = diag(σ) and ‖b‖_F = ‖a‖_F = √(Σσ). It returns σ
// (descending, length r). The SVD is that of the r×r core of thin QRs,
// B = Q_B·R_B, Aᵀ = Q_A·R_A, R_B·R_Aᵀ = U'·Σ·V'ᵀ, U = Q_B·U', V = Q_A·V'.
// It returns the SVD's error (ctx's if cancelled, an *accel.NonFiniteError
// for NaN or Inf), leaving b and a as they were. It panics with a
// peft.ShapeError if the factors do not chain or r > min(d, k).
func Refactor(ctx context.Context, b, a *mat.Dense) ([]float64, error) {
	d, r := b.Dims()
	ra, k := a.Dims()
	if ra != r || r > min(d, k) || r == 0 {
		panic(peft.ShapeError{Op: "lrpretrain.Refactor", Got: fmt.Sprintf("B %s, A %s", peft.ShapeOf(d, r), peft.ShapeOf(ra, k)),
			Want: "B (d×r), A (r×k) with 1 ≤ r ≤ min(d, k)"})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	qb, rb := thinQR(b)      // (d×r), (r×r)
	qa, rat := thinQR(a.T()) // (k×r), (r×r)
	var core mat.Dense
	core.Mul(rb, rat.T()) // R_B·R_Aᵀ (r×r)
	svd, err := accel.ThinSVD(ctx, &core)
	if err != nil {
		return nil, err
	}
	sq := make([]float64, r)
	for i, s := range svd.S {
		sq[i] = math.Sqrt(s)
	}
	// B ← Q_B·U'·diag(√σ)
	us := mat.DenseCopyOf(svd.U) // (r×r)
	for j := 0; j < r; j++ {
		for i := 0; i < r; i++ {
			us.Set(i, j, us.At(i, j)*sq[j])
		}
	}
	b.Mul(qb, us)
	// A ← diag(√σ)·V'ᵀ·Q_Aᵀ
	sv := mat.DenseCopyOf(svd.VT) // (r×r)
	for i := 0; i < r; i++ {
		for j := 0; j < r; j++ {
			sv.Set(i, j, sv.At(i, j)*sq[i])
		}
	}
	a.Mul(sv, qa.T())
	return svd.S, nil
}

// thinQR returns Q (m×n, orthonormal columns) and R (n×n, upper
// triangular) with x = Q·R, for x (m×n), m ≥ n.
func thinQR(x mat.Matrix) (q, r *mat.Dense) {
	m, n := x.Dims()
	var qr mat.QR
	qr.Factorize(x)
	var fq, fr mat.Dense
	qr.QTo(&fq) // (m×m)
	qr.RTo(&fr) // (m×n)
	return mat.DenseCopyOf(fq.Slice(0, m, 0, n)), mat.DenseCopyOf(fr.Slice(0, n, 0, n))
}

// Balance returns ‖B‖_F / ‖A‖_F of p: 1 after a refactorization.
func Balance(p Pair) float64 {
	return mat.Norm(p.B.Value, 2) / mat.Norm(p.A.Value, 2)
}

// Config configures Add.
type Config struct {
	R       int      // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (s = 1)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's and B's init
}

// Add makes m a low-rank model for pretraining from scratch: each module
// matching cfg.Targets gets a LoRA adapter (named cfg.Name, active) and its
// own weight W₀ set to zero and frozen, so that the layer computes
// h = x·(s·B·A)ᵀ + b; every other parameter of m (biases, untargeted
// layers) stays trainable, as pretraining trains them. Unlike LoRA's
// fine-tuning init (B = 0), both factors start random, so that s·B·A
// starts with the entry variance 1/(3k) of PyTorch's nn.Linear init:
//
//	A: U(−1/√k, 1/√k) (LoRA's),  B: U(−c, c), c = √(3/r)/s
//
// It is an error, naming the module and the value, if r or α does not fit
// a target (see lora.Config.Check). Disabling the adapters leaves the
// zeroed layers: the model has no full-rank weight behind its factors.
func Add(m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	ads, err := lora.Add(m, lora.Config{R: cfg.R, Alpha: cfg.Alpha, Targets: cfg.Targets, Name: cfg.Name, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewSource(cfg.Seed + 1))
	replaced := map[*peft.Tensor]bool{}
	name := peft.AdapterName(cfg.Name)
	for _, l := range m.Modules() {
		a, ok := l.Adapters[name].(*lora.LoRA)
		if !ok {
			continue
		}
		l.W.Value.Zero()
		replaced[l.W] = true
		d, r := a.B.Dims()
		c := math.Sqrt(3/float64(r)) / a.Scaling()
		a.B.Value.Copy(peft.RandUniform(rng, d, r, c))
	}
	for _, p := range peft.BaseParams(m) {
		if !replaced[p] {
			p.Unfreeze()
		}
	}
	return ads, nil
}

func init() {
	peft.Register(peft.Method{
		Name:    "LowRankPretrain (refactor+reset)",
		Kind:    peft.HookMethod,
		Paper:   "Glentis et al. 2025, Scalable Parameter and Memory Efficient Pretraining for LLM: Recent Algorithmic Advances and Benchmarking, arXiv:2505.22922",
		Package: "github.com/gopeft/gopeft/peft/lrpretrain",
		Summary: "pretraining with weights W = s·B·A only; every T steps B·A is re-factored into balanced U√Σ, √ΣVᵀ and Adam's moments of the factors are reset",
	})
}
