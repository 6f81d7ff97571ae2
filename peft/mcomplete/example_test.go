package mcomplete_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft/mcomplete"
)

// ExampleComplete recovers a rank-3 matrix of 200×200 from 20% of its
// entries, with one conjugate-gradient step per least-squares solve (the
// inexact solves the robust analysis allows), then prints a small phase
// diagram: the final error for ranks 1 and 3 at three sampling rates.
func ExampleComplete() {
	lr := mcomplete.Generate(200, 200, 3, 1, 1)
	obs := mcomplete.Observe(lr.M, 0.2, 2)
	res, err := mcomplete.Complete(context.Background(), obs, mcomplete.Config{K: 3, Solver: "cg", CGIters: 1, Truth: lr.M})
	if err != nil {
		fmt.Println(err)
		return
	}
	rate, _ := mcomplete.ConvergenceRate(res.Err, 1e-1, 1e-11)
	fmt.Printf("observed %.0f%%, recovered: %v, rate below 0.7: %v\n", 100*obs.Rate(), res.Err[len(res.Err)-1] < 1e-8, rate < 0.7)

	ph, err := mcomplete.PhaseDiagram(context.Background(), 100, []int{1, 3}, []float64{0.03, 0.1, 0.4}, mcomplete.Config{}, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	for a, k := range ph.Ks {
		fmt.Printf("k=%d:", k)
		for b := range ph.Ps {
			fmt.Printf(" %v", ph.Err[a][b] < 1e-8)
		}
		fmt.Println()
	}
	// Output:
	// observed 20%, recovered: true, rate below 0.7: true
	// k=1: false true true
	// k=3: false false true
}
