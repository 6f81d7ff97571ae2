package ewclora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/ewclora"
	"github.com/gopeft/gopeft/peft/lora"
)

// ExampleEWC puts LoRA on the shipped digits MLP (which knows 0–4) and
// teaches it 5,6 then 7,8 then 9,0, with EWC on the LoRA factors holding
// what each task found important; the task is known at test time.
func ExampleEWC() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := lora.Add(m, lora.Config{R: 8, Seed: 1, Targets: []string{"fc1", "fc2"}}); err != nil {
		fmt.Println(err)
		return
	}
	e := ewclora.New(ewclora.Config{Lambda: 1e4})
	res, err := peft.RunContinual(context.Background(), m,
		peft.DigitsSequence(0.25, 0, []int{5, 6}, []int{7, 8}, []int{9, 0}),
		peft.ContinualConfig{
			Train:           peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 1e-2, Seed: 1},
			Method:          e,
			TaskIncremental: true,
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("tasks consolidated: %d\n", e.Tasks())
	fmt.Printf("average accuracy %.2f, forgetting %.2f\n", res.Average(), res.Forgetting())
	// Output:
	// tasks consolidated: 3
	// average accuracy 0.74, forgetting 0.02
}
