package dylora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dylora"
)

// ExampleAdd trains one DyLoRA adapter of rank r = 4 on a teacher task
// whose update has rank 4, passing the controller to Train as a hook so
// that each step trains at a rank drawn from U{1..4}. Afterwards the same
// factors serve at every rank: LossByRank gives the loss at b = 1 … 4 (a
// notebook charts it), falling with b to the Eckart–Young floor of each
// rank (0.29, 0.10, 0.02, 0), and SetRank picks the rank to merge.
func ExampleAdd() {
	ctx := context.Background()
	task := peft.NewTeacherTask(12, 10, []float64{2, 1.5, 1, 0.5}, 256, 1)
	m := task.Model()
	c, err := dylora.Add(m, dylora.Config{R: 4, FixedScale: true, Targets: []string{"proj"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _, _ := peft.TrainableParams(m)
	if _, err := peft.Train(ctx, m, task, peft.TrainConfig{Steps: 2000, BatchSize: 32, LR: 2e-2, MinLR: 1e-3, Hooks: []peft.Hook{c}, Seed: 2}); err != nil {
		fmt.Println(err)
		return
	}
	losses, err := dylora.LossByRank(ctx, m, task)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("trained numbers: %d\n", n)
	for b, l := range losses {
		fmt.Printf("rank %d: loss %.2f\n", b+1, l)
	}
	c.SetRank(2)
	fmt.Println("ranks for merging:", c.Ranks())
	// Output:
	// trained numbers: 88
	// rank 1: loss 0.29
	// rank 2: loss 0.11
	// rank 3: loss 0.02
	// rank 4: loss 0.00
	// ranks for merging: [2]
}
