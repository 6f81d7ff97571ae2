package trp_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/trp"
)

// ExampleNew trains the digits MLP (64→64→10) in full with TRP: the
// nuclear-norm penalty at the paper's λ and, after every step, each weight
// projected onto the rank that keeps 99% of its energy Σσ². The first
// layer ends at a fraction of its full rank 64, so both layers fit in
// fewer numbers as pairs of factors than as dense matrices.
func ExampleNew() {
	ctx := context.Background()
	m := peft.NewMLP(peft.DigitsMLPSizes, 1)
	data := peft.DigitsData(0.25, 1)
	h, err := trp.New(m, trp.Config{Lambda: trp.DefaultLambda})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := peft.TrainConfig{Steps: 400, BatchSize: 64, LR: 1e-2, Seed: 1, Hooks: []peft.Hook{h}}
	if _, err := peft.FullFineTune(ctx, m, data, cfg); err != nil {
		fmt.Println(err)
		return
	}
	_, acc, err := peft.Evaluate(ctx, m, data)
	if err != nil {
		fmt.Println(err)
		return
	}
	rs := h.Ranks()
	fact, dense := h.FactoredParams()
	fmt.Printf("ranks: fc1 %d of 64, fc2 %d of 10\n", rs["fc1"], rs["fc2"])
	fmt.Printf("weights as factors: %d numbers instead of %d\n", fact, dense)
	fmt.Printf("held-out accuracy: %.2f\n", acc)
	// Output:
	// ranks: fc1 10 of 64, fc2 10 of 10
	// weights as factors: 2020 numbers instead of 4736
	// held-out accuracy: 0.96
}
