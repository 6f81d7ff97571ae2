package paca_test

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/paca"
)

// ExampleAdd shows what PaCA's r counts on the teacher task, whose ΔW*
// (12×10) has rank 3: not a rank but a number of columns of W, the
// connections from r of the 10 inputs, which are trained in place while
// the others never move. ΔW* touches every column, so PaCA cannot get
// below the part of ΔW* in the columns it leaves alone, however low its
// rank; with r = k = 10 it is full fine-tuning and reaches the teacher.
func ExampleAdd() {
	task := peft.NewTeacherTask(12, 10, []float64{3, 2, 1}, 200, 1)
	for _, r := range []int{3, 6, 10} {
		m := task.Model()
		ps, err := paca.Add(m, paca.Config{R: r, Targets: []string{"proj"}, Seed: 2})
		if err != nil {
			fmt.Println(err)
			return
		}
		n, _, _ := peft.TrainableParams(m)
		if _, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 1500, BatchSize: 64, LR: 2e-2, MinLR: 1e-4, Seed: 1}); err != nil {
			fmt.Println(err)
			return
		}
		// The part of ΔW* outside the trained columns.
		var left, all float64
		d, k := task.Delta.Dims()
		for i := 0; i < d; i++ {
			for j := 0; j < k; j++ {
				v := task.Delta.At(i, j)
				all += v * v
				if !slices.Contains(ps[0].Idx, j) {
					left += v * v
				}
			}
		}
		fmt.Printf("r=%d: %d trained, ‖W−W*‖/‖ΔW*‖ = %.3f (untrained columns hold %.3f)\n", r, n, task.RecoveryError(m), math.Sqrt(left/all))
	}
	// Output:
	// r=3: 36 trained, ‖W−W*‖/‖ΔW*‖ = 0.901 (untrained columns hold 0.891)
	// r=6: 72 trained, ‖W−W*‖/‖ΔW*‖ = 0.731 (untrained columns hold 0.721)
	// r=10: 120 trained, ‖W−W*‖/‖ΔW*‖ = 0.000 (untrained columns hold 0.000)
}
