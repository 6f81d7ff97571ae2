package frugal_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/frugal"
)

// ExampleFRUGAL fully trains the student of a teacher task with FRUGAL at
// the paper's density ρ = 0.25, as a notebook cell would: Adam on 4 of the
// 16 columns of the 24×16 weight at a time, signSGD on the other 12.
func ExampleFRUGAL() {
	task := peft.NewTeacherTask(24, 16, []float64{4, 3, 2, 1, 0.5}, 256, 1)
	m := task.Model()
	opt := frugal.New(frugal.Config{Projection: frugal.Columns, UpdateGap: 50, Seed: 1})
	_, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 300, BatchSize: 16, LR: 0.01, Optimizer: opt, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("state-full columns: %d of 16\n", len(opt.Selected(m.Layer.W)))
	fmt.Printf("recovery error below 0.01: %v\n", task.RecoveryError(m) < 0.01)
	fmt.Printf("FRUGAL state: %d bytes (AdamW: %d)\n", opt.StateBytes(), 8*2*24*16)
	// Output:
	// state-full columns: 4 of 16
	// recovery error below 0.01: true
	// FRUGAL state: 1568 bytes (AdamW: 6144)
}

// ExampleConfig shows the defaults New fills in.
func ExampleConfig() {
	c := frugal.New(frugal.Config{}).Config()
	fmt.Printf("ρ = %g, T = %d, projection %s, state-free %s ×%g, β = (%g, %g), ε = %g\n",
		c.Density, c.UpdateGap, c.Projection, c.StateFree, c.FreeLRScale, c.Beta1, c.Beta2, c.Eps)
	// Output:
	// ρ = 0.25, T = 200, projection svd, state-free signsgd ×1, β = (0.9, 0.999), ε = 1e-08
}
