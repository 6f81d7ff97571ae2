package rl

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/gopeft/gopeft/peft"
)

// GroupAdvantages returns GRPO's group-relative advantages (Shao et al.,
// 2024, arXiv:2402.03300, §4.1.2): rewards holds consecutive groups of G
// samples of one prompt each, and within a group
//
//	A_i = (r_i − mean(r)) / (std(r) + eps)
//
// with std the sample standard deviation (divisor G − 1), as TRL's
// GRPOTrainer and the unlikeliness paper's code take it. A group whose
// rewards are all equal gets advantages 0 exactly (it carries no signal).
// With eps = 0 each other group's advantages have mean 0 and sample
// standard deviation 1. G < 2, or len(rewards) not a multiple of G,
// panics.
func GroupAdvantages(rewards []float64, G int, eps float64) []float64 {
	if G < 2 || len(rewards)%G != 0 {
		panic(peft.ArgError{Op: "rl.GroupAdvantages", Msg: fmt.Sprintf("%d rewards in groups of G = %d; want G ≥ 2 dividing the count", len(rewards), G)})
	}
	adv := make([]float64, len(rewards))
	for s := 0; s < len(rewards); s += G {
		grp := rewards[s : s+G]
		same := true
		mean := 0.0
		for _, r := range grp {
			mean += r
			same = same && r == grp[0]
		}
		if same {
			continue
		}
		mean /= float64(G)
		ss := 0.0
		for _, r := range grp {
			ss += (r - mean) * (r - mean)
		}
		std := math.Sqrt(ss / float64(G-1))
		for i, r := range grp {
			adv[s+i] = (r - mean) / (std + eps)
		}
	}
	return adv
}

// UnlikelinessRewards returns the rewards of "Rewarding the Unlikely" (He,
// Fried and Welleck, 2025, arXiv:2506.02355): within each group of G
// samples (consecutive, as in GroupAdvantages) the samples are ranked by
// their log-likelihood under the sampling policy, rank 0 the least likely
// and G − 1 the most, and
//
//	r̃_i = r_i · (1 − β·rank_i/G)
//
// so a correct sample (r = 1) gets 1 − β·rank/G, the rarest correct answer
// the most, and a wrong one (r = 0) stays 0. As in the paper's code the
// ranks are over all G samples of the group, wrong ones included, and
// equal log-likelihoods are ranked by their order in the group. seqLogp
// holds each sample's log-likelihood: GRPO passes the mean log-prob of its
// tokens (MeanLogProbs), as the paper's code does. β = 0 returns the rewards unchanged (plain GRPO); the paper uses
// β = 0.25. Mismatched lengths panic.
func UnlikelinessRewards(rewards, seqLogp []float64, G int, beta float64) []float64 {
	if G < 1 || len(rewards)%G != 0 || len(seqLogp) != len(rewards) {
		panic(peft.ArgError{Op: "rl.UnlikelinessRewards", Msg: fmt.Sprintf("%d rewards, %d log-likelihoods, G = %d; want equal counts, a multiple of G ≥ 1", len(rewards), len(seqLogp), G)})
	}
	out := append([]float64(nil), rewards...)
	idx := make([]int, G)
	for s := 0; s < len(rewards); s += G {
		for i := range idx {
			idx[i] = i
		}
		lp := seqLogp[s : s+G]
		sort.SliceStable(idx, func(a, b int) bool { return lp[idx[a]] < lp[idx[b]] })
		for rank, i := range idx {
			out[s+i] *= 1 - beta*float64(rank)/float64(G)
		}
	}
	return out
}

// GRPOConfig configures GRPO.
type GRPOConfig struct {
	Steps       int     // iterations of sample → score → update, ≥ 1
	Prompts     int     // prompts per iteration, ≥ 1
	Group       int     // G samples per prompt, ≥ 2
	Temperature float64 // sampling temperature τ > 0
	Epochs      int     // μ optimizer steps on each batch of rollouts, ≥ 1
	Clip        float64 // ε of the clipped ratio, > 0
	KL          float64 // β of the k3 KL penalty in the loss, ≥ 0
	LR          float64 // AdamW's rate (constant), > 0
	ClipNorm    float64 // clip the gradient norm to this if > 0
	AdvEps      float64 // eps of GroupAdvantages, ≥ 0
	// RankPenalty is β of the unlikeliness reward (UnlikelinessRewards);
	// 0 is plain GRPO.
	RankPenalty float64
	Seed        int64  // seeds the prompts and the sampling
	Name        string // the History's label
	// Callback, if set, is called after every step with the history so far.
	Callback func(step int, h *History)
}

// DefaultGRPO returns the lab's GRPO settings for the word task on the tiny
// GPT: 20 steps of 6 prompts × G = 8 samples at τ = 1, μ = 2 updates per
// batch, ε = 0.2, β = 0.02, AdamW at 3e-3 with the gradient norm clipped to
// 1, eps 1e-6, no rank penalty. Tina's own (1.5B model) settings are G = 6, τ =
// 0.7, lr 1e-6; the lab's rate is far larger because the model, the
// adapter and the run are tiny.
func DefaultGRPO() GRPOConfig {
	return GRPOConfig{Steps: 20, Prompts: 6, Group: 8, Temperature: 1, Epochs: 2, Clip: 0.2, KL: 0.02,
		LR: 3e-3, ClipNorm: 1, AdvEps: 1e-6, Name: "GRPO"}
}

func (c GRPOConfig) check() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: rl.GRPOConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case c.Steps < 1:
		return bad("Steps", c.Steps, "≥ 1")
	case c.Prompts < 1:
		return bad("Prompts", c.Prompts, "≥ 1")
	case c.Group < 2:
		return bad("Group", c.Group, "G ≥ 2 (advantages are relative to the group)")
	case !(c.Temperature > 0) || math.IsInf(c.Temperature, 0):
		return bad("Temperature", c.Temperature, "a finite τ > 0")
	case c.Epochs < 1:
		return bad("Epochs", c.Epochs, "≥ 1")
	case !(c.Clip > 0) || math.IsInf(c.Clip, 0):
		return bad("Clip", c.Clip, "a finite ε > 0")
	case !(c.KL >= 0) || math.IsInf(c.KL, 0):
		return bad("KL", c.KL, "a finite β ≥ 0")
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("LR", c.LR, "a finite rate > 0")
	case !(c.ClipNorm >= 0):
		return bad("ClipNorm", c.ClipNorm, "≥ 0 (0: no clipping)")
	case !(c.AdvEps >= 0):
		return bad("AdvEps", c.AdvEps, "≥ 0")
	case !(c.RankPenalty >= 0) || c.RankPenalty > 1:
		return bad("RankPenalty", c.RankPenalty, "β in [0, 1]")
	}
	return nil
}

// GRPO trains g's trainable tensors (a LoRA put on it beforehand, as Tina
// does: see TinaLoRA) on task with Group Relative Policy Optimization (Shao
// et al., 2024, arXiv:2402.03300), the RL of Tina (Wang et al., 2025,
// "Tina: Tiny Reasoning Models via LoRA", arXiv:2504.15777). Each step
//
//  1. draws Prompts prompts and samples G completions of each at τ;
//  2. scores them with task.Reward (shaped by UnlikelinessRewards when
//     RankPenalty > 0: the "Unlikeliness reward" method);
//  3. gives every token of sample i the advantage A_i of GroupAdvantages;
//  4. takes Epochs AdamW steps up the objective of ClippedObjective, with
//     the old log-probs those of the sampling policy and the KL penalty
//     β·k3 to the reference, g with its adapters disabled.
//
// It returns what it recorded. v tokenizes the task's text (CharVocab for
// the shipped GPT). When ctx is cancelled GRPO stops before the next step
// and returns the history so far with an error wrapping ctx's. The same
// model, task, config and seed give the same history and weights.
func GRPO(ctx context.Context, g *peft.GPT, v *peft.Vocab, task Task, cfg GRPOConfig) (*History, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	lp, err := newLoop(ctx, g, v, task, cfg.Seed, cfg.Name)
	if err != nil {
		return nil, err
	}
	opt := peft.NewAdamW(0)
	G := cfg.Group
	for step := 1; step <= cfg.Steps; step++ {
		start := time.Now()
		var prompts []string
		for p := 0; p < cfg.Prompts; p++ {
			pr := task.Prompt(lp.rng)
			for i := 0; i < G; i++ {
				prompts = append(prompts, pr)
			}
		}
		ro, err := lp.rollout(step, prompts, cfg.Temperature)
		if err != nil {
			return lp.h, err
		}
		rewards := ro.rewards
		if cfg.RankPenalty > 0 {
			rewards = UnlikelinessRewards(rewards, MeanLogProbs(ro.r, ro.old), G, cfg.RankPenalty)
		}
		seqAdv := GroupAdvantages(rewards, G, cfg.AdvEps)
		// every token of sample b has its advantage, and weight 1/(B·|o_b|)
		n, B := ro.r.N(), ro.r.B()
		adv := make([]float64, B*n)
		weight := make([]float64, B*n)
		for b, a := range seqAdv {
			for t := 0; t < ro.r.Len(b); t++ {
				adv[b*n+t] = a
				weight[b*n+t] = 1 / float64(B*ro.r.Len(b))
			}
		}
		old, ref := flatten(ro.old), flatten(ro.ref)
		for e := 0; e < cfg.Epochs; e++ {
			if err := lp.update(step, opt, cfg.LR, cfg.ClipNorm, func() {
				PolicyStep(g, ro.r, func(logp []float64) (float64, []float64) {
					return ClippedObjective(logp, old, ref, adv, weight, cfg.Clip, cfg.KL)
				})
			}); err != nil {
				return lp.h, err
			}
		}
		lp.record(step, ro, time.Since(start))
		if cfg.Callback != nil {
			cfg.Callback(step, lp.h)
		}
	}
	return lp.h, nil
}
