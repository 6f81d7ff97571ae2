package peft_test

import (
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// ExampleCustomAdapter defines, without a type or a backward pass, an
// adapter that scales each output feature of fc1 by a trainable vector s
// (as IA³ does), checks its gradient flows, and merges it.
func ExampleCustomAdapter() {
	m := peft.NewMLP([]int{4, 3, 2}, 1)
	fc1 := m.Layers[0]
	ones := mat.NewDense(1, 3, []float64{1, 1, 1})
	s := peft.NewParam("fc1.ia3_l.default.weight", ones) // (1×3)
	a := &peft.CustomAdapter{
		Tensors: []*peft.Tensor{s},
		ForwardFunc: func(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
			return peft.MulRow(base, s) // (n×3), column j scaled by s_j
		},
	}
	if err := fc1.Attach("default", a); err != nil {
		fmt.Println(err)
		return
	}
	peft.FreezeBase(m)
	rng := rand.New(rand.NewSource(1))
	x := mat.NewDense(5, 4, nil)
	x.Apply(func(_, _ int, _ float64) float64 { return rng.NormFloat64() }, x)
	labels := []int{0, 1, 1, 0, 1}
	m.Loss(peft.Batch{X: x, Labels: labels}).Backward()
	fmt.Println("s has a gradient:", s.Grad != nil && mat.Norm(s.Grad, 2) > 0)
	n, _, _ := peft.TrainableParams(m)
	fmt.Println("trainable:", n)

	// Output:
	// s has a gradient: true
	// trainable: 3
}
