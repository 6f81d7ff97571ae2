package dsee_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dsee"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd trains DSEE of rank 2 on the teacher task, whose ΔW* (12×10)
// has rank 3: no rank-2 update gets closer to W* than the Eckart–Young
// floor, but the N sparse entries of S₂ reach past it, more the larger N.
// A layer trains r·(d + k) + N numbers.
func ExampleAdd() {
	task := peft.NewTeacherTask(12, 10, []float64{3, 2, 1}, 200, 1)
	fmt.Printf("rank-2 floor: ‖W−W*‖/‖ΔW*‖ = %.3f\n", task.BestRankError(2))
	for _, n := range []int{4, 16, 64} {
		m := task.Model()
		if _, err := dsee.Add(m, dsee.Config{R: 2, N: n, Targets: []string{"proj"}, Seed: 2}); err != nil {
			fmt.Println(err)
			return
		}
		trained, _, _ := peft.TrainableParams(m)
		if _, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 1500, BatchSize: 64, LR: 2e-2, MinLR: 1e-4, Seed: 1}); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("N=%d: %d trained, ‖W−W*‖/‖ΔW*‖ = %.3f\n", n, trained, task.RecoveryError(m))
	}
	// Output:
	// rank-2 floor: ‖W−W*‖/‖ΔW*‖ = 0.267
	// N=4: 48 trained, ‖W−W*‖/‖ΔW*‖ = 0.251
	// N=16: 60 trained, ‖W−W*‖/‖ΔW*‖ = 0.213
	// N=64: 108 trained, ‖W−W*‖/‖ΔW*‖ = 0.109
}

// ExamplePrune is DSEE's second stage on the shipped digits MLP, which
// has seen only the digits 0–4: DSEE adapts it to all ten, Prune zeroes
// half of each merged weight (the smallest in magnitude), and training the
// adapters again under the mask wins back the accuracy pruning cost.
func ExamplePrune() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	ds, err := dsee.Add(m, dsee.Config{R: 8, Alpha: 16, N: 64, Targets: []string{"fc1", "fc2"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	cfg := peft.TrainConfig{Steps: 300, BatchSize: 64, LR: 1e-2, Seed: 1}
	accuracy := func() float64 {
		_, acc, err := peft.Evaluate(ctx, m, data)
		if err != nil {
			panic(err)
		}
		return acc
	}
	if _, err := peft.Train(ctx, m, data, cfg); err != nil {
		fmt.Println(err)
		return
	}
	trained := accuracy()
	if err := dsee.Prune(m, dsee.DefaultPruneRatio); err != nil {
		fmt.Println(err)
		return
	}
	pruned := accuracy()
	if _, err := peft.Train(ctx, m, data, cfg); err != nil {
		fmt.Println(err)
		return
	}
	retrained := accuracy()
	fmt.Printf("trained %.3f, pruned %.3f, retrained %.3f\n", trained, pruned, retrained)
	for i, l := range m.Layers {
		zeros := 0
		w := ds[i].MergedWeight(l.W.Value)
		for _, v := range w.RawMatrix().Data {
			if v == 0 {
				zeros++
			}
		}
		r, c := w.Dims()
		fmt.Printf("%s: %d of %d×%d entries zero\n", l.Name, zeros, r, c)
	}
	// Output:
	// trained 0.935, pruned 0.918, retrained 0.964
	// fc1: 2048 of 64×64 entries zero
	// fc2: 320 of 10×64 entries zero
}

// ExampleSelectSupport shows what the two selections pick from a weight
// that is a rank-1 matrix with large entries plus two small spikes, at
// (0, 2) and (3, 1): Magnitude takes the largest entries, which belong to
// the low-rank part; Decomposition takes the entries that stand out from
// it, the spikes.
func ExampleSelectSupport() {
	u := []float64{3, -2, 1, 2.5, -1}
	v := []float64{1, -1, 0.5, 2}
	w := mat.NewDense(5, 4, nil)
	for i := range u {
		for j := range v {
			w.Set(i, j, u[i]*v[j])
		}
	}
	w.Set(0, 2, w.At(0, 2)+0.8) // spike at flat index 0·4 + 2 = 2
	w.Set(3, 1, w.At(3, 1)-0.8) // spike at flat index 3·4 + 1 = 13
	ctx := context.Background()
	dc := dsee.DecompConfig{Rank: 1, Threshold: 0.3}
	for _, sel := range []dsee.Selection{dsee.Magnitude, dsee.Decomposition} {
		omega, err := dsee.SelectSupport(ctx, w, 2, sel, dc)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-13s Ω = %v\n", sel, omega)
	}
	// Output:
	// magnitude     Ω = [3 15]
	// decomposition Ω = [2 13]
}
