package perk

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// LinearToy is PERK on a linear model where the truncated meta-gradient is
// exact: a peft.LinearModel y = x·(W₀ + s·B·A)ᵀ, x (n×k), y (n×d), with a
// LoRA whose A (r×k) is frozen and whose B (d×r) is the memory, trained
// by mean squared error. With Z = X_c·Aᵀ (n_c×r) for the context inputs
// X_c (n_c×k), the inner gradient is affine in B,
//
//	∇_B L_ctx = (2s/(n_c·d))·(E₀ᵀ·Z + s·B·ZᵀZ),   E₀ = X_c·W₀ᵀ − Y_c
//
// so every inner step is B_{t+1} = B_t·M + C with the constant, symmetric
//
//	M = I_r − (2ηs²/(n_c·d))·ZᵀZ      (r×r)
//
// and the meta-gradient truncated to the last T of N steps is
//
//	∇_{B₀} L_out = ∇L_question(B_N) · M^T
//
// (M^N with no truncation; the identity, first-order, at T = 0). The
// gradients ∇L_ctx and ∇L_question come from gopeft's autograd; M is the
// closed form. A is not meta-trained: with A free the step is no longer
// affine in the memory, and this toy exists for an exact reference.
type LinearToy struct {
	Model *peft.LinearModel
	LoRA  *lora.LoRA // A frozen, B the memory
}

// NewLinearToy attaches to m a LoRA of rank r (α = r, so s = 1) with A
// drawn from seed and frozen, and B = 0. It is an error if r does not fit
// m's layer.
func NewLinearToy(m *peft.LinearModel, r int, seed int64) (*LinearToy, error) {
	ls, err := lora.Add(m, lora.Config{R: r, Targets: []string{m.Layer.Name}, Seed: seed})
	if err != nil {
		return nil, err
	}
	ls[0].A.Freeze()
	return &LinearToy{Model: m, LoRA: ls[0]}, nil
}

// gradAt returns L(b) and ∇_B L (d×r) at B = b for the batch, leaving B
// as it was.
func (toy *LinearToy) gradAt(b *mat.Dense, batch peft.Batch) (float64, *mat.Dense) {
	B := toy.LoRA.B
	old := mat.DenseCopyOf(B.Value)
	defer B.Value.Copy(old)
	B.Value.Copy(b)
	B.ZeroGrad()
	loss := toy.Model.Loss(batch)
	loss.Backward()
	return loss.Scalar(), mat.DenseCopyOf(B.Grad)
}

// Run takes steps inner SGD steps at lr on ep's context from B = b0 and
// returns B after them and the context loss before each step. The LoRA's
// own B is left as it was.
func (toy *LinearToy) Run(b0 *mat.Dense, ep Episode, steps int, lr float64) (b *mat.Dense, inner []float64) {
	b = mat.DenseCopyOf(b0)
	for t := 0; t < steps; t++ {
		l, g := toy.gradAt(b, ep.Context)
		inner = append(inner, l)
		g.Scale(-lr, g)
		b.Add(b, g)
	}
	return b, inner
}

// QuestionLoss returns the loss of ep's questions with B = b.
func (toy *LinearToy) QuestionLoss(b *mat.Dense, ep Episode) float64 {
	l, _ := toy.gradAt(b, ep.Question)
	return l
}

// Jacobian returns M = I − (2ηs²/(n_c·d))·ZᵀZ (r×r), Z = X_c·Aᵀ: the
// constant Jacobian of one inner step, B ↦ B·M + C.
func (toy *LinearToy) Jacobian(ep Episode, lr float64) *mat.Dense {
	n, _ := ep.Context.X.Dims()
	_, d := ep.Context.Y.Dims()
	s := toy.LoRA.Scaling()
	var z, m mat.Dense
	z.Mul(ep.Context.X, toy.LoRA.A.Value.T()) // (n_c×r)
	m.Mul(z.T(), &z)                          // (r×r) ZᵀZ
	m.Scale(-2*lr*s*s/float64(n*d), &m)
	r, _ := m.Dims()
	for i := 0; i < r; i++ {
		m.Set(i, i, m.At(i, i)+1)
	}
	return &m
}

// MetaGrad is what MetaGradient returns for one episode.
type MetaGrad struct {
	Outer      float64    // L_question(B_N)
	Inner      []float64  // the context loss before each of the N steps
	Grad       *mat.Dense // (d×r) ∇_{B₀} L_out through the last T steps, exact
	FirstOrder *mat.Dense // (d×r) ∇L_question(B_N), the first-order gradient (T = 0)
}

// MetaGradient runs PERK's inner loop on ep from the LoRA's current B
// (B₀) for cfg.InnerSteps steps at cfg.InnerLR and returns the outer loss
// and its exact gradient with respect to B₀ backpropagated through the
// last cfg.Truncate steps, ∇L_question(B_N)·M^T, with the first-order one.
// The LoRA's B is left as it was.
func (toy *LinearToy) MetaGradient(ep Episode, cfg Config) (MetaGrad, error) {
	if err := cfg.check(false); err != nil {
		return MetaGrad{}, err
	}
	bN, inner := toy.Run(toy.LoRA.B.Value, ep, cfg.InnerSteps, cfg.InnerLR)
	outer, g := toy.gradAt(bN, ep.Question)
	if math.IsNaN(outer) || math.IsInf(outer, 0) {
		return MetaGrad{}, fmt.Errorf("peft: PERK: question loss is %v after %d inner steps; lower InnerLR (%g)", outer, cfg.InnerSteps, cfg.InnerLR)
	}
	mg := MetaGrad{Outer: outer, Inner: inner, FirstOrder: mat.DenseCopyOf(g), Grad: g}
	M := toy.Jacobian(ep, cfg.InnerLR)
	for t := 0; t < cfg.Truncate; t++ { // g ← g·Mᵀ (= g·M), once per backpropagated step
		var next mat.Dense
		next.Mul(mg.Grad, M.T())
		mg.Grad = &next
	}
	return mg, nil
}

// MetaTrain meta-trains the toy's B₀ over episodes from src with the exact
// truncated meta-gradient (cfg.Truncate steps), or the first-order one if
// firstOrder is set, and returns the history of the mean question loss
// after the inner loop. It stops with ctx's error if ctx is cancelled.
func (toy *LinearToy) MetaTrain(ctx context.Context, src EpisodeSource, cfg Config, firstOrder bool) (*peft.History, error) {
	if err := cfg.check(true); err != nil {
		return nil, err
	}
	opt := cfg.Optimizer
	if opt == nil {
		opt = peft.NewAdamW(0)
	}
	B := toy.LoRA.B
	rng := rand.New(rand.NewSource(cfg.Seed))
	name := fmt.Sprintf("PERK linear toy (exact, T = %d)", cfg.Truncate)
	if firstOrder {
		name = "PERK linear toy (first-order)"
	}
	h := &peft.History{Name: name}
	start := time.Now()
	for step := 1; step <= cfg.MetaSteps; step++ {
		if err := ctx.Err(); err != nil {
			return h, err
		}
		r, c := B.Dims()
		sum := mat.NewDense(r, c, nil)
		var mean float64
		for e := 0; e < cfg.EpisodesPerStep; e++ {
			mg, err := toy.MetaGradient(src.Episode(rng), cfg)
			if err != nil {
				return h, err
			}
			if firstOrder {
				sum.Add(sum, mg.FirstOrder)
			} else {
				sum.Add(sum, mg.Grad)
			}
			mean += mg.Outer
		}
		n := float64(cfg.EpisodesPerStep)
		sum.Scale(1/n, sum)
		B.Grad = sum
		opt.Step([]*peft.Tensor{B}, cfg.OuterLR)
		B.ZeroGrad()
		h.Steps = append(h.Steps, step)
		h.Loss = append(h.Loss, mean/n)
		h.LR = append(h.LR, cfg.OuterLR)
		h.StepTime = append(h.StepTime, time.Since(start).Seconds())
		start = time.Now()
		if cfg.Callback != nil && cfg.Every > 0 && step%cfg.Every == 0 {
			cfg.Callback(step, h)
		}
	}
	return h, nil
}

// RegressionEpisodes draws linear-regression episodes around a teacher
// task: episode i's teacher is W₀ + ΔW* + Spread·G_i (G_i with N(0, 1/k)
// entries), its context Context examples and its questions Question
// others, x ~ N(0, I).
type RegressionEpisodes struct {
	Base              *peft.TeacherTask
	Spread            float64
	Context, Question int
}

// Episode draws one episode from rng.
func (s *RegressionEpisodes) Episode(rng *rand.Rand) Episode {
	d, k := s.Base.WStar.Dims()
	w := mat.DenseCopyOf(s.Base.WStar)
	sd := s.Spread / math.Sqrt(float64(k))
	w.Apply(func(_, _ int, v float64) float64 { return v + sd*rng.NormFloat64() }, w)
	batch := func(n int) peft.Batch {
		x := mat.NewDense(n, k, nil)
		x.Apply(func(_, _ int, _ float64) float64 { return rng.NormFloat64() }, x)
		y := mat.NewDense(n, d, nil)
		y.Mul(x, w.T())
		return peft.Batch{X: x, Y: y}
	}
	return Episode{Context: batch(s.Context), Question: batch(s.Question)}
}
