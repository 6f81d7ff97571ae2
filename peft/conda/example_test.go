package conda_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/conda"
)

// ExampleConda fully trains the student of a teacher task with Conda, as a
// notebook cell would, and compares its optimizer state with AdamW's: the
// 24×16 weight keeps both moments plus a 16×16 basis.
func ExampleConda() {
	task := peft.NewTeacherTask(24, 16, []float64{4, 3, 2, 1, 0.5}, 256, 1)
	m := task.Model()
	opt := conda.New(conda.Config{Scale: 1, UpdateProjGap: 50})
	_, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 300, BatchSize: 16, LR: 0.01, Optimizer: opt, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, left := opt.Basis(m.Layer.W)
	r, c := b.Dims()
	fmt.Printf("basis %d×%d, on the left: %v\n", r, c, left)
	fmt.Printf("recovery error below 0.05: %v\n", task.RecoveryError(m) < 0.05)
	fmt.Printf("Conda state: %d bytes (AdamW: %d)\n", opt.StateBytes(), 8*2*24*16)
	// Output:
	// basis 16×16, on the left: false
	// recovery error below 0.05: true
	// Conda state: 8192 bytes (AdamW: 6144)
}

// ExampleConfig shows the defaults New fills in.
func ExampleConfig() {
	c := conda.New(conda.Config{}).Config()
	fmt.Printf("T = %d, α = %g, β = (%g, %g), ε = %g\n", c.UpdateProjGap, c.Scale, c.Beta1, c.Beta2, c.Eps)
	// Output:
	// T = 2000, α = 0.25, β = (0.9, 0.99), ε = 1e-08
}
