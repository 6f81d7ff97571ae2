package rl

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// PPOConfig configures PPO.
type PPOConfig struct {
	Steps       int     // iterations of sample → score → update, ≥ 1
	Batch       int     // rollouts per iteration, ≥ 1
	Temperature float64 // sampling temperature τ > 0 (the paper's: 0.8)
	Epochs      int     // PPO epochs on each batch, ≥ 1
	Clip        float64 // ε of the clipped ratio, > 0
	KL          float64 // β of the per-token KL penalty in the reward, ≥ 0
	Gamma       float64 // discount γ in [0, 1]
	Lambda      float64 // GAE's λ in [0, 1]
	LR          float64 // AdamW's rate for the adapter (constant), > 0
	ValueLR     float64 // Adam's rate for the value head, > 0
	ClipNorm    float64 // clip the policy gradient norm to this if > 0
	Seed        int64   // seeds the prompts and the sampling
	Name        string  // the History's label
	// Callback, if set, is called after every step with the history so far.
	Callback func(step int, h *History)
}

// DefaultPPO returns the lab's PPO settings for the word task on the tiny
// GPT: 20 steps of 48 rollouts at τ = 1, 2 epochs, ε = 0.2, β = 0.02, γ = 1, λ = 0.95
// (TRL's defaults), AdamW at 3e-3 for the adapter and 1e-2 for the value
// head, gradient norm clipped to 1. The paper's lr 9e-6 and τ = 0.8 are for
// a 7B model.
func DefaultPPO() PPOConfig {
	return PPOConfig{Steps: 20, Batch: 48, Temperature: 1, Epochs: 2, Clip: 0.2, KL: 0.02, Gamma: 1, Lambda: 0.95,
		LR: 3e-3, ValueLR: 1e-2, ClipNorm: 1, Name: "PPO"}
}

func (c PPOConfig) check() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: rl.PPOConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case c.Steps < 1:
		return bad("Steps", c.Steps, "≥ 1")
	case c.Batch < 1:
		return bad("Batch", c.Batch, "≥ 1")
	case !(c.Temperature > 0) || math.IsInf(c.Temperature, 0):
		return bad("Temperature", c.Temperature, "a finite τ > 0")
	case c.Epochs < 1:
		return bad("Epochs", c.Epochs, "≥ 1")
	case !(c.Clip > 0) || math.IsInf(c.Clip, 0):
		return bad("Clip", c.Clip, "a finite ε > 0")
	case !(c.KL >= 0) || math.IsInf(c.KL, 0):
		return bad("KL", c.KL, "a finite β ≥ 0")
	case !(c.Gamma >= 0 && c.Gamma <= 1):
		return bad("Gamma", c.Gamma, "γ in [0, 1]")
	case !(c.Lambda >= 0 && c.Lambda <= 1):
		return bad("Lambda", c.Lambda, "λ in [0, 1]")
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("LR", c.LR, "a finite rate > 0")
	case !(c.ValueLR > 0) || math.IsInf(c.ValueLR, 0):
		return bad("ValueLR", c.ValueLR, "a finite rate > 0")
	case !(c.ClipNorm >= 0):
		return bad("ClipNorm", c.ClipNorm, "≥ 0 (0: no clipping)")
	}
	return nil
}

// ValueHead is PPO's critic: a linear map of the GPT's logits at a state,
//
//	V(s_t) = z(s_t)·w + b      z (1×V) the logits, w (V×1), b (1×1), init 0
//
// Because the GPT's head is linear (z = LN_f(x)·Headᵀ, Head V×C with
// V ≥ C), a linear map of the logits is a linear map of the final hidden
// state LN_f(x): the same family as TRL's value head on the last hidden
// state (when Head has full column rank C, as the shipped one does). It
// reads the logits detached, so the value loss trains w and b only and
// never the adapter — TRL's head shares the trunk; this keeps the policy's
// gradient the clipped objective's alone.
type ValueHead struct {
	W *peft.Tensor // (V×1)
	B *peft.Tensor // (1×1)
}

// NewValueHead returns a value head with w = 0, b = 0 for V logits.
func NewValueHead(V int) *ValueHead {
	return &ValueHead{W: peft.NewParam("value.weight", mat.NewDense(V, 1, nil)), B: peft.NewParam("value.bias", mat.NewDense(1, 1, nil))}
}

// Forward returns V for the rows of z (M×V) as an (M×1) tensor.
func (h *ValueHead) Forward(z *mat.Dense) *peft.Tensor {
	return peft.AddRow(peft.MatMul(peft.NewConst(z), h.W), h.B)
}

// GAE returns the generalized advantage estimates and returns of one
// trajectory of n steps (Schulman et al., 2016, arXiv:1506.02438), with
// the value after the last step 0:
//
//	δ_t = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γλ·A_{t+1},   R_t = A_t + V_t
//
// rewards and values have length n. Mismatched lengths panic.
func GAE(rewards, values []float64, gamma, lambda float64) (adv, ret []float64) {
	n := len(rewards)
	if len(values) != n {
		panic(peft.ShapeError{Op: "rl.GAE", Got: fmt.Sprintf("%d rewards, %d values", n, len(values)), Want: "one value per reward"})
	}
	adv, ret = make([]float64, n), make([]float64, n)
	next, a := 0.0, 0.0
	for t := n - 1; t >= 0; t-- {
		delta := rewards[t] + gamma*next - values[t]
		a = delta + gamma*lambda*a
		adv[t], ret[t] = a, a+values[t]
		next = values[t]
	}
	return adv, ret
}

// PPO trains g's trainable tensors (a LoRA put on it beforehand: see
// PPOLoRA) on task with Proximal Policy Optimization (Schulman et al.,
// 2017, arXiv:1707.06347) as "Improving the Language Understanding
// Capabilities of Large Language Models Using Reinforcement Learning" (Hu,
// Somayajula et al., 2024, arXiv:2410.11020) runs it through TRL after
// supervised fine-tuning: each token is an action, and each step
//
//  1. samples Batch completions of prompts from task at τ;
//  2. gives token t the reward r_t = −β·(log π_old − log π_ref) (TRL's
//     "kl" penalty, π_ref = g with its adapters disabled), plus the task's
//     reward on the last token;
//  3. estimates values with the ValueHead and advantages with GAE (γ, λ),
//     whitened over the batch;
//  4. for Epochs epochs takes an AdamW step up the clipped surrogate of
//     ClippedObjective (β = 0 there: the KL is in the reward) and an Adam
//     step down the value loss ½·mean((V − R)²).
//
// It returns what it recorded and the trained value head. Distinct counts
// the samples that share a prompt. When ctx is cancelled PPO stops before
// the next step and returns the history so far with an error wrapping
// ctx's. The same model, task, config and seed give the same history and
// weights.
func PPO(ctx context.Context, g *peft.GPT, v *peft.Vocab, task Task, cfg PPOConfig) (*History, *ValueHead, error) {
	if err := cfg.check(); err != nil {
		return nil, nil, err
	}
	lp, err := newLoop(ctx, g, v, task, cfg.Seed, cfg.Name)
	if err != nil {
		return nil, nil, err
	}
	opt, vopt := peft.NewAdamW(0), peft.NewAdamW(0)
	head := NewValueHead(g.Config.Vocab)
	vparams := []*peft.Tensor{head.W, head.B}
	for step := 1; step <= cfg.Steps; step++ {
		start := time.Now()
		prompts := make([]string, cfg.Batch)
		for i := range prompts {
			prompts[i] = task.Prompt(lp.rng)
		}
		ro, err := lp.rollout(step, prompts, cfg.Temperature)
		if err != nil {
			return lp.h, head, err
		}
		r := ro.r
		z := ro.logits.Value
		if r.Temperature != 1 {
			var s mat.Dense
			s.Scale(1/r.Temperature, z)
			z = &s
		}
		values := head.Forward(stateRows(z, r)).Value.RawMatrix().Data // (Σ|o_b|)
		n := r.N()
		adv := make([]float64, r.B()*n)    // per token, 0 on padding
		weight := make([]float64, r.B()*n) // 1/Σ|o_b| per counted token
		var counted, ret []float64
		total, k := 0, 0
		for b := 0; b < r.B(); b++ {
			total += r.Len(b)
		}
		for b := 0; b < r.B(); b++ {
			nb := r.Len(b)
			rw := make([]float64, nb)
			for t := range rw {
				rw[t] = -cfg.KL * (ro.old[b][t] - ro.ref[b][t])
			}
			rw[nb-1] += ro.rewards[b]
			a, rt := GAE(rw, values[k:k+nb], cfg.Gamma, cfg.Lambda)
			k += nb
			counted = append(counted, a...)
			ret = append(ret, rt...)
		}
		whiten(counted)
		k = 0
		for b := 0; b < r.B(); b++ {
			for t := 0; t < r.Len(b); t++ {
				adv[b*n+t] = counted[k]
				weight[b*n+t] = 1 / float64(total)
				k++
			}
		}
		old := flatten(ro.old)
		target := peft.NewConst(mat.NewDense(len(ret), 1, ret))
		for e := 0; e < cfg.Epochs; e++ {
			var zNow *mat.Dense
			if err := lp.update(step, opt, cfg.LR, cfg.ClipNorm, func() {
				zNow = policyStep(g, r, func(logp []float64) (float64, []float64) {
					return ClippedObjective(logp, old, nil, adv, weight, cfg.Clip, 0)
				})
			}); err != nil {
				return lp.h, head, err
			}
			// the critic on the states as the policy now sees them
			for _, p := range vparams {
				p.Grad = nil
			}
			d := peft.Sub(head.Forward(stateRows(zNow, r)), target)
			peft.Scale(peft.Mean(peft.Mul(d, d)), 0.5).Backward()
			vopt.Step(vparams, cfg.ValueLR)
		}
		lp.record(step, ro, time.Since(start))
		if cfg.Callback != nil {
			cfg.Callback(step, lp.h)
		}
	}
	return lp.h, head, nil
}

// stateRows returns the rows of the logits z (B·(L−1)×V) at the states
// before each completion token that counts, (Σ_b |o_b|×V) in sequence
// order.
func stateRows(z *mat.Dense, r *Rollouts) *mat.Dense {
	_, V := z.Dims()
	total := 0
	for b := 0; b < r.B(); b++ {
		total += r.Len(b)
	}
	out := mat.NewDense(total, V, nil)
	k := 0
	for b := 0; b < r.B(); b++ {
		for t := 0; t < r.Len(b); t++ {
			out.SetRow(k, z.RawRowView(r.row(b, t)))
			k++
		}
	}
	return out
}

// whiten shifts and scales x in place to mean 0 and standard deviation 1
// (population), as TRL whitens PPO's advantages; constant x becomes 0.
func whiten(x []float64) {
	m := mean(x)
	ss := 0.0
	for _, v := range x {
		ss += (v - m) * (v - m)
	}
	sd := math.Sqrt(ss / float64(len(x)))
	for i := range x {
		x[i] -= m
		if sd > 0 {
			x[i] /= sd + 1e-8
		}
	}
}
