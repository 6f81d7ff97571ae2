package rl_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/rl"
)

// ExampleUnlikelinessRewards shapes the rewards of one group of G = 4
// samples, three correct, before GRPO's advantages: the rarest correct
// sample (log-likelihood −3) keeps the most reward, the likeliest (−1) the
// least, the wrong one stays 0.
func ExampleUnlikelinessRewards() {
	rewards := []float64{1, 1, 0, 1}
	meanLogp := []float64{-3, -1, -5, -2}
	shaped := rl.UnlikelinessRewards(rewards, meanLogp, 4, 0.25)
	fmt.Println(shaped)
	for _, a := range rl.GroupAdvantages(shaped, 4, 0) {
		fmt.Printf("%.4f ", a)
	}
	fmt.Println()
	// Output:
	// [0.9375 0.8125 0 0.875]
	// 0.6385 0.3547 -1.4899 0.4966
}

// Example_notebook is the lab as a notebook runs it (a few seconds of
// CPU): SFT of the shipped GPT on the word task, then GRPO on a rank-4
// LoRA with Tina's α = 4r, with the unlikeliness reward, and an
// evaluation.
func Example_notebook() {
	ctx := context.Background()
	task, _ := rl.NewWordTask(6, rl.LabLetters)
	g, _ := peft.LoadTinyGPT()
	_, _ = rl.SFT(ctx, g, task.SFTData(0), lora.Config{R: 8, Alpha: 16, Targets: rl.Targets, Seed: 1},
		peft.TrainConfig{Steps: 100, BatchSize: 32, LR: 5e-3, Schedule: "constant", Seed: 1})
	_, _ = lora.Add(g, rl.TinaLoRA(4, 1))
	cfg := rl.DefaultGRPO()
	cfg.RankPenalty = 0.5
	h, err := rl.GRPO(ctx, g, task.Vocab, task, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	e, _ := rl.Evaluate(ctx, g, task.Vocab, task, task.Prompts(), 16, 1, 9)
	fmt.Printf("train reward %.2f → %.2f; eval reward %.2f, distinct answers per letter %.1f\n",
		h.Reward[0], h.Reward[len(h.Reward)-1], e.Reward, e.Distinct)
}
