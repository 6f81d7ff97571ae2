package loraggpo_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/loraggpo"
)

// ExampleTrain adapts the digits MLP (pretrained on 0–4) to all ten digits
// with LoRA-GGPO: LoRA of rank 4 on both layers, trained at perturbed
// weights (σ = 0.3); the base weights are unperturbed when Train returns.
func ExampleTrain() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := lora.Add(m, lora.Config{R: 4, Alpha: 8, Targets: []string{"fc1", "fc2"}, Seed: 2}); err != nil {
		fmt.Println(err)
		return
	}
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	cfg := peft.TrainConfig{Steps: 300, BatchSize: 32, LR: 1e-2, Seed: 3, EvalEvery: 300}
	h, err := loraggpo.Train(context.Background(), m, data, cfg, loraggpo.Config{Sigma: 0.3, Seed: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("eval loss %.2f, %s %.2f\n", h.EvalLoss[0], h.MetricName, h.EvalMetric[0])
	// Output:
	// eval loss 0.68, accuracy 0.78
}
