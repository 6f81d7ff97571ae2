// Package abmll is ABMLL, amortized Bayesian meta-learning for LoRA: a
// Gaussian over each layer's LoRA update, whose global mean and spread
// (θ) are meta-learned over a distribution of tasks, and whose
// task-specific posterior (φ_i) is reached from θ by a few gradient steps
// on the task's support set, so that nothing is stored per task.
//
// Zhang, Snell and Griffiths (2025), "Amortized Bayesian Meta-Learning
// for Low-Rank Adaptation of Large Language Models", arXiv:2508.14285,
// after ABML (Ravi and Beatson, 2019, "Amortized Bayesian
// Meta-Learning", ICLR).
//
// The package has three parts: the adapter (ABMLL, this file), the
// meta-learning loops (MetaTrain and Adapt, meta.go) with the closed-form
// Gaussian KL, and a task distribution built from gopeft's teacher tasks
// (RegressionTasks, tasks.go).
package abmll

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// ABMLL is one layer's Gaussian over its LoRA update ΔW (d×k), entry by
// entry independent (Zhang, Snell and Griffiths, 2025, arXiv:2508.14285):
//
//	μ     = B_μ·A_μ                       (d×k), B_μ: d×r (init 0), A_μ: r×k
//	log σ = c + B_σ·A_σ                   (d×k), B_σ: d×r (init 0), A_σ: r×k
//	ΔW    = μ + σ ⊙ ε,   ε ~ N(0, 1)^{d×k} (the reparameterization)
//	h     = x·W₀ᵀ + b + x·ΔWᵀ             x (n×k), h (n×d)
//
// A_μ and A_σ are drawn as LoRA's A (Kaiming-uniform, U(−1/√k, 1/√k));
// c = log σ₀ with σ₀ = Config.SigmaInit. The same four factors hold θ
// (the global Gaussian) between tasks and φ_i (a task's posterior) while
// MetaTrain or Adapt runs: φ_i has the same form and starts from θ.
//
// The noise ε is the adapter's Noise field, not drawn inside Forward:
// Resample draws a fresh ε, ClearNoise sets it to zero. With ε = 0 (the
// state after New and after Adapt) Forward gives the mean update μ, so the
// adapted model is the base model at init, merging is exact and the output
// is deterministic; MetaTrain and Adapt resample before every forward pass.
//
// Which σ, and why. The review notes (methods-a.md §16) give σ_θ =
// B_σθ·A_σθ + cI, and mark the meaning of "+cI" for a non-square ΔW as
// unconfirmed; a σ written that way can also turn negative. gopeft reads
// c as a constant added to every entry and puts the low-rank pair in log
// space, so σ = exp(c + B_σ·A_σ) is positive for any factors, is the
// constant σ₀ at init (B_σ = 0), and the log-ratio log σ_q − log σ_p in
// the Gaussian KL is a difference of low-rank products with no log taken.
// A layer trains 2·r·(d + k) numbers (the mean and std pairs); φ_i is two
// more such pairs while a task adapts, 4·r·(d + k) in all, as the notes
// count. There is no α: B_μ·A_μ carries the scale.
type ABMLL struct {
	MuA    *peft.Tensor // (r×k) A_μ
	MuB    *peft.Tensor // (d×r) B_μ
	SigmaA *peft.Tensor // (r×k) A_σ
	SigmaB *peft.Tensor // (d×r) B_σ
	R      int          // rank r of each pair
	C      float64      // c = log σ₀, added to every entry of log σ
	Noise  *mat.Dense   // (d×k) ε used by Forward; zero gives the mean μ

	d, k int
}

var _ peft.Adapter = (*ABMLL)(nil)

// DefaultSigmaInit is σ₀ when Config.SigmaInit is 0: the spread of every
// entry of ΔW at init, small next to the N(0, 1/k) entries of W₀ at the
// widths gopeft's models use.
const DefaultSigmaInit = 1e-2

// Config configures Add.
type Config struct {
	R         int      // rank r of the mean and std pairs, 1 ≤ r ≤ min(d, k)
	SigmaInit float64  // σ₀ > 0, every entry's std at init; 0 means DefaultSigmaInit
	Targets   []string // target modules, by name or pattern (see peft.Targets)
	Name      string   // adapter name, "default" if empty
	Seed      int64    // seeds A_μ and A_σ
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)], or SigmaInit negative
// or not finite.
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: ABMLL on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	if s := cfg.SigmaInit; s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return fmt.Errorf("peft: ABMLL on %s: SigmaInit = %v; want a finite σ₀ > 0 (or 0 for %g)", module, s, DefaultSigmaInit)
	}
	return nil
}

// New returns the ABMLL adapter of a layer with weight (d×k) named module
// (parameters "module.abmll_mu_A.name.weight", …), with A_μ then A_σ drawn
// from rng, B_μ = B_σ = 0 and ε = 0. It is an error if cfg does not fit
// (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*ABMLL, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	s0 := cfg.SigmaInit
	if s0 == 0 {
		s0 = DefaultSigmaInit
	}
	r := cfg.R
	bound := 1 / math.Sqrt(float64(k))
	p := func(part string, v *mat.Dense) *peft.Tensor {
		return peft.NewParam(module+".abmll_"+part+"."+name+".weight", v)
	}
	return &ABMLL{
		MuA:    p("mu_A", peft.RandUniform(rng, r, k, bound)),
		MuB:    p("mu_B", mat.NewDense(d, r, nil)),
		SigmaA: p("sigma_A", peft.RandUniform(rng, r, k, bound)),
		SigmaB: p("sigma_B", mat.NewDense(d, r, nil)),
		R:      r,
		C:      math.Log(s0),
		Noise:  mat.NewDense(d, k, nil),
		d:      d,
		k:      k,
	}, nil
}

// Add freezes m's base weights and attaches an ABMLL adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active
// one. A_μ and A_σ are drawn from one generator seeded with cfg.Seed,
// module after module in model order.
func Add(m peft.Model, cfg Config) ([]*ABMLL, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		return New(l.Name, name, d, k, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the ABMLL adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*ABMLL { return adapters.As[*ABMLL](ads) }

// Of returns the active ABMLL adapters of m's modules, in model order.
func Of(m peft.Model) []*ABMLL {
	var out []*ABMLL
	for _, l := range m.Modules() {
		if a, ok := l.ActiveAdapter().(*ABMLL); ok {
			out = append(out, a)
		}
	}
	return out
}

// Dims returns the layer's weight shape (d×k).
func (a *ABMLL) Dims() (d, k int) { return a.d, a.k }

// Forward returns base + x·(μ + σ ⊙ ε)ᵀ for x (n×k), base (n×d), with ε
// the adapter's Noise.
func (a *ABMLL) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	return peft.Add(base, peft.MatMulT(x, a.deltaTensor()))
}

// deltaTensor returns ΔW = B_μ·A_μ + σ ⊙ ε (d×k) as a graph node.
func (a *ABMLL) deltaTensor() *peft.Tensor {
	mu := peft.MatMul(a.MuB, a.MuA)
	return peft.Add(mu, peft.Mul(a.sigmaTensor(), peft.NewConst(a.Noise)))
}

// muTensor returns μ = B_μ·A_μ (d×k) and rhoTensor log σ = c + B_σ·A_σ
// (d×k), as graph nodes.
func (a *ABMLL) muTensor() *peft.Tensor  { return peft.MatMul(a.MuB, a.MuA) }
func (a *ABMLL) rhoTensor() *peft.Tensor { return shift(peft.MatMul(a.SigmaB, a.SigmaA), a.C) }

// sigmaTensor returns σ = exp(c + B_σ·A_σ) (d×k) as a graph node.
func (a *ABMLL) sigmaTensor() *peft.Tensor { return expOf(a.rhoTensor()) }

// Params returns A_μ, B_μ, A_σ and B_σ.
func (a *ABMLL) Params() []*peft.Tensor {
	return []*peft.Tensor{a.MuA, a.MuB, a.SigmaA, a.SigmaB}
}

// Rank returns r, the rank of the mean update B_μ·A_μ.
func (a *ABMLL) Rank() int { return a.R }

// Mean returns μ = B_μ·A_μ (d×k).
func (a *ABMLL) Mean() *mat.Dense {
	var mu mat.Dense
	mu.Mul(a.MuB.Value, a.MuA.Value)
	return &mu
}

// Sigma returns σ = exp(c + B_σ·A_σ) (d×k).
func (a *ABMLL) Sigma() *mat.Dense {
	var s mat.Dense
	s.Mul(a.SigmaB.Value, a.SigmaA.Value)
	s.Apply(func(_, _ int, v float64) float64 { return math.Exp(a.C + v) }, &s)
	return &s
}

// Delta returns the update Forward applies, μ + σ ⊙ ε (d×k): μ while ε is
// zero.
func (a *ABMLL) Delta() *mat.Dense {
	dw := a.Sigma()
	dw.MulElem(dw, a.Noise)
	dw.Add(dw, a.Mean())
	return dw
}

// MergedWeight returns w0 + μ + σ ⊙ ε (d×k): with ε = 0, the posterior
// mean. It panics if w0 is not (d×k).
func (a *ABMLL) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != a.d || c != a.k {
		panic(peft.ShapeError{Op: "ABMLL.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(a.d, a.k) + ", the adapter's W₀"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}

// Resample draws a fresh ε ~ N(0, 1)^{d×k} from rng for the following
// forward passes.
func (a *ABMLL) Resample(rng *rand.Rand) {
	raw := a.Noise.RawMatrix()
	for i := 0; i < raw.Rows; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+raw.Cols]
		for j := range row {
			row[j] = rng.NormFloat64()
		}
	}
}

// ClearNoise sets ε to zero: Forward then gives the mean update μ.
func (a *ABMLL) ClearNoise() { a.Noise.Zero() }

// shift returns x + c, c added to every entry (same shape as x).
func shift(x *peft.Tensor, c float64) *peft.Tensor {
	r, k := x.Dims()
	fill := mat.NewDense(r, k, nil)
	if c != 0 {
		fill.Apply(func(_, _ int, _ float64) float64 { return c }, fill)
	}
	return peft.Add(x, peft.NewConst(fill))
}

// expOf returns exp(x) entrywise as a graph node. peft has no exp op, so it
// is the first-order expansion of exp about x's current value x₀, composed
// of Mul and Add:
//
//	exp(x₀) ⊙ x + (exp(x₀) − exp(x₀) ⊙ x₀)
//
// whose value is exp(x₀) (up to rounding) and whose gradient is exp(x₀) ⊙
// g, the exact first derivative: all that gopeft's autograd, which has no
// higher-order gradients, ever asks of an op. The tests check it against
// central differences.
func expOf(x *peft.Tensor) *peft.Tensor {
	r, c := x.Dims()
	e := mat.NewDense(r, c, nil)
	e.Apply(func(_, _ int, v float64) float64 { return math.Exp(v) }, x.Value)
	off := mat.NewDense(r, c, nil)
	off.Apply(func(i, j int, v float64) float64 { return v - v*x.Value.At(i, j) }, e)
	return peft.Add(peft.Mul(peft.NewConst(e), x), peft.NewConst(off))
}
