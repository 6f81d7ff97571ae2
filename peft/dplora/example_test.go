package dplora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dplora"
	"github.com/gopeft/gopeft/peft/lora"
)

// Example adapts the shipped digits MLP (pretrained on 0–4) to all ten
// digits by DP-LoRA over 20 simulated clients, 10 of them per round: each
// client's LoRA update is clipped to norm C = 2 and noised with σ = 0.3
// before the server averages. The accountant reports the ε spent; NoiseFor
// gives the σ a target ε would need.
func Example() {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	clients, err := peft.NewClients(data, 20, peft.IIDSplit(), 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, _ := peft.LoadDigitsMLP()
	if _, err := lora.Add(m, lora.Config{R: 4, Targets: []string{"fc1", "fc2"}, Seed: 1}); err != nil {
		fmt.Println(err)
		return
	}
	agg, _ := dplora.New(dplora.Config{Clip: 2, Noise: 0.3, Seed: 1})
	h, err := peft.Federate(context.Background(), m, clients, peft.FedConfig{Rounds: 10, ClientsPerRound: 10,
		Local: peft.TrainConfig{Steps: 20, BatchSize: 16, LR: 3e-2}, Aggregator: agg, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("sent %d numbers per client per round, %d bytes in all\n", h.Values, h.Bytes()[10])
	fmt.Printf("ε = %.1f at δ = 1e-5\n", agg.Epsilon(0.5, 10, 1e-5))
	sigma, _ := dplora.NoiseFor(8, 1e-5, 0.5, 10)
	fmt.Printf("σ for ε = 8: %.2f\n", sigma)
	fmt.Printf("Abadi et al.'s q = 0.01, σ = 4, 10,000 steps: ε = %.2f\n", dplora.Epsilon(0.01, 4, 10000, 1e-5))
	// Output:
	// sent 808 numbers per client per round, 646400 bytes in all
	// ε = 81.4 at δ = 1e-5
	// σ for ε = 8: 1.29
	// Abadi et al.'s q = 0.01, σ = 4, 10,000 steps: ε = 1.04
}
