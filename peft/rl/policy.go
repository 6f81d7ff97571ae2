package rl

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file holds the policy side of the lab: sampling completions from the
// GPT, and the per-token log-probabilities and KL of sampled completions
// under the policy and under the reference.
//
// The policy at temperature τ is
//
//	π_θ(a | s) = softmax(z(s)/τ)_a          z(s) the GPT's logits (V)
//
// and every log-probability, ratio and KL in this package is of that
// distribution at the τ the rollouts were sampled with, as TRL divides the
// logits by the sampling temperature before its log-softmax. The reference
// π_ref is the same GPT with its adapters disabled (peft.DisableAdapters),
// at the same τ: no copy of the model is made.

// Rollouts is a batch of B sampled sequences, each a prompt of P tokens and
// a completion of n: Seqs[b] = prompt ‖ completion, len P + n.
//
// A completion may end before its n tokens (see Stopper): Lens[b] tokens
// count, and the rest is padding, left out of every loss, KL and
// likelihood as the tokens after an end-of-sequence token are in TRL and
// verl. Lens nil means all n count.
type Rollouts struct {
	Seqs        [][]int // (B) sequences of P + n tokens
	PromptLen   int     // P
	Temperature float64 // τ the completions were sampled at
	Lens        []int   // (B) tokens of each completion that count, 1…n; nil: n
}

// Len returns how many tokens of completion b count.
func (r *Rollouts) Len(b int) int {
	if r.Lens == nil {
		return r.N()
	}
	return r.Lens[b]
}

// Stopper is a Task whose completions may end before n characters: End
// returns how many characters of completion count (1…n), the end marker
// included.
type Stopper interface {
	End(completion string) int
}

// B returns the number of sequences.
func (r *Rollouts) B() int { return len(r.Seqs) }

// N returns the completion length n.
func (r *Rollouts) N() int {
	if len(r.Seqs) == 0 {
		return 0
	}
	return len(r.Seqs[0]) - r.PromptLen
}

// Completion returns the completion tokens of sequence b.
func (r *Rollouts) Completion(b int) []int { return r.Seqs[b][r.PromptLen:] }

// Sample continues each of prompts (token ids, all of one length P ≥ 1) by n
// tokens drawn from g at temperature τ > 0 with rng, all prompts in one
// forward pass per token. The same model, prompts and rng state give the
// same rollouts. It stops with ctx's error if ctx is cancelled. Prompts of
// unequal lengths, or a prompt plus n longer than g's context, are an
// error.
func Sample(ctx context.Context, g *peft.GPT, prompts [][]int, n int, temperature float64, rng *rand.Rand) (*Rollouts, error) {
	if len(prompts) == 0 || n < 1 {
		return nil, fmt.Errorf("peft: rl.Sample: %d prompts, n = %d; want ≥ 1 of each", len(prompts), n)
	}
	if !(temperature > 0) || math.IsInf(temperature, 0) {
		return nil, fmt.Errorf("peft: rl.Sample: temperature τ = %v; want a finite τ > 0", temperature)
	}
	P := len(prompts[0])
	V := g.Config.Vocab
	for i, p := range prompts {
		if len(p) != P || P == 0 {
			return nil, fmt.Errorf("peft: rl.Sample: prompt %d has %d tokens, prompt 0 has %d; want equal lengths ≥ 1", i, len(p), P)
		}
		for _, id := range p {
			if id < 0 || id >= V {
				return nil, fmt.Errorf("peft: rl.Sample: prompt %d has token %d outside the vocabulary [0, %d)", i, id, V)
			}
		}
	}
	if P+n > g.Config.Context {
		return nil, fmt.Errorf("peft: rl.Sample: prompt of %d tokens plus n = %d exceeds the context of %d", P, n, g.Config.Context)
	}
	B := len(prompts)
	seqs := make([][]int, B)
	for b, p := range prompts {
		seqs[b] = append(make([]int, 0, P+n), p...)
	}
	probs := make([]float64, V)
	flat := make([]int, 0, B*(P+n))
	for t := 0; t < n; t++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		L := P + t
		flat = flat[:0]
		for _, s := range seqs {
			flat = append(flat, s...)
		}
		z := g.Forward(flat, B).Value // (B·L×V)
		for b := range seqs {
			logSoftmaxTo(probs, z.RawRowView(b*L+L-1), temperature)
			u, acc, next := rng.Float64(), 0.0, V-1
			for j, lp := range probs {
				acc += math.Exp(lp)
				if u < acc {
					next = j
					break
				}
			}
			seqs[b] = append(seqs[b], next)
		}
	}
	return &Rollouts{Seqs: seqs, PromptLen: P, Temperature: temperature}, nil
}

// logSoftmaxTo writes log softmax(z/τ) into dst (V).
func logSoftmaxTo(dst, z []float64, tau float64) {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, v/tau)
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(v/tau - m)
	}
	lse := m + math.Log(s)
	for j, v := range z {
		dst[j] = v/tau - lse
	}
}

// forward returns g's logits (B·(L−1)×V) for r's sequences without their
// last token (the inputs), and the targets (B·(L−1)), the next tokens.
func forward(g *peft.GPT, r *Rollouts) (*peft.Tensor, []int) {
	B, L := r.B(), r.PromptLen+r.N()
	in := make([]int, 0, B*(L-1))
	tg := make([]int, 0, B*(L-1))
	for _, s := range r.Seqs {
		in = append(in, s[:L-1]...)
		tg = append(tg, s[1:]...)
	}
	return g.Forward(in, B), tg
}

// row returns the row of forward's logits that predicts completion token t
// of sequence b: the one at input position P−1+t.
func (r *Rollouts) row(b, t int) int {
	L := r.PromptLen + r.N()
	return b*(L-1) + r.PromptLen - 1 + t
}

// LogProbs returns log π(c_t | prompt, c_<t) at r's temperature for every
// completion token, (B) rows of n, under g as it is (its adapters enabled
// or not): one forward pass.
func LogProbs(g *peft.GPT, r *Rollouts) [][]float64 {
	z, tg := forward(g, r)
	return tokenLogProbs(z.Value, tg, r)
}

func tokenLogProbs(z *mat.Dense, tg []int, r *Rollouts) [][]float64 {
	_, V := z.Dims()
	ls := make([]float64, V)
	out := make([][]float64, r.B())
	for b := range out {
		out[b] = make([]float64, r.N())
		for t := range out[b] {
			i := r.row(b, t)
			logSoftmaxTo(ls, z.RawRowView(i), r.Temperature)
			out[b][t] = ls[tg[i]]
		}
	}
	return out
}

// RefLogProbs returns LogProbs under the reference policy: g with its
// adapters disabled for the one forward pass, and enabled again after it.
func RefLogProbs(g *peft.GPT, r *Rollouts) [][]float64 {
	peft.DisableAdapters(g)
	defer peft.EnableAdapters(g)
	return LogProbs(g, r)
}

// ExactKL returns, for every completion position of r, the KL divergence
// over the whole vocabulary from the reference to the policy at r's
// temperature,
//
//	KL(π_θ ‖ π_ref)(s_t) = Σ_a π_θ(a|s_t)·(log π_θ(a|s_t) − log π_ref(a|s_t))
//
// (B) rows of n: two forward passes, one with the adapters disabled. It is
// a diagnostic; the losses use the per-sample K3 estimate, whose mean over
// π_θ is this KL exactly.
func ExactKL(g *peft.GPT, r *Rollouts) [][]float64 {
	z, _ := forward(g, r)
	peft.DisableAdapters(g)
	zr, _ := forward(g, r)
	peft.EnableAdapters(g)
	_, V := z.Dims()
	lp, lq := make([]float64, V), make([]float64, V)
	out := make([][]float64, r.B())
	for b := range out {
		out[b] = make([]float64, r.N())
		for t := range out[b] {
			i := r.row(b, t)
			logSoftmaxTo(lp, z.Value.RawRowView(i), r.Temperature)
			logSoftmaxTo(lq, zr.Value.RawRowView(i), r.Temperature)
			kl := 0.0
			for a := range lp {
				kl += math.Exp(lp[a]) * (lp[a] - lq[a])
			}
			out[b][t] = kl
		}
	}
	return out
}

// K3 returns Schulman's k3 estimate of KL(π_θ ‖ π_ref) from one token a
// drawn from π_θ, the form GRPO's loss uses (Shao et al., 2024, eq. 4):
//
//	k3 = ρ − log ρ − 1,   ρ = π_ref(a)/π_θ(a) = exp(logRef − logp)
//
// It is ≥ 0, 0 exactly when the two log-probabilities agree, and its mean
// over a ~ π_θ is KL(π_θ ‖ π_ref). Its derivative in logp is 1 − ρ.
func K3(logp, logRef float64) float64 {
	d := logRef - logp
	return math.Exp(d) - d - 1
}

// MeanLogProbs returns the mean log-prob of the tokens of each completion
// of r that count: (1/|o_b|)·Σ_{t<|o_b|} logp[b][t], the likelihood by
// which the unlikeliness paper's code ranks samples.
func MeanLogProbs(r *Rollouts, logp [][]float64) []float64 {
	out := make([]float64, len(logp))
	for b, l := range logp {
		n := r.Len(b)
		for _, v := range l[:n] {
			out[b] += v
		}
		out[b] /= float64(n)
	}
	return out
}
