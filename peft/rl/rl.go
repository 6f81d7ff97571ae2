// Package rl is a reinforcement-learning lab for the shipped tiny GPT
// (peft.LoadTinyGPT): a reward task with checkable answers, sampling and
// log-probabilities under the policy and the reference, and three methods
// that train a LoRA with RL.
//
//   - "PPO-LoRA": supervised fine-tuning, then PPO with a value head and a
//     KL penalty to the reference, on a rank-stabilized LoRA — Hu,
//     Somayajula et al., 2024, "Improving the Language Understanding
//     Capabilities of Large Language Models Using Reinforcement Learning",
//     arXiv:2410.11020 (PPO: Schulman et al., 2017, arXiv:1707.06347).
//   - "GRPO (Tina)": GRPO on a tiny-rank LoRA with α = 4r — Wang et al.,
//     2025, "Tina: Tiny Reasoning Models via LoRA", arXiv:2504.15777 (GRPO:
//     Shao et al., 2024, DeepSeekMath, arXiv:2402.03300).
//   - "Unlikeliness reward": GRPO whose correct samples are rewarded the
//     more the less likely the policy found them — He, Fried and Welleck,
//     2025, "Rewarding the Unlikely: Lifting GRPO Beyond Distribution
//     Sharpening", arXiv:2506.02355.
//
// # The task
//
// WordTask: the prompt "L: " (a letter), a completion of n = 6 sampled
// characters, reward 1 iff the completion starts with a word of Moby-Dick
// (2…5 letters, seen at least twice in the novel) that begins with L and
// is followed by a non-letter within the n characters. The completion ends
// at that non-letter (Stopper): later characters are padding, out of every
// loss and KL, as tokens after an end-of-sequence token are. The answer is
// checked against the novel's lexicon; many answers are right for each
// letter, so the number of distinct correct answers among k samples
// measures diversity. The lab's letters are LabLetters ("bcdfmpsw").
//
// Measured on the 2-core CI machine (eval: 16 samples per letter, τ = 1):
// the base model scores about 0.02 (it has never seen the format); SFT
// (100 steps of a rank-8 LoRA, 1.8 s) brings it to 0.39 with 4.4 distinct
// correct answers per letter; then 20 steps (2.5 s) of GRPO on a rank-4
// LoRA reach 0.66 but sharpen to 2.6 distinct answers, GRPO with the
// unlikeliness reward (β_rank = 0.5) reaches 0.63 and keeps 4.5, and PPO
// reaches 0.72. Over seeds 1, 2, 3, plain GRPO kept 2.5, 2.6, 3.4 distinct
// answers and the unlikeliness reward 3.6, 4.5, 3.5.
//
// # The policy and the reference
//
// With z(s) (V) the GPT's logits at state s (prompt and completion so far)
// and τ the sampling temperature, the policy is π_θ(a|s) = softmax(z(s)/τ)_a
// and the reference π_ref the same GPT with its adapters disabled
// (peft.DisableAdapters): the base model after SFT, no copy made.
// Sample draws B completions in one forward pass per token; LogProbs and
// RefLogProbs give log π(c_t | s_t) for every completion token (B×n);
// ExactKL gives Σ_a π_θ(a|s_t)·log(π_θ(a|s_t)/π_ref(a|s_t)) over the whole
// vocabulary (B×n), and K3 the per-sample estimate the losses use,
//
//	k3 = ρ − log ρ − 1,   ρ = π_ref(c_t|s_t)/π_θ(c_t|s_t),   E_{π_θ}[k3] = KL(π_θ‖π_ref).
//
// # The objective and its gradient
//
// Both methods climb the clipped surrogate (ClippedObjective), over M = B·n
// completion tokens with advantages A_i and old log-probs those of the
// sampling policy:
//
//	J = (1/M)·Σ_i [ min(ρ_i·A_i, clip(ρ_i, 1−ε, 1+ε)·A_i) − β·k3_i ],   ρ_i = exp(logp_i − old_i)
//
// (PPO puts its KL in the reward instead, β = 0 here). gopeft's autograd
// has no exp, so PolicyStep takes J's derivative in each log-prob in
// float64 and backpropagates Σ_i c_i·logp_i through a cross-entropy whose
// rows' gradients are scaled by c_i = ∂J/∂logp_i (see PolicyStep); the
// tests check the resulting ∇_θ J against central differences of J.
//
// GRPO: G samples per prompt, A_i = (r_i − mean)/(std + 1e-6) within the
// group (GroupAdvantages), the same for all |o_i| tokens of sample i, each
// token weighted 1/(B·|o_i|) (GRPO's per-sequence mean), μ updates per
// batch. The unlikeliness reward replaces r_i by r_i·(1 − β_rank·rank_i/G),
// rank 0 the least likely of the group by mean token log-prob under the
// sampling policy (UnlikelinessRewards, GRPOConfig.RankPenalty).
//
// PPO: token rewards r_t = −β·(log π_old − log π_ref), plus the task's
// reward on the last token; a ValueHead V(s_t) (a linear map of the
// detached logits); GAE advantages (γ, λ) whitened over the batch; per
// epoch one step up the clipped surrogate and one down ½·(V − R)².
//
// # Defaults
//
// DefaultGRPO: 20 steps of 6 prompts × G = 8, τ = 1, μ = 2, ε = 0.2,
// β = 0.02, AdamW 3e-3, gradient norm 1. DefaultPPO: 20 steps of 48
// rollouts, τ = 1, 2 epochs, ε = 0.2, β = 0.02, γ = 1, λ = 0.95, AdamW 3e-3
// (value head 1e-2). TinaLoRA(r): α = 4r on q, k, v, o, fc, proj.
// PPOLoRA(r): rsLoRA with α = 2r on the same. The unlikeliness paper's
// β_rank is 0.25; the lab's 20-step runs use 0.5 to show the effect.
//
// # Where this departs from the papers' code
//
//   - Scale: the papers train 1.5B–7B models for hours with lr 1e-6…9e-6;
//     the lab trains ranks 2–8 on a 100k-parameter GPT for seconds, at 3e-3.
//   - Reference: TRL's PEFT path uses the adapter-disabled model as the
//     reference, and RL4GLUE trains one LoRA by SFT and then PPO. Here SFT
//     bakes its LoRA into the base (merge_and_unload) and RL puts a fresh
//     LoRA on it, so that "adapters disabled" is the SFT policy — the
//     reference RL4GLUE's create_reference_model copies — not the model
//     before SFT, which does not know the task's format.
//   - Dropout: LoRA dropout is 0 during RL (the papers: 0.05), so that the
//     ratio ρ is 1 exactly at the first update; RL4GLUE also trains all
//     biases (bias="all"), which the lab leaves frozen.
//   - PPO: the value head reads detached logits (TRL's shares the trunk),
//     and the value loss is not clipped; no adaptive KL controller.
//   - KL: the GRPO loss uses the k3 estimate per sampled token (as GRPO
//     and TRL do), not the exact KL over the vocabulary, which ExactKL
//     gives for inspection.
//   - Update sparsity (UpdateSparsity, after Mukherjee et al., 2025,
//     arXiv:2505.11711): a merged LoRA update is dense, so the lab's runs
//     leave under 0.2% of each adapted weight unchanged (|Δ| ≤ 1e-5), the
//     head (not adapted) all of it.
//
// The three methods train through GRPO and PPO, not peft.Train: they are
// registered as HookMethods with no adapter file format of their own (the
// trained adapter is a plain LoRA, saved as LoRA).
package rl

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
)

func init() {
	const pkg = "github.com/gopeft/gopeft/peft/rl"
	peft.Register(peft.Method{
		Name:    "PPO-LoRA",
		Kind:    peft.HookMethod,
		Paper:   "Hu, Somayajula et al. 2024, Improving the Language Understanding Capabilities of Large Language Models Using Reinforcement Learning, arXiv:2410.11020",
		Package: pkg,
		Summary: "SFT, then PPO (clipped surrogate, value head, GAE, per-token KL penalty to the adapter-disabled reference) on an rsLoRA",
	})
	peft.Register(peft.Method{
		Name:    "GRPO (Tina)",
		Kind:    peft.HookMethod,
		Paper:   "Wang et al. 2025, Tina: Tiny Reasoning Models via LoRA, arXiv:2504.15777",
		Package: pkg,
		Summary: "GRPO (group-normalized advantages, clipped ratio, k3 KL to the adapter-disabled reference) on a tiny-rank LoRA with α = 4r",
	})
	peft.Register(peft.Method{
		Name:    "Unlikeliness reward",
		Kind:    peft.HookMethod,
		Paper:   "He, Fried, Welleck 2025, Rewarding the Unlikely: Lifting GRPO Beyond Distribution Sharpening, arXiv:2506.02355",
		Package: pkg,
		Summary: "GRPO with correct samples rewarded 1 − β·rank/G, rank 0 the least likely of the group, to keep rare correct answers",
	})
}

// Targets are the GPT's projections the lab's LoRAs adapt: Tina's q, k, v,
// o, gate, up and down become the tiny GPT's attn.q, attn.k, attn.v,
// attn.o, mlp.fc and mlp.proj (the head is left alone).
var Targets = []string{"q", "k", "v", "o", "fc", "proj"}

// TinaLoRA returns Tina's LoRA recipe at rank r: α = 4r, as every rank of
// Tina's ablation keeps α/r = 4, on Targets, with dropout 0 (Tina: 0.05).
func TinaLoRA(r int, seed int64) lora.Config {
	return lora.Config{R: r, Alpha: 4 * float64(r), Targets: Targets, Name: "grpo", Seed: seed}
}

// PPOLoRA returns RL4GLUE's LoRA recipe at rank r: rank-stabilized, with
// α = 2r (the paper's r = 16, α = 32, scaling α/√r), on Targets, with
// dropout 0 (the paper: 0.05).
func PPOLoRA(r int, seed int64) lora.Config {
	return lora.Config{R: r, Alpha: 2 * float64(r), RSLoRA: true, Targets: Targets, Name: "ppo", Seed: seed}
}

// SFT is the supervised fine-tuning before RL: it puts a LoRA (cfg) on g,
// trains it on data with tcfg (peft.Train, next-token loss on prompt and
// answer), and bakes it into g's weights (PEFT's merge_and_unload), so that
// the fine-tuned model is the base — and, with the RL adapter disabled,
// the reference — for GRPO or PPO. It is an error if g already has an
// adapter named cfg.Name.
func SFT(ctx context.Context, g *peft.GPT, data peft.Dataset, cfg lora.Config, tcfg peft.TrainConfig) (*peft.History, error) {
	if cfg.Name == "" {
		cfg.Name = "sft"
	}
	if _, err := lora.Add(g, cfg); err != nil {
		return nil, err
	}
	h, err := peft.Train(ctx, g, data, tcfg)
	if err != nil {
		return h, err
	}
	for _, l := range g.Modules() {
		if _, ok := l.Adapters[cfg.Name]; ok {
			if err := l.SetAdapter(cfg.Name); err != nil {
				return h, err
			}
			if err := l.Bake(); err != nil {
				return h, fmt.Errorf("peft: rl.SFT: %w", err)
			}
		}
	}
	return h, nil
}
