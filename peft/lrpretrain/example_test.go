package lrpretrain_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lrpretrain"
)

// ExampleNewRestarter pretrains the digits MLP from scratch with its first
// layer (64×64) in low-rank form, W = B·A of rank 8, and restarts every
// 100 steps: the factors are re-balanced by refactorization (B·A kept,
// ‖B‖_F = ‖A‖_F) and Adam's moments of the factors reset, with a 10-step
// warm-up of their learning rate after each reset.
func ExampleNewRestarter() {
	ctx := context.Background()
	m := peft.NewMLP(peft.DigitsMLPSizes, 3)
	if _, err := lrpretrain.Add(m, lrpretrain.Config{R: 8, Targets: []string{"fc1"}, Seed: 3}); err != nil {
		fmt.Println(err)
		return
	}
	pairs, err := lrpretrain.Pairs(m)
	if err != nil {
		fmt.Println(err)
		return
	}
	opt := lrpretrain.NewAdam(0)
	opt.Recovery = 10
	h, err := lrpretrain.NewRestarter(pairs, opt, lrpretrain.RestartConfig{Period: 100, Refactor: true, Reset: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, total, _ := peft.TrainableParams(m)
	fmt.Printf("trained numbers: %d of %d\n", n, total)
	data := peft.DigitsData(0.25, 1)
	cfg := peft.TrainConfig{Steps: 600, BatchSize: 64, LR: 1e-2, WarmupSteps: 30, Seed: 1, Optimizer: opt, Hooks: []peft.Hook{h}}
	if _, err := peft.Train(ctx, m, data, cfg); err != nil {
		fmt.Println(err)
		return
	}
	_, acc, err := peft.Evaluate(ctx, m, data)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("restarts after steps %v\n", h.Restarts())
	fmt.Printf("‖B‖/‖A‖ = %.2f, held-out accuracy %.2f\n", lrpretrain.Balance(pairs[0]), acc)
	// Output:
	// trained numbers: 1738 of 5834
	// restarts after steps [100 200 300 400 500 600]
	// ‖B‖/‖A‖ = 1.00, held-out accuracy 0.96
}
