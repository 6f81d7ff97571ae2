package loku_test

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/loku"
	"gonum.org/v1/gonum/mat"
)

// ExampleUnlearn makes the shipped digits MLP (trained on the digits 0–4)
// forget the 0s and keep the 1–4s: the relative Fisher of the two sets
// picks where the rank-4 LoRA adapters start (FILA), then 100 steps of the
// inverted hinge loss on 0s plus cross-entropy on 1–4s train them.
// Accuracies are on held-out rows.
func ExampleUnlearn() {
	ctx := context.Background()
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	forget := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed, 0)
	retain := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed, 1, 2, 3, 4)

	// The Fisher is measured on the training rows, in batches of 8.
	batches := func(c *peft.Classification) []peft.Batch {
		n, d := c.X.Dims()
		var bs []peft.Batch
		for i := 0; i+8 <= n; i += 8 {
			bs = append(bs, peft.Batch{X: mat.DenseCopyOf(c.X.Slice(i, i+8, 0, d)), Labels: c.Labels[i : i+8]})
		}
		return bs
	}
	targets := []string{"fc1", "fc2"}
	imp, err := loku.Importance(ctx, m, batches(forget), batches(retain), targets)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := loku.Add(m, loku.Config{R: 4, Alpha: 8, Targets: targets, Importance: imp}); err != nil {
		fmt.Println(err)
		return
	}
	before, _ := loku.Measure(ctx, m, forget, retain)
	_, err = loku.Unlearn(ctx, m, forget, retain, loku.UnlearnConfig{Steps: 100, BatchSize: 32, LR: 1e-2, Schedule: "constant", Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	after, _ := loku.Measure(ctx, m, forget, retain)
	n, total, _ := peft.TrainableParams(m)
	fmt.Printf("trained %d of %d numbers\n", n, total)
	fmt.Printf("before: forget accuracy %.2f, retain accuracy %.2f\n", before.Forget.Accuracy, before.Retain.Accuracy)
	fmt.Printf("after:  forget accuracy %.2f, retain accuracy %.2f\n", after.Forget.Accuracy, after.Retain.Accuracy)
	// Output:
	// trained 808 of 5618 numbers
	// before: forget accuracy 1.00, retain accuracy 0.99
	// after:  forget accuracy 0.00, retain accuracy 1.00
}

// ExampleIHL computes the inverted hinge loss of two predictions with
// probabilities (0.5, 0.3, 0.2): 1 + 0.5 − 0.3 = 1.2 when the target is
// the likeliest token, 1 + 0.2 − 0.5 = 0.7 when it is the least likely.
// Gradient ascent's −CE would be −0.69 and −1.61, and falls without
// bound; IHL stays in [0, 2].
func ExampleIHL() {
	lp := []float64{math.Log(.5), math.Log(.3), math.Log(.2)}
	z := peft.NewConst(mat.NewDense(2, 3, append(append([]float64(nil), lp...), lp...)))
	fmt.Printf("IHL %.2f, first row %.2f, second %.2f\n",
		loku.IHL(z, []int{0, 2}).Scalar(),
		loku.IHL(peft.NewConst(mat.NewDense(1, 3, lp)), []int{0}).Scalar(),
		loku.IHL(peft.NewConst(mat.NewDense(1, 3, lp)), []int{2}).Scalar())
	// Output:
	// IHL 0.95, first row 1.20, second 0.70
}
