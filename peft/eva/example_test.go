package eva_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/eva"
)

// ExampleAdd puts EVA of rank r = 4 on both layers of the shipped digits
// MLP (64→64→10), fitting the PCA of each layer's inputs on the digits 5–9
// it has not seen. The budget of 2·4 = 8 directions is shared by explained
// variance, each layer taking at most ρ·r = 8; the adapters are LoRA with
// A's rows the layer's principal input directions and B = 0, so the model
// starts as the base model.
func ExampleAdd() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed, 5, 6, 7, 8, 9)
	ls, res, err := eva.Add(context.Background(), m, data, eva.Config{R: 4, Targets: []string{"fc1", "fc2"}, BatchSize: 64, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ly := range res.Layers {
		fmt.Printf("%s: rank %d of %d, explaining %.2f of the input variance\n", ly.Module, ly.Rank, ly.Cap, sum(ly.Ratio[:ly.Rank]))
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("%d adapters, %d trained numbers\n", len(ls), n)
	// Output:
	// fc1: rank 4 of 8, explaining 0.53 of the input variance
	// fc2: rank 4 of 8, explaining 0.85 of the input variance
	// 2 adapters, 808 trained numbers
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}
