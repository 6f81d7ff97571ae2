package fira_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/fira"
	"github.com/gopeft/gopeft/peft/galore"
)

// ExampleFira fully fine-tunes a teacher task (a 16×12 weight whose target
// update has full rank) with Fira and with GaLore at rank 2, and compares
// their final losses and optimizer state.
func ExampleFira() {
	task := peft.NewTeacherTask(16, 12, []float64{3, 2.5, 2, 1.5, 1, 0.8, 0.6, 0.5}, 256, 1)
	for _, opt := range []peft.Optimizer{
		fira.New(fira.Config{Rank: 2, UpdateProjGap: 50}),
		galore.New(galore.Config{Rank: 2, UpdateProjGap: 50}),
	} {
		m := task.Model()
		cfg := peft.TrainConfig{Steps: 150, BatchSize: 32, LR: 0.02, Optimizer: opt, Seed: 1}
		if _, err := peft.FullFineTune(context.Background(), m, task, cfg); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%T: recovery error %.2f, state %d bytes\n", opt, task.RecoveryError(m), opt.StateBytes())
	}
	// Output:
	// *fira.Fira: recovery error 0.45, state 712 bytes
	// *galore.GaLore: recovery error 0.82, state 704 bytes
}
