package abmll

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// TaskSource is a distribution of tasks for meta-learning: each call draws
// one task and returns its support set (what Adapt sees) and its query set
// (what the adapted model is scored on). RegressionTasks is one.
type TaskSource interface {
	Task(rng *rand.Rand) (support, query peft.Batch)
}

// MetaConfig configures MetaTrain and Adapt. DefaultMetaConfig gives
// gopeft's defaults; a zero field means zero, not the default.
//
// The loss of task i, as ABMLL states it (Zhang, Snell and Griffiths,
// 2025), with q(φ_i) and p(φ_i|θ) the layers' diagonal Gaussians over ΔW:
//
//	L_i = E_q[−log p(D_i | φ_i)] + β·KL(q(φ_i) ‖ p(φ_i | θ))
//	meta-loss = mean_i L_i(query) + γ·KL(q(θ) ‖ p(θ)),   p(θ) = N(0, PriorStd²)
//
// −log p(D|φ) is the model's Loss (mean squared error for a regression
// model, cross-entropy for a classifier): a per-example mean, so β and γ
// are per example too. Each E_q is a one-sample reparameterized estimate
// (ΔW = μ + σ⊙ε, ε fresh for every forward pass).
type MetaConfig struct {
	MetaSteps    int     // outer steps
	TasksPerStep int     // tasks averaged in each outer step (the meta-batch)
	InnerSteps   int     // K: SGD steps from θ to φ_i on the support set
	InnerLR      float64 // the inner SGD step size
	OuterLR      float64 // the learning rate of Optimizer on θ
	Beta         float64 // β ≥ 0: weight of KL(q(φ_i) ‖ p(φ_i | θ))
	Gamma        float64 // γ ≥ 0: weight of KL(q(θ) ‖ p(θ))
	PriorStd     float64 // std of the hyperprior p(θ) on each entry of ΔW, > 0
	// Optimizer updates θ from the meta-gradient; nil means AdamW with no
	// weight decay (a fresh one per MetaTrain call).
	Optimizer peft.Optimizer
	Seed      int64 // seeds the task draws and the noise ε
	// Every and Callback, if both set, report progress every Every steps.
	Every    int
	Callback func(step int, h *peft.History)
}

// DefaultMetaConfig returns gopeft's defaults (none is confirmed by the
// paper, whose values gopeft could not read): 5 inner steps of SGD at
// 0.1, 4 tasks per outer step, AdamW at 1e-2, β = 1e-3, γ = 1e-5,
// PriorStd 1, 200 outer steps. The defaults are what the tests' regression
// tasks train well with; β and γ are small because a KL sums over every
// entry of every adapted ΔW while the data term is a per-example mean.
func DefaultMetaConfig() MetaConfig {
	return MetaConfig{MetaSteps: 200, TasksPerStep: 4, InnerSteps: 5, InnerLR: 0.1, OuterLR: 1e-2,
		Beta: 1e-3, Gamma: 1e-5, PriorStd: 1}
}

// check returns an error naming the field and its value if cfg is out of
// range; outer says whether the outer-loop fields are used.
func (cfg MetaConfig) check(outer bool) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: ABMLL: MetaConfig.%s = %v; want %s", field, v, want)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case cfg.InnerSteps < 0:
		return bad("InnerSteps", cfg.InnerSteps, "≥ 0")
	case cfg.InnerLR < 0 || !finite(cfg.InnerLR):
		return bad("InnerLR", cfg.InnerLR, "a finite value ≥ 0")
	case cfg.Beta < 0 || !finite(cfg.Beta):
		return bad("Beta", cfg.Beta, "a finite β ≥ 0")
	}
	if !outer {
		return nil
	}
	switch {
	case cfg.MetaSteps < 1:
		return bad("MetaSteps", cfg.MetaSteps, "≥ 1")
	case cfg.TasksPerStep < 1:
		return bad("TasksPerStep", cfg.TasksPerStep, "≥ 1")
	case !(cfg.OuterLR > 0) || !finite(cfg.OuterLR):
		return bad("OuterLR", cfg.OuterLR, "a finite value > 0")
	case cfg.Gamma < 0 || !finite(cfg.Gamma):
		return bad("Gamma", cfg.Gamma, "a finite γ ≥ 0")
	case cfg.Gamma > 0 && (!(cfg.PriorStd > 0) || !finite(cfg.PriorStd)):
		return bad("PriorStd", cfg.PriorStd, "a finite σ_p > 0 when γ > 0")
	}
	return nil
}

// KL returns the closed-form KL divergence between two diagonal Gaussians
// over the same entries, q = N(muQ, sigmaQ²) and p = N(muP, sigmaP²), all
// (d×k):
//
//	KL(q ‖ p) = Σ_ij log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²)/(2σ_p²) − ½
//
// It panics if the shapes differ.
func KL(muQ, sigmaQ, muP, sigmaP *mat.Dense) float64 {
	d, k := muQ.Dims()
	for _, m := range []*mat.Dense{sigmaQ, muP, sigmaP} {
		if r, c := m.Dims(); r != d || c != k {
			panic(peft.ShapeError{Op: "abmll.KL", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(d, k) + ", the shape of muQ"})
		}
	}
	var kl float64
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			sq, sp := sigmaQ.At(i, j), sigmaP.At(i, j)
			dm := muQ.At(i, j) - muP.At(i, j)
			kl += math.Log(sp/sq) + (sq*sq+dm*dm)/(2*sp*sp) - 0.5
		}
	}
	return kl
}

// klTensor returns KL(N(μ_q, e^{2ρ_q}) ‖ N(μ_p, e^{2ρ_p})) (1×1) as a graph
// node, from means and log-stds (d×k each), in log space:
//
//	Σ (ρ_p − ρ_q) + ½·e^{2(ρ_q − ρ_p)} + ½·(μ_q − μ_p)²·e^{−2ρ_p} − ½
func klTensor(muQ, rhoQ, muP, rhoP *peft.Tensor) *peft.Tensor {
	d, k := muQ.Dims()
	dm := peft.Sub(muQ, muP)
	ratio := expOf(peft.Scale(peft.Sub(rhoQ, rhoP), 2))
	prec := expOf(peft.Scale(rhoP, -2))
	sum := peft.Add(peft.SumAll(peft.Sub(rhoP, rhoQ)),
		peft.Scale(peft.Add(peft.SumAll(ratio), peft.SumAll(peft.Mul(peft.Mul(dm, dm), prec))), 0.5))
	return peft.Add(sum, peft.NewConst(mat.NewDense(1, 1, []float64{-0.5 * float64(d*k)})))
}

// state is a copy of one adapter's four factors.
type state [4]*mat.Dense

func snapshot(a *ABMLL) state {
	var s state
	for i, p := range a.Params() {
		s[i] = mat.DenseCopyOf(p.Value)
	}
	return s
}

func (s state) restore(a *ABMLL) {
	for i, p := range a.Params() {
		p.Value.Copy(s[i])
	}
}

// thetaNode holds θ of one adapter as trainable leaves, for the KL terms'
// gradients and for the outer optimizer.
type thetaNode struct {
	a      *ABMLL
	params [4]*peft.Tensor // A_μ, B_μ, A_σ, B_σ of θ
}

func (t *thetaNode) mu() *peft.Tensor  { return peft.MatMul(t.params[1], t.params[0]) }
func (t *thetaNode) rho() *peft.Tensor { return shift(peft.MatMul(t.params[3], t.params[2]), t.a.C) }

// fixed returns θ's mean and log-std as constants (for the inner loop,
// where θ does not move).
func (t *thetaNode) fixed() (mu, rho *peft.Tensor) {
	return peft.NewConst(mat.DenseCopyOf(t.mu().Value)), peft.NewConst(mat.DenseCopyOf(t.rho().Value))
}

// adaptersOf returns m's active ABMLL adapters, or an error naming the
// caller if there are none.
func adaptersOf(op string, m peft.Model) ([]*ABMLL, error) {
	ads := Of(m)
	if len(ads) == 0 {
		return nil, fmt.Errorf("peft: ABMLL: %s: the model has no active ABMLL adapter (attach one with abmll.Add)", op)
	}
	return ads, nil
}

// innerLoop takes cfg.InnerSteps SGD steps of the adapters (holding φ,
// started at θ) on support, minimising Loss + β·Σ KL(q(φ) ‖ p(φ|θ)) with θ
// (muP, rhoP) fixed, and returns the losses before each step. The noise is
// redrawn from rng before every forward pass.
func innerLoop(ctx context.Context, m peft.Model, ads []*ABMLL, muP, rhoP []*peft.Tensor, support peft.Batch, cfg MetaConfig, rng *rand.Rand) ([]float64, error) {
	losses := make([]float64, 0, cfg.InnerSteps)
	for step := 0; step < cfg.InnerSteps; step++ {
		if err := ctx.Err(); err != nil {
			return losses, err
		}
		for _, a := range ads {
			a.Resample(rng)
			for _, p := range a.Params() {
				p.ZeroGrad()
			}
		}
		loss := m.Loss(support)
		if cfg.Beta > 0 {
			for i, a := range ads {
				loss = peft.Add(loss, peft.Scale(klTensor(a.muTensor(), a.rhoTensor(), muP[i], rhoP[i]), cfg.Beta))
			}
		}
		v := loss.Scalar()
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return losses, fmt.Errorf("peft: ABMLL: inner loss is %v at inner step %d; lower InnerLR (%g)", v, step+1, cfg.InnerLR)
		}
		losses = append(losses, v)
		loss.Backward()
		for _, a := range ads {
			for _, p := range a.Params() {
				p.Value.Add(p.Value, scaled(p.Grad, -cfg.InnerLR))
			}
		}
	}
	return losses, nil
}

func scaled(g *mat.Dense, s float64) *mat.Dense {
	var out mat.Dense
	out.Scale(s, g)
	return &out
}

// MetaTrain meta-learns θ, the global Gaussian held by m's active ABMLL
// adapters, over tasks (Zhang, Snell and Griffiths, 2025). Each outer step
// draws cfg.TasksPerStep tasks; for each, φ_i starts at θ and takes
// cfg.InnerSteps SGD steps on the support set (the amortized posterior: no
// per-task parameters are kept), then the query loss L_i (see MetaConfig)
// is differentiated. The meta-gradient of θ is first-order:
//
//	∇_θ ≈ mean_i [ ∂L_i/∂φ_i  +  β·∂KL(q(φ_i) ‖ p(φ_i|θ))/∂θ ]  +  γ·∂KL(q(θ) ‖ p(θ))/∂θ
//
// that is, the Jacobian ∂φ_i/∂θ of the inner steps is taken as the
// identity, as in first-order MAML (gopeft's autograd has no second
// derivatives); the KL terms' direct dependence on θ is exact. ABML
// differentiates through the inner steps; this is the departure. With σ →
// 0 and β = γ = 0 the update is exactly first-order MAML on the LoRA pair
// (B_μ, A_μ), which the tests check. The base weights stay frozen.
//
// It returns the history of the mean query loss per outer step. The
// adapters end holding θ with ε = 0. It stops with ctx's error if ctx is
// cancelled, leaving θ as of the last finished step.
func MetaTrain(ctx context.Context, m peft.Model, tasks TaskSource, cfg MetaConfig) (*peft.History, error) {
	if err := cfg.check(true); err != nil {
		return nil, err
	}
	ads, err := adaptersOf("MetaTrain", m)
	if err != nil {
		return nil, err
	}
	opt := cfg.Optimizer
	if opt == nil {
		opt = peft.NewAdamW(0)
	}
	taskRng := rand.New(rand.NewSource(cfg.Seed))
	noiseRng := rand.New(rand.NewSource(cfg.Seed + 1))
	thetas := make([]*thetaNode, len(ads))
	var all []*peft.Tensor
	for i, a := range ads {
		t := &thetaNode{a: a}
		for j, p := range a.Params() {
			t.params[j] = peft.NewParam(p.Name+".theta", mat.DenseCopyOf(p.Value))
			all = append(all, t.params[j])
		}
		thetas[i] = t
	}
	load := func() { // adapters ← θ
		for _, t := range thetas {
			for j, p := range t.a.Params() {
				p.Value.Copy(t.params[j].Value)
			}
		}
	}
	defer func() {
		load()
		for _, a := range ads {
			a.ClearNoise()
		}
	}()
	m.SetTraining(true)
	defer m.SetTraining(false)
	h := &peft.History{Name: "ABMLL meta-training"}
	start := time.Now()
	for step := 1; step <= cfg.MetaSteps; step++ {
		for _, p := range all {
			p.ZeroGrad()
		}
		muP := make([]*peft.Tensor, len(ads))
		rhoP := make([]*peft.Tensor, len(ads))
		for i, t := range thetas {
			muP[i], rhoP[i] = t.fixed()
		}
		var mean float64
		examples := 0
		for task := 0; task < cfg.TasksPerStep; task++ {
			support, query := tasks.Task(taskRng)
			load()
			if _, err := innerLoop(ctx, m, ads, muP, rhoP, support, cfg, noiseRng); err != nil {
				return h, err
			}
			for _, a := range ads {
				a.Resample(noiseRng)
				for _, p := range a.Params() {
					p.ZeroGrad()
				}
			}
			loss := m.Loss(query)
			if cfg.Beta > 0 {
				for i, a := range ads {
					loss = peft.Add(loss, peft.Scale(klTensor(a.muTensor(), a.rhoTensor(), thetas[i].mu(), thetas[i].rho()), cfg.Beta))
				}
			}
			v := loss.Scalar()
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return h, fmt.Errorf("peft: ABMLL: query loss is %v at outer step %d; lower InnerLR (%g) or OuterLR (%g)", v, step, cfg.InnerLR, cfg.OuterLR)
			}
			mean += v
			examples += query.Size()
			loss.Backward()
			// First-order: the gradient at φ_i is added to θ's.
			for _, t := range thetas {
				for j, p := range t.a.Params() {
					t.params[j].Grad.Add(t.params[j].Grad, p.Grad)
				}
			}
		}
		n := float64(cfg.TasksPerStep)
		for _, p := range all {
			p.Grad.Scale(1/n, p.Grad)
		}
		if cfg.Gamma > 0 {
			prior := math.Log(cfg.PriorStd)
			var reg *peft.Tensor
			for _, t := range thetas {
				d, k := t.a.Dims()
				kl := klTensor(t.mu(), t.rho(), peft.NewConst(mat.NewDense(d, k, nil)), shift(peft.NewConst(mat.NewDense(d, k, nil)), prior))
				if reg == nil {
					reg = kl
				} else {
					reg = peft.Add(reg, kl)
				}
			}
			peft.Scale(reg, cfg.Gamma).Backward()
			mean += n * cfg.Gamma * reg.Scalar()
		}
		opt.Step(all, cfg.OuterLR)
		h.Steps = append(h.Steps, step)
		h.Loss = append(h.Loss, mean/n)
		h.LR = append(h.LR, cfg.OuterLR)
		tok := examples
		if len(h.Tokens) > 0 {
			tok += h.Tokens[len(h.Tokens)-1]
		}
		h.Tokens = append(h.Tokens, tok)
		h.StepTime = append(h.StepTime, time.Since(start).Seconds())
		start = time.Now()
		if cfg.Callback != nil && cfg.Every > 0 && step%cfg.Every == 0 {
			cfg.Callback(step, h)
		}
	}
	return h, nil
}

// Adapt runs ABMLL's amortized inference for one task: from θ, the values
// m's active ABMLL adapters hold, it takes cfg.InnerSteps SGD steps on
// support (Loss + β·KL(q(φ) ‖ p(φ|θ)), one noise draw per step from
// cfg.Seed) and leaves φ in the adapters with ε = 0, so that the model
// predicts with the posterior mean. It returns restore, which puts θ back,
// and the support losses before each step. Only MetaConfig's inner-loop
// fields are read.
func Adapt(ctx context.Context, m peft.Model, support peft.Batch, cfg MetaConfig) (restore func(), losses []float64, err error) {
	if err := cfg.check(false); err != nil {
		return nil, nil, err
	}
	ads, err := adaptersOf("Adapt", m)
	if err != nil {
		return nil, nil, err
	}
	saved := make([]state, len(ads))
	muP := make([]*peft.Tensor, len(ads))
	rhoP := make([]*peft.Tensor, len(ads))
	for i, a := range ads {
		saved[i] = snapshot(a)
		muP[i] = peft.NewConst(a.Mean())
		rhoP[i] = peft.NewConst(mat.DenseCopyOf(a.rhoTensor().Value))
	}
	restore = func() {
		for i, a := range ads {
			saved[i].restore(a)
			a.ClearNoise()
		}
	}
	m.SetTraining(true)
	losses, err = innerLoop(ctx, m, ads, muP, rhoP, support, cfg, rand.New(rand.NewSource(cfg.Seed)))
	m.SetTraining(false)
	for _, a := range ads {
		a.ClearNoise()
	}
	if err != nil {
		restore()
		return nil, losses, err
	}
	return restore, losses, nil
}

// Forwarder is a model with a forward pass on a matrix input (peft.MLP,
// peft.LinearModel), for Predict.
type Forwarder interface {
	Forward(x *peft.Tensor) *peft.Tensor
	Modules() []*peft.Linear
}

// Predict returns the mean and standard deviation, entry by entry, of m's
// output on x (n×k) over samples draws of every ABMLL adapter's ΔW (from
// rng): the Bayesian predictive spread that ABMLL's uncertainty comes
// from. It leaves ε = 0. samples must be at least 2.
func Predict(m Forwarder, x *mat.Dense, samples int, rng *rand.Rand) (mean, std *mat.Dense) {
	if samples < 2 {
		panic(peft.ArgError{Op: "abmll.Predict", Msg: fmt.Sprintf("samples = %d; want ≥ 2", samples)})
	}
	var ads []*ABMLL
	for _, l := range m.Modules() {
		if a, ok := l.ActiveAdapter().(*ABMLL); ok {
			ads = append(ads, a)
		}
	}
	defer func() {
		for _, a := range ads {
			a.ClearNoise()
		}
	}()
	var sum, sq mat.Dense
	in := peft.NewConst(x)
	for s := 0; s < samples; s++ {
		for _, a := range ads {
			a.Resample(rng)
		}
		y := m.Forward(in).Value
		if s == 0 {
			r, c := y.Dims()
			sum.ReuseAs(r, c)
			sq.ReuseAs(r, c)
			sum.Zero()
			sq.Zero()
		}
		sum.Add(&sum, y)
		var y2 mat.Dense
		y2.MulElem(y, y)
		sq.Add(&sq, &y2)
	}
	n := float64(samples)
	mean = mat.NewDense(sum.RawMatrix().Rows, sum.RawMatrix().Cols, nil)
	mean.Scale(1/n, &sum)
	std = mat.NewDense(sum.RawMatrix().Rows, sum.RawMatrix().Cols, nil)
	std.Apply(func(i, j int, v float64) float64 {
		mu := mean.At(i, j)
		return math.Sqrt(math.Max(0, (v-n*mu*mu)/(n-1)))
	}, &sq)
	return mean, std
}
