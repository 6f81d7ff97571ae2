package osf_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/osf"
)

// ExampleOSF learns the five split-digits pairs one after another with an
// MLP, once by plain fine-tuning and once with OSF protecting each weight's
// top singular directions after every task, and compares what is left of
// the earlier tasks at the end.
func ExampleOSF() {
	seq := peft.SplitDigits(0.25, 0, 2)
	cfg := peft.ContinualConfig{Train: peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 3e-3, Seed: 1}}
	plain, err := peft.RunContinual(context.Background(), peft.NewMLP([]int{64, 64, 10}, 1), seq, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	m := peft.NewMLP([]int{64, 64, 10}, 1)
	o := osf.New(osf.Config{Tasks: len(seq.Tasks)})
	cfg.Method = o
	res, err := peft.RunContinual(context.Background(), m, seq, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("plain: average accuracy %.2f, forgetting %.2f\n", plain.Average(), plain.Forgetting())
	fmt.Printf("OSF:   average accuracy %.2f, forgetting %.2f\n", res.Average(), res.Forgetting())
	fmt.Printf("protected rank of fc1 (64×64): %d\n", o.Rank(m.Layers[0].W))
	// Output:
	// plain: average accuracy 0.07, forgetting 0.76
	// OSF:   average accuracy 0.72, forgetting 0.11
	// protected rank of fc1 (64×64): 32
}
