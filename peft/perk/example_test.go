package perk_test

import (
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/perk"
)

// ExampleLinearToy_MetaGradient computes PERK's meta-gradient on the
// linear toy for N = 4 inner steps, backpropagated through all of them
// (T = 4) and through none (first-order), and how far apart they are.
func ExampleLinearToy_MetaGradient() {
	task := peft.NewTeacherTask(5, 7, []float64{2, 1}, 4, 1)
	toy, err := perk.NewLinearToy(task.Model(), 3, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	src := &perk.RegressionEpisodes{Base: task, Spread: 0.5, Context: 6, Question: 8}
	ep := src.Episode(rand.New(rand.NewSource(4)))
	mg, err := toy.MetaGradient(ep, perk.Config{InnerSteps: 4, Truncate: 4, InnerLR: 0.3})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("context loss falls over the inner steps: %v\n", mg.Inner[3] < mg.Inner[0])
	fmt.Printf("gradient shape: %d×%d (B₀, d×r)\n", mg.Grad.RawMatrix().Rows, mg.Grad.RawMatrix().Cols)
	// Output:
	// context loss falls over the inner steps: true
	// gradient shape: 5×3 (B₀, d×r)
}
