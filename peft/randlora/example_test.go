package randlora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/randlora"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd shows RandLoRA's r on the teacher task, whose ΔW* (12×10) has
// full rank 10: each layer mixes n = ⌈10/r⌉ frozen random bases of rank r,
// so its ΔW has rank 10 at every r, while any LoRA of rank r stays above the
// Eckart–Young floor of rank r. A larger r means fewer bases and fewer
// trained numbers, n·(r + 10): at r = 1 and 2 RandLoRA gets below LoRA's
// floor for the same r; at r = 5 its 30 numbers are too few to.
func ExampleAdd() {
	sigma := []float64{3, 2.5, 2, 1.8, 1.5, 1.2, 1, 0.8, 0.6, 0.4}
	task := peft.NewTeacherTask(12, 10, sigma, 200, 1)
	for _, r := range []int{1, 2, 5} {
		m := task.Model()
		as, err := randlora.Add(m, randlora.Config{R: r, Targets: []string{"proj"}, Seed: 2})
		if err != nil {
			fmt.Println(err)
			return
		}
		n, _, _ := peft.TrainableParams(m)
		if _, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 1500, BatchSize: 64, LR: 2e-2, MinLR: 1e-4, Seed: 1}); err != nil {
			fmt.Println(err)
			return
		}
		var svd mat.SVD
		svd.Factorize(as[0].Delta(), mat.SVDNone)
		s := svd.Values(nil)
		rank := 0
		for _, v := range s {
			if v > 1e-10*s[0] {
				rank++
			}
		}
		fmt.Printf("r=%d: %d trained, rank ΔW = %d, ‖W−W*‖/‖ΔW*‖ = %.3f (LoRA of rank %d: ≥ %.3f)\n",
			r, n, rank, task.RecoveryError(m), r, task.BestRankError(r))
	}
	// Output:
	// r=1: 110 trained, rank ΔW = 10, ‖W−W*‖/‖ΔW*‖ = 0.467 (LoRA of rank 1: ≥ 0.826)
	// r=2: 60 trained, rank ΔW = 10, ‖W−W*‖/‖ΔW*‖ = 0.598 (LoRA of rank 2: ≥ 0.680)
	// r=5: 30 trained, rank ΔW = 10, ‖W−W*‖/‖ΔW*‖ = 0.842 (LoRA of rank 5: ≥ 0.356)
}
