// Package loraggpo is LoRA-GGPO: LoRA trained at randomly perturbed
// weights whose per-row size follows the weight and gradient norms, to
// steer training toward flat minima.
package loraggpo

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// GGPO trains a model's LoRA adapters with gradient-guided perturbations
// (Chang, Guo, Chang and Wu, 2025, "LoRA-GGPO: Mitigating Double Descent in
// LoRA Fine-Tuning via Gradient-Guided Perturbation Optimization",
// arXiv:2502.14538v1). Each training step evaluates the loss, and LoRA's
// gradients, at a perturbed merged weight of every adapted layer,
//
//	W' = W₀ + s·B·A (d×k),   loss at W' + ε,   ε (d×k)
//	ε_{i,j} = (σ/√k)·√(α·‖W'_{i,:}‖² + β·‖g̃_{i,:}‖²)·z_{i,j},  z_{i,j} ~ N(0, 1)
//	g̃ = s·(B·g_A + g_B·A) (d×k), from the previous step's backward pass
//
// so a row's perturbation grows with that row's weight norm (the
// filter-wise scaling of Flat-LoRA, Li et al. 2024, arXiv:2409.14396) and
// with its recent gradient norm: the "gradient and weight norms" of the
// abstract. Minimizing the expected loss E_ε L(W' + ε) penalizes
// curvature along the perturbed directions (to second order, it adds
// ½·Σ H_{(ij),(ij)}·Var ε_{ij}), which favours flat minima. The
// perturbation is added to the frozen W₀ before the forward pass and W₀ is
// restored, bit for bit from a saved copy, after the backward pass and
// before the optimizer steps, so A and B get the gradients at the
// perturbed point and nothing else changes: with σ = 0 training is plain
// LoRA training, bit for bit.
//
// Cost: this is the one-pass ("efficient") form. A SAM step needs a second
// forward and backward pass to find its adversarial point; here ε is random
// and its scale uses the gradient of the step before, so a step costs one
// forward and backward pass, as LoRA's, plus O(d·k) to draw ε and O(r·d·k)
// for g̃'s row norms. Memory: a copy of W₀ (d×k) per layer while a step is
// in flight, and d numbers (g̃'s row norms) per layer between steps. At the
// first step there is no previous gradient, so ε follows the weight norms
// alone.
//
// What is not confirmed. The reference notes (methods-a.md §20) could not
// read the paper's method section or its code (llm172/LoRA-GGPO, later
// renamed LoRA-MGPO with a momentum-based perturbation in the paper's v2);
// the formula above follows the v1 abstract ("leverages gradient and weight
// norms to generate targeted perturbations") and a secondary summary of
// v1, which describes a Gaussian perturbation of W' with a covariance
// diagonal in W's rows built from ‖W'_{i,:}‖² and the gradient. The exact
// combination of the two norms, the gradient used (gopeft takes LoRA's
// equivalent gradient g̃, the part of ∂L/∂W that LoRA computes, since W₀'s
// own gradient would need a d×k backward product per layer), and the
// defaults (gopeft: α = β = 1, σ given by the caller, 0.05 as Flat-LoRA)
// are gopeft's choices.
//
// GGPO is a peft.Model wrapping the model it trains (its Loss perturbs in
// training mode) and a peft.Hook (its AfterBackward restores and records
// g̃): give it to peft.Train as both, or call Train, which does and also
// restores W₀ if training stops early.
type GGPO struct {
	inner    peft.Model
	cfg      Config
	layers   []*layerState
	rng      *rand.Rand
	training bool
	applied  bool // a perturbation is on the weights
}

// layerState is one adapted layer's state.
type layerState struct {
	l     *peft.Linear
	a     *lora.LoRA
	saved *mat.Dense // W₀ before the perturbation (d×k), while one is applied
	grad2 []float64  // ‖g̃_{i,:}‖² from the last backward pass (d), nil before
	eps   *mat.Dense // the last perturbation ε (d×k)
}

// Config configures New.
type Config struct {
	// Sigma σ ≥ 0 scales the perturbation. 0 turns it off (plain LoRA);
	// Flat-LoRA's σ is 0.05.
	Sigma float64
	// Alpha α ≥ 0 and Beta β ≥ 0 weight the weight-norm and gradient-norm
	// terms of a row's variance. Both 0 select α = β = 1.
	Alpha, Beta float64
	// Seed seeds the perturbations.
	Seed int64
}

// New returns a GGPO around m, perturbing every layer of m whose active
// adapter is a LoRA (lora.Add's). It is an error if m has none, or cfg is
// out of range (the error names the field and its value).
func New(m peft.Model, cfg Config) (*GGPO, error) {
	if cfg.Alpha == 0 && cfg.Beta == 0 {
		cfg.Alpha, cfg.Beta = 1, 1
	}
	bad := func(field string, v float64) error {
		return fmt.Errorf("peft: LoRA-GGPO: Config.%s = %v; want a finite value ≥ 0", field, v)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"Sigma", cfg.Sigma}, {"Alpha", cfg.Alpha}, {"Beta", cfg.Beta}} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			return nil, bad(f.name, f.v)
		}
	}
	g := &GGPO{inner: m, cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed))}
	for _, l := range m.Modules() {
		if a, ok := l.ActiveAdapter().(*lora.LoRA); ok && !l.Disabled {
			g.layers = append(g.layers, &layerState{l: l, a: a})
		}
	}
	if len(g.layers) == 0 {
		return nil, fmt.Errorf("peft: LoRA-GGPO: no module of the model has an active LoRA adapter (add one with lora.Add)")
	}
	return g, nil
}

// Config returns g's configuration with the defaults filled in.
func (g *GGPO) Config() Config { return g.cfg }

// Model returns the wrapped model.
func (g *GGPO) Model() peft.Model { return g.inner }

// Modules returns the wrapped model's layers.
func (g *GGPO) Modules() []*peft.Linear { return g.inner.Modules() }

// Params returns the wrapped model's parameters.
func (g *GGPO) Params() []*peft.Tensor { return g.inner.Params() }

// SetTraining switches the wrapped model, and the perturbation, between
// training and evaluation.
func (g *GGPO) SetTraining(training bool) {
	g.Restore()
	g.training = training
	g.inner.SetTraining(training)
}

// Loss returns the wrapped model's loss on b. In training mode it first
// adds a fresh perturbation ε to every adapted layer's W₀, which stays
// there until AfterBackward (or Restore, or the next Loss) removes it.
func (g *GGPO) Loss(b peft.Batch) *peft.Tensor {
	g.Restore()
	if g.training {
		g.perturb()
	}
	return g.inner.Loss(b)
}

// Metric returns the wrapped model's metric on b (NaN if it has none).
func (g *GGPO) Metric(b peft.Batch) float64 {
	g.Restore()
	if mm, ok := g.inner.(peft.Metricer); ok {
		return mm.Metric(b)
	}
	return math.NaN()
}

// MetricName returns the wrapped model's metric name ("" if it has none).
func (g *GGPO) MetricName() string {
	if mm, ok := g.inner.(peft.Metricer); ok {
		return mm.MetricName()
	}
	return ""
}

// LossAndMetric returns the wrapped model's loss and metric on b, from one
// forward pass if it offers that, unperturbed (Evaluate calls it in
// evaluation mode).
func (g *GGPO) LossAndMetric(b peft.Batch) (loss, metric float64) {
	g.Restore()
	if both, ok := g.inner.(interface {
		LossAndMetric(b peft.Batch) (float64, float64)
	}); ok {
		return both.LossAndMetric(b)
	}
	return g.inner.Loss(b).Scalar(), g.Metric(b)
}

// RowScales returns the standard deviation of each row of the perturbation
// of a weight wp = W' (d×k) whose previous equivalent gradient had squared
// row norms grad2 (d; nil at the first step):
// (σ/√k)·√(α·‖W'_{i,:}‖² + β·grad2ᵢ).
func RowScales(wp *mat.Dense, grad2 []float64, cfg Config) []float64 {
	d, k := wp.Dims()
	if grad2 != nil && len(grad2) != d {
		panic(peft.ShapeError{Op: "loraggpo.RowScales", Got: fmt.Sprintf("W' %s, %d gradient row norms", peft.ShapeOf(d, k), len(grad2)), Want: fmt.Sprintf("%d row norms", d)})
	}
	out := make([]float64, d)
	for i := range out {
		row := wp.RawRowView(i)
		v := cfg.Alpha * floatsDot(row, row)
		if grad2 != nil {
			v += cfg.Beta * grad2[i]
		}
		out[i] = cfg.Sigma / math.Sqrt(float64(k)) * math.Sqrt(v)
	}
	return out
}

func floatsDot(x, y []float64) float64 {
	s := 0.0
	for i, v := range x {
		s += v * y[i]
	}
	return s
}

// perturb saves each adapted layer's W₀ and adds a fresh ε to it.
func (g *GGPO) perturb() {
	for _, ls := range g.layers {
		w := ls.l.W.Value // W₀ (d×k)
		wp := mat.DenseCopyOf(w)
		if ls.l.Merged() == "" {
			wp = ls.a.MergedWeight(wp) // W' = W₀ + s·B·A
		}
		std := RowScales(wp, ls.grad2, g.cfg)
		d, k := w.Dims()
		eps := mat.NewDense(d, k, nil)
		for i := 0; i < d; i++ {
			row := eps.RawRowView(i)
			for j := range row {
				row[j] = std[i] * g.rng.NormFloat64()
			}
		}
		ls.saved = mat.DenseCopyOf(w)
		ls.eps = eps
		w.Add(w, eps)
	}
	g.applied = true
}

// Restore puts back every W₀ a perturbation changed, bit for bit. It does
// nothing when none is applied.
func (g *GGPO) Restore() {
	if !g.applied {
		return
	}
	for _, ls := range g.layers {
		if ls.saved != nil {
			ls.l.W.Value.Copy(ls.saved)
			ls.saved = nil
		}
	}
	g.applied = false
}

// Perturbation returns a copy of the ε (d×k) last drawn for module, or nil
// if none was (or module is not adapted).
func (g *GGPO) Perturbation(module string) *mat.Dense {
	for _, ls := range g.layers {
		if ls.l.Name == module && ls.eps != nil {
			return mat.DenseCopyOf(ls.eps)
		}
	}
	return nil
}

// GradRowNorms2 returns a copy of the squared row norms ‖g̃_{i,:}‖² that
// the next perturbation of module will use, or nil before the first
// backward pass.
func (g *GGPO) GradRowNorms2(module string) []float64 {
	for _, ls := range g.layers {
		if ls.l.Name == module && ls.grad2 != nil {
			return append([]float64(nil), ls.grad2...)
		}
	}
	return nil
}

// Regularizer adds nothing to the loss.
func (g *GGPO) Regularizer(step int) *peft.Tensor { return nil }

// AfterBackward records g̃'s row norms from the gradients just computed
// (at the perturbed point) and restores every W₀, before the optimizer
// steps.
func (g *GGPO) AfterBackward(step int) {
	for _, ls := range g.layers {
		A, B := ls.a.A, ls.a.B
		if A.Grad == nil || B.Grad == nil {
			continue
		}
		eq := mat.NewDense(B.Value.RawMatrix().Rows, A.Value.RawMatrix().Cols, nil)
		var t mat.Dense
		eq.Mul(B.Value, A.Grad) // B·g_A (d×k)
		t.Mul(B.Grad, A.Value)  // g_B·A (d×k)
		eq.Add(eq, &t)
		s := ls.a.Scaling()
		d, _ := eq.Dims()
		if ls.grad2 == nil {
			ls.grad2 = make([]float64, d)
		}
		for i := 0; i < d; i++ {
			row := eq.RawRowView(i)
			ls.grad2[i] = s * s * floatsDot(row, row)
		}
	}
	g.Restore()
}

// AfterStep does nothing.
func (g *GGPO) AfterStep(step int) error { return nil }

var (
	_ peft.Model    = (*GGPO)(nil)
	_ peft.Hook     = (*GGPO)(nil)
	_ peft.Metricer = (*GGPO)(nil)
)

// Train trains m's LoRA adapters on data with LoRA-GGPO: peft.Train on
// New(m, cfg), with the GGPO added to tcfg.Hooks. W₀ is restored when it
// returns, whether training finished or stopped early.
func Train(ctx context.Context, m peft.Model, data peft.Dataset, tcfg peft.TrainConfig, cfg Config) (*peft.History, error) {
	g, err := New(m, cfg)
	if err != nil {
		return nil, err
	}
	defer g.Restore()
	tcfg.Hooks = append(append([]peft.Hook(nil), tcfg.Hooks...), g)
	return peft.Train(ctx, g, data, tcfg)
}

func init() {
	peft.Register(peft.Method{
		Name:    "LoRA-GGPO",
		Kind:    peft.HookMethod,
		Paper:   "Chang, Guo, Chang and Wu 2025, LoRA-GGPO: Mitigating Double Descent in LoRA Fine-Tuning via Gradient-Guided Perturbation Optimization, arXiv:2502.14538 (v1)",
		Package: "github.com/gopeft/gopeft/peft/loraggpo",
		Summary: "trains LoRA at W' + ε, ε Gaussian with per-row scale from ‖W'ᵢ‖ and the previous step's gradient row norm; W₀ restored before each update",
	})
}
