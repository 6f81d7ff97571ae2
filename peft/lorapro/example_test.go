package lorapro_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/lorapro"
)

// ExampleNew trains a rank-4 LoRA on a teacher task whose ΔW* has rank 4,
// once with plain SGD and once with LoRA-Pro's adjusted gradients, for the
// same 50 steps: LoRA-Pro's step is the rank-4 tangent projection of the
// full gradient, and it recovers the teacher.
func ExampleNew() {
	for _, name := range []string{"LoRA", "LoRA-Pro"} {
		task := peft.NewTeacherTask(16, 12, []float64{3, 2, 1, 0.5}, 256, 1)
		m := task.Model()
		ads, err := lora.Add(m, lora.Config{R: 4, Alpha: 8, Targets: []string{"proj"}, Seed: 2})
		if err != nil {
			fmt.Println(err)
			return
		}
		var opt peft.Optimizer = &peft.SGD{}
		lr := 1.0
		if name == "LoRA-Pro" {
			if opt, err = lorapro.New(ads, lorapro.Config{SGD: true}); err != nil {
				fmt.Println(err)
				return
			}
			lr = 5
		}
		cfg := peft.TrainConfig{Steps: 50, BatchSize: 32, LR: lr, Schedule: "constant", Optimizer: opt, Seed: 3}
		if _, err := peft.Train(context.Background(), m, task, cfg); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-8s ‖W−W*‖/‖ΔW*‖ = %.3f\n", name, task.RecoveryError(m))
	}
	// Output:
	// LoRA     ‖W−W*‖/‖ΔW*‖ = 0.062
	// LoRA-Pro ‖W−W*‖/‖ΔW*‖ = 0.000
}
