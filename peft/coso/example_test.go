package coso_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/coso"
)

// ExampleCoSO learns the five split-digits pairs with an MLP, the task
// known at test time (task-incremental), once by plain fine-tuning and once
// with CoSO, and prints the average accuracy, the forgetting and how many
// input directions of the first layer the earlier tasks now reserve.
func ExampleCoSO() {
	seq := peft.SplitDigits(0.25, 0, 2)
	cfg := peft.ContinualConfig{
		Train:           peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 3e-3, Seed: 1},
		TaskIncremental: true,
	}
	plain, err := peft.RunContinual(context.Background(), peft.NewMLP([]int{64, 64, 10}, 1), seq, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	m := peft.NewMLP([]int{64, 64, 10}, 1)
	o := coso.New(coso.Config{Rank: 8})
	cfg.Method = o
	res, err := peft.RunContinual(context.Background(), m, seq, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, h := o.History(m.Layers[0].W).Dims()
	fmt.Printf("plain: average accuracy %.2f, forgetting %.2f\n", plain.Average(), plain.Forgetting())
	fmt.Printf("CoSO:  average accuracy %.2f, forgetting %.2f\n", res.Average(), res.Forgetting())
	fmt.Printf("history of fc1: %d of 64 input directions\n", h)
	// Output:
	// plain: average accuracy 0.61, forgetting 0.27
	// CoSO:  average accuracy 0.93, forgetting 0.01
	// history of fc1: 16 of 64 input directions
}
