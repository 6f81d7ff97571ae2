package vera_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/vera"
)

// ExampleAdd shows what VeRA's r counts on the teacher task, whose ΔW*
// (12×10) has rank 3: not the rank of ΔW, but the number of frozen random
// rank-one directions b_t·a_tᵀ (columns of B, rows of A) that λ_d weighs.
// A layer trains d + r numbers, one per direction plus λ_b, so r may far
// exceed min(d, k); once the directions span the 120 entries of ΔW, VeRA
// reaches the teacher. (LoRA of rank 3 gets there with 3·(12 + 10) = 66
// numbers: VeRA pays off on wide layers, where r ≪ d·k.)
func ExampleAdd() {
	task := peft.NewTeacherTask(12, 10, []float64{3, 2, 1}, 200, 1)
	for _, r := range []int{16, 128, 1024} {
		m := task.Model()
		if _, err := vera.Add(m, vera.Config{R: r, Targets: []string{"proj"}, Seed: 2}); err != nil {
			fmt.Println(err)
			return
		}
		n, _, _ := peft.TrainableParams(m)
		if _, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 1500, BatchSize: 64, LR: 2e-2, MinLR: 1e-4, Seed: 1}); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("r=%d: %d trained, ‖W−W*‖/‖ΔW*‖ = %.3f\n", r, n, task.RecoveryError(m))
	}
	// Output:
	// r=16: 28 trained, ‖W−W*‖/‖ΔW*‖ = 0.810
	// r=128: 140 trained, ‖W−W*‖/‖ΔW*‖ = 0.027
	// r=1024: 1036 trained, ‖W−W*‖/‖ΔW*‖ = 0.000
}
