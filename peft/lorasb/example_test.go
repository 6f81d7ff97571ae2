package lorasb_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lorasb"
)

// ExampleAdd initializes LoRA-SB of rank r = 3 on a teacher task's student
// from 50 minibatch gradients, at the learning rate of the first training
// step, then trains only R (r² = 9 numbers). Spectrum holds the singular
// values of the estimated first update ΔW₁, whose top r LoRA-SB keeps.
func ExampleAdd() {
	task := peft.NewTeacherTask(16, 12, []float64{3, 2, 1}, 256, 1)
	m := task.Model()
	train := peft.TrainConfig{Steps: 100, BatchSize: 32, LR: 0.05, WarmupSteps: 10, Seed: 1}
	as, err := lorasb.Add(context.Background(), m, task, lorasb.Config{
		R: 3, LR: peft.LRAt(train, 1), BatchSize: 8, Targets: []string{"proj"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := as[0]
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("rank %d, trained numbers %d, ΔW₁ has %d singular values, the largest %.3f\n", a.Rank(), n, len(a.Spectrum), a.Spectrum[0])
	before := task.RecoveryError(m)
	if _, err := peft.Train(context.Background(), m, task, train); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("recovery error of ΔW*: %.2f at init, lower after training: %v\n", before, task.RecoveryError(m) < before)
	// Output:
	// rank 3, trained numbers 9, ΔW₁ has 12 singular values, the largest 0.050
	// recovery error of ΔW*: 0.99 at init, lower after training: true
}
