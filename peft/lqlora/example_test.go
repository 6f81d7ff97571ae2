package lqlora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lqlora"
	"github.com/gopeft/gopeft/peft/quant"
)

// Example decomposes the digits MLP's layers into NF4 bases plus rank-4
// LoRA adapters, and shows each layer's memory and decomposition error.
func Example() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	layers, err := lqlora.Add(m, lqlora.Config{R: 4, Quantizer: quant.NF4{BlockSize: 64}, Targets: []string{"fc1", "fc2"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range layers {
		fmt.Printf("%s: Q %s at %.2f bits/param, with bf16 L1, L2 %.2f; ‖W − Q − L1·L2‖ = %.3f after %d iterations\n",
			l.Module, l.Quantizer, l.Dec.Q.Bits(), l.Bits(16), l.Dec.Err(), l.Dec.Iter)
	}
	// Output:
	// fc1: Q NF4/64 at 4.50 bits/param, with bf16 L1, L2 6.50; ‖W − Q − L1·L2‖ = 0.443 after 15 iterations
	// fc2: Q NF4/64 at 4.50 bits/param, with bf16 L1, L2 11.90; ‖W − Q − L1·L2‖ = 0.192 after 4 iterations
}

// ExampleSolve picks, per layer of the digits MLP, the quantizer and rank
// that minimise the total squared error within 5.5 bits per parameter.
func ExampleSolve() {
	m, _ := peft.LoadDigitsMLP()
	ctx := context.Background()
	cands := []lqlora.Candidate{
		{Quantizer: quant.INT{Bits: 3}, R: 2}, {Quantizer: quant.NF4{}, R: 2},
		{Quantizer: quant.NF4{}, R: 8}, {Quantizer: quant.INT8{}, R: 2},
	}
	tab, err := lqlora.Measure(ctx, m, []string{"fc1", "fc2"}, cands, 16, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := lqlora.Solve(ctx, tab, tab.Budget(5.5))
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, c := range a.Choice {
		fmt.Printf("%s: %s\n", tab.Modules[i], tab.Cands[c])
	}
	fmt.Printf("%.3f bits/param, error² %.3f\n", a.BitsPerParam(tab), a.Err2)
	// Output:
	// fc1: INT3/64 r=2
	// fc2: NF4/64 r=2
	// 5.000 bits/param, error² 3.712
}
