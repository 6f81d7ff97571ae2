// Package perk is PERK: a LoRA used as a memory scratchpad that a few
// gradient steps write a context into at test time, with the LoRA's
// initialisation meta-trained so that the written-to LoRA answers
// questions about the context.
//
// Chen, Romanou, Weiss and Bosselut (2025), "PERK: Long-Context Reasoning
// as Parameter-Efficient Test-Time Learning", arXiv:2507.06415.
//
// The base model stays frozen. For an episode (a context and questions
// about it), with θ the LoRA's initialisation and η the inner step size:
//
//	φ₀ = θ;   φ_{t+1} = φ_t − η·∇_φ L_ctx(φ_t),   t = 0 … N−1    (inner loop)
//	L_out(θ) = L_question(φ_N)                                   (outer loss)
//
// where L_ctx is the causal-LM (or regression) loss of the context
// segments and L_question the loss of the answers. The outer loop
// minimises the mean of L_out over episodes by gradient steps on θ. PERK
// truncates the unrolling: the meta-gradient flows back only through the
// last T inner steps,
//
//	∇_θ L_out = ∇L_question(φ_N) · ∂φ_N/∂φ_{N−T},   ∂φ_{N−T}/∂θ := I
//
// (the first N−T steps run without a graph: φ_{N−T} = θ + stopgrad(φ_{N−T}
// − θ)), which bounds the memory of meta-training by T instead of N.
// At test time only the inner loop runs, on the new context (Adapt).
//
// The meta-gradient. gopeft's autograd has no higher-order gradients
// (each op's backward in peft/ops.go is a plain function, not itself
// differentiated), so ∂φ_{t+1}/∂φ_t = I − η·∇²L_ctx(φ_t) is applied as
// Hessian-vector products taken by central differences of gradients
// (MetaGradient, unroll.go): exact up to O(ε²), for any peft.Model with
// a deterministic forward pass, at 2T extra gradient evaluations per
// episode. T = 0 is first-order MAML. LinearToy.MetaGradient is the
// closed form on a linear model with a quadratic inner loss, the
// reference the tests check the general one against; the tests also check
// MetaGradient on the tiny GPT against central differences of the outer
// loss (with the first N−T steps frozen when T < N).
//
// The tiny GPT. KeyValueEpisodes is a toy recall task (context
// "c=4;a=7;…", questions "c=" → "4", chance 10%). The shipped GPT has never
// seen '=' or this format; PERK's base model is an LLM that already knows
// the format of its contexts. So the base is first trained on the task in
// context (KeyValueEpisodes.InContext: the context, then the pairs asked
// again; 400 steps teach the format, while its recall with the context in
// its input stays low, 21% after 400 steps and 56% after 2,000, as lesson
// 15 measures), then frozen, and the LoRA (rank 4, on the head) is
// meta-trained for the context-free questions. Measured by TestGPTKeyValue
// (2 pairs, N = T = 4, η = 0.3, 300 outer steps of 2 episodes, 1.9 s):
// after the inner loop on held-out contexts the question loss falls from
// 0.725 to 0.285 and recall rises from 55% to 72%; first-order (T = 0)
// from the same init reaches 0.361 and 70% in 0.7 s. Before
// meta-training the inner loop already learns which values the context
// holds (every answer is one of them) but barely which key each belongs
// to; the meta-trained init adds the binding. On the shipped GPT, with no
// in-context training, the same PERK run reaches 56% (loss 0.654).
//
// Defaults (DefaultConfig; the paper's N, T, η are not confirmed): N = 4
// inner steps, T = N, η = 0.1, outer AdamW at 1e-2. The inner learning
// rate is fixed, not learned.
package perk

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "PERK",
		Kind:    peft.HookMethod,
		Paper:   "Chen, Romanou, Weiss and Bosselut 2025, PERK: Long-Context Reasoning as Parameter-Efficient Test-Time Learning, arXiv:2507.06415",
		Package: "github.com/gopeft/gopeft/peft/perk",
		Summary: "meta-trains a LoRA's init so that N inner gradient steps on a context write it into the LoRA (meta-gradient through the last T steps by Hessian-vector products; closed form on a linear toy)",
	})
}

// Episode is one meta-learning example: the context the inner loop writes
// into the LoRA, and the questions the adapted model is scored on.
type Episode struct {
	Context  peft.Batch
	Question peft.Batch
}

// EpisodeSource draws episodes.
type EpisodeSource interface {
	Episode(rng *rand.Rand) Episode
}

// Config configures MetaTrain, Adapt and the linear toy.
type Config struct {
	InnerSteps      int     // N ≥ 1
	Truncate        int     // T in [0, N]: inner steps the meta-gradient flows back through (0: first-order)
	InnerLR         float64 // η > 0
	OuterLR         float64 // learning rate of Optimizer on θ
	MetaSteps       int     // outer steps
	EpisodesPerStep int     // episodes averaged per outer step
	// Optimizer updates θ; nil means AdamW with no weight decay.
	Optimizer peft.Optimizer
	Seed      int64 // seeds the episode draws
	// Every and Callback, if both set, report progress every Every steps.
	Every    int
	Callback func(step int, h *peft.History)
}

// DefaultConfig returns gopeft's defaults (see the package doc).
func DefaultConfig() Config {
	return Config{InnerSteps: 4, Truncate: 4, InnerLR: 0.1, OuterLR: 1e-2, MetaSteps: 100, EpisodesPerStep: 4}
}

// check returns an error naming the field and value if cfg is out of
// range; outer says whether the outer-loop fields are read.
func (cfg Config) check(outer bool) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: PERK: Config.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.InnerSteps < 1:
		return bad("InnerSteps", cfg.InnerSteps, "N ≥ 1")
	case cfg.Truncate < 0 || cfg.Truncate > cfg.InnerSteps:
		return bad("Truncate", cfg.Truncate, fmt.Sprintf("T in [0, InnerSteps = %d]", cfg.InnerSteps))
	case !(cfg.InnerLR > 0) || math.IsInf(cfg.InnerLR, 0):
		return bad("InnerLR", cfg.InnerLR, "a finite η > 0")
	}
	if !outer {
		return nil
	}
	switch {
	case cfg.MetaSteps < 1:
		return bad("MetaSteps", cfg.MetaSteps, "≥ 1")
	case cfg.EpisodesPerStep < 1:
		return bad("EpisodesPerStep", cfg.EpisodesPerStep, "≥ 1")
	case !(cfg.OuterLR > 0) || math.IsInf(cfg.OuterLR, 0):
		return bad("OuterLR", cfg.OuterLR, "a finite value > 0")
	}
	return nil
}

// memory returns the trainable adapter parameters of m: the scratchpad.
func memory(op string, m peft.Model) ([]*peft.Tensor, error) {
	var ps []*peft.Tensor
	for _, p := range peft.AdapterParams(m.Modules()) {
		if p.Trainable {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("peft: PERK: %s: the model has no trainable adapter parameter (attach a LoRA with lora.Add)", op)
	}
	return ps, nil
}

// innerLoop takes n SGD steps at lr on the loss of b, updating ps only,
// and returns the loss before each step.
func innerLoop(ctx context.Context, m peft.Model, ps []*peft.Tensor, b peft.Batch, n int, lr float64) ([]float64, error) {
	losses := make([]float64, 0, n)
	for t := 0; t < n; t++ {
		v, g, err := gradient(ctx, m, ps, b, fmt.Sprintf("inner step %d (lower InnerLR = %g)", t+1, lr))
		if err != nil {
			return losses, err
		}
		losses = append(losses, v)
		for i, p := range ps {
			p.Value.Add(p.Value, scaled(g[i], -lr))
		}
	}
	return losses, nil
}

// MetaTrain meta-trains the initialisation θ of m's trainable adapter
// parameters (a LoRA's A and B) over episodes from src: for each episode,
// φ_N comes from cfg.InnerSteps SGD steps on the context from θ, and θ
// takes an outer step along the mean over cfg.EpisodesPerStep episodes of
// the meta-gradient of the question loss at φ_N, truncated to the last
// cfg.Truncate inner steps (MetaGradient; T = 0 is first-order). It
// returns the history of the mean question loss after the inner loop; the
// adapters end holding θ, as they do when cfg.Callback runs. It stops
// with ctx's error if ctx is cancelled.
func MetaTrain(ctx context.Context, m peft.Model, src EpisodeSource, cfg Config) (*peft.History, error) {
	if err := cfg.check(true); err != nil {
		return nil, err
	}
	ps, err := memory("MetaTrain", m)
	if err != nil {
		return nil, err
	}
	opt := cfg.Optimizer
	if opt == nil {
		opt = peft.NewAdamW(0)
	}
	theta := make([]*peft.Tensor, len(ps))
	for i, p := range ps {
		theta[i] = peft.NewParam(p.Name+".init", mat.DenseCopyOf(p.Value))
	}
	load := func() {
		for i, p := range ps {
			p.Value.Copy(theta[i].Value)
		}
	}
	defer load()
	rng := rand.New(rand.NewSource(cfg.Seed))
	h := &peft.History{Name: fmt.Sprintf("PERK meta-training (T = %d of N = %d)", cfg.Truncate, cfg.InnerSteps)}
	start := time.Now()
	for step := 1; step <= cfg.MetaSteps; step++ {
		for _, t := range theta {
			t.ZeroGrad()
		}
		var mean float64
		seen := 0
		for e := 0; e < cfg.EpisodesPerStep; e++ {
			ep := src.Episode(rng)
			load()
			l, g, err := metaGradient(ctx, m, ps, ep, cfg)
			if err != nil {
				return h, err
			}
			mean += l
			seen += ep.Context.Size() + ep.Question.Size()
			for i := range g {
				theta[i].Grad.Add(theta[i].Grad, g[i])
			}
		}
		n := float64(cfg.EpisodesPerStep)
		for _, t := range theta {
			t.Grad.Scale(1/n, t.Grad)
		}
		opt.Step(theta, cfg.OuterLR)
		h.Steps = append(h.Steps, step)
		h.Loss = append(h.Loss, mean/n)
		h.LR = append(h.LR, cfg.OuterLR)
		if len(h.Tokens) > 0 {
			seen += h.Tokens[len(h.Tokens)-1]
		}
		h.Tokens = append(h.Tokens, seen)
		h.StepTime = append(h.StepTime, time.Since(start).Seconds())
		start = time.Now()
		if cfg.Callback != nil && cfg.Every > 0 && step%cfg.Every == 0 {
			load() // the callback sees θ, as after MetaTrain
			cfg.Callback(step, h)
		}
	}
	return h, nil
}

// Adapt is PERK at test time: cfg.InnerSteps SGD steps at cfg.InnerLR on
// the context, updating only m's trainable adapter parameters. It returns
// restore, which puts the initialisation back, and the context losses
// before each step.
func Adapt(ctx context.Context, m peft.Model, contextBatch peft.Batch, cfg Config) (restore func(), losses []float64, err error) {
	if err := cfg.check(false); err != nil {
		return nil, nil, err
	}
	ps, err := memory("Adapt", m)
	if err != nil {
		return nil, nil, err
	}
	saved := make([]*mat.Dense, len(ps))
	for i, p := range ps {
		saved[i] = mat.DenseCopyOf(p.Value)
	}
	restore = func() {
		for i, p := range ps {
			p.Value.Copy(saved[i])
		}
	}
	losses, err = innerLoop(ctx, m, ps, contextBatch, cfg.InnerSteps, cfg.InnerLR)
	if err != nil {
		restore()
		return nil, losses, err
	}
	return restore, losses, nil
}
