package pela_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/pela"
)

// ExampleDistill compresses the shipped digits MLP to half its weight
// entries (c = 2), then distils it from the original model, which PELA
// keeps behind the adapters (teacher nil), on the digits it was trained on.
func ExampleDistill() {
	ctx := context.Background()
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed, peft.DigitsMLPClasses...)
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	_, base, _ := peft.Evaluate(ctx, m, data)
	ps, err := pela.Add(m, pela.Config{C: 2, Targets: []string{"fc1", "fc2"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	kept, orig := pela.Counts(m)
	fmt.Printf("fc1 rank %d (σ_1 = %.2f), fc2 rank %d: %d of %d weight entries\n", ps[0].Rank(), ps[0].Sigma[0], ps[1].Rank(), kept, orig)
	_, comp, _ := peft.Evaluate(ctx, m, data)
	_, err = pela.Distill(ctx, m, nil, data, pela.DistillConfig{Train: peft.TrainConfig{Steps: 400, BatchSize: 64, LR: 1e-2, Seed: 1}})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, after, _ := peft.Evaluate(ctx, m, data)
	fmt.Printf("accuracy: original %.3f, compressed %.3f, distilled %.3f\n", base, comp, after)
	// Output:
	// fc1 rank 16 (σ_1 = 6.30), fc2 rank 4: 2344 of 4736 weight entries
	// accuracy: original 0.995, compressed 0.929, distilled 0.981
}
