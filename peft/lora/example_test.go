package lora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
)

// ExampleAdd shows the teacher task's lesson: the teacher's change ΔW*
// has rank 3, so LoRA of rank 3 recovers it and rank 1 reaches only the best
// rank-1 approximation.
func ExampleAdd() {
	task := peft.NewTeacherTask(12, 10, []float64{3, 2, 1}, 200, 1)
	for _, r := range []int{1, 3} {
		m := task.Model()
		if _, err := lora.Add(m, lora.Config{R: r, Alpha: float64(r), Targets: []string{"proj"}, Seed: 2}); err != nil {
			fmt.Println(err)
			return
		}
		if _, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 1500, BatchSize: 64, LR: 2e-2, MinLR: 1e-4, Seed: 1}); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("r=%d: ‖W−W*‖/‖ΔW*‖ = %.3f (best possible %.3f)\n", r, task.RecoveryError(m), task.BestRankError(r))
	}
	// Output:
	// r=1: ‖W−W*‖/‖ΔW*‖ = 0.598 (best possible 0.598)
	// r=3: ‖W−W*‖/‖ΔW*‖ = 0.000 (best possible 0.000)
}
