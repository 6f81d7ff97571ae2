package maestro_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/maestro"
)

// ExampleAdd factors a 12×12 layer as U·Vᵀ from its SVD (all 12
// components: the output at init is the base model's) and trains it, with
// the reference's defaults and the controller as a hook, to become a map of
// rank 2 (residual, in this package's tests, is a teacher task whose
// targets are x·ΔW*ᵀ). The group lasso shrinks the trailing components and
// the truncations every 100 steps drop them, so the layer ends at the
// teacher's rank and holds (12 + 12)·2 numbers.
func ExampleAdd() {
	ctx := context.Background()
	task := peft.NewTeacherTask(12, 12, []float64{3, 2}, 256, 1)
	m := task.Model()
	c, err := maestro.Add(m, maestro.Config{R: 12, Targets: []string{"proj"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	l := c.Layers[0]
	fmt.Printf("starting spectrum: σ₁ = %.2f … σ₁₂ = %.2f; width %d\n", l.Sigma[0], l.Sigma[11], l.Width())
	h, err := peft.Train(ctx, m, residual{task}, peft.TrainConfig{Steps: 1500, BatchSize: 32, LR: 1e-2, MinLR: 1e-4, Hooks: []peft.Hook{c}, Seed: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	loss, _, _ := peft.Evaluate(ctx, m, residual{task})
	fmt.Printf("final width %d after %d steps, %d numbers kept, loss %.4f\n", c.Ranks()[0], len(h.Steps), c.KeptParams(), loss)
	fmt.Println("widths at each truncation:", c.Trace().Ranks[0])
	// Output:
	// starting spectrum: σ₁ = 2.03 … σ₁₂ = 0.01; width 12
	// final width 2 after 1500 steps, 48 numbers kept, loss 0.0004
	// widths at each truncation: [10 6 4 4 2 2 2 2 2 2 2 2 2 2 2]
}
