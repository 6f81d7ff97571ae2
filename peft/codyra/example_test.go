package codyra_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/codyra"
)

// ExampleNewProx trains CoDyRA of rank r = 8 on a teacher task whose update
// has rank 2, with the proximal step switching gates off after a dense
// phase of half the steps, then ends the task: its update is merged into
// the frozen weight and a fresh rank-8 adapter waits for the next task.
func ExampleNewProx() {
	task := peft.NewTeacherTask(16, 12, []float64{2, 1.5}, 256, 1)
	m := task.Model()
	cs, err := codyra.Add(m, codyra.Config{R: 8, Targets: []string{"proj"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	const steps = 1000
	prox, err := codyra.NewProx(cs, codyra.ProxConfig{Steps: steps, MaxKappa: 0.02})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := peft.TrainConfig{Steps: steps, BatchSize: 32, LR: 0.03, Schedule: "constant", WeightDecay: 0.1, Seed: 1, Hooks: []peft.Hook{prox}}
	if _, err := peft.Train(context.Background(), m, task, cfg); err != nil {
		fmt.Println(err)
		return
	}
	tr := prox.Trace()
	fmt.Printf("rank at step %d: %d; at step %d: %d\n", tr.Steps[0], tr.Ranks[0][0], tr.Steps[len(tr.Steps)-1], tr.Ranks[0][len(tr.Steps)-1])
	fmt.Printf("recovery error %.2f (best rank-1 update: %.2f)\n", task.RecoveryError(m), task.BestRankError(1))
	ranks, err := codyra.NextTask(m, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("merged rank %d; the next task starts at rank %d\n", ranks["proj"], cs[0].Rank())
	// Output:
	// rank at step 1: 8; at step 1000: 2
	// recovery error 0.01 (best rank-1 update: 0.60)
	// merged rank 2; the next task starts at rank 8
}
