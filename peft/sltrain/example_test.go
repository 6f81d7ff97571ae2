package sltrain_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/sltrain"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd pretrains a digits classifier from scratch with SLTrain on
// both layers: each weight is s·B·A + S with rank r = 4 and 10% of its
// entries in S, and Pretrain keeps the biases trainable. It trains 28% of
// the numbers dense training does and comes within a few points of its
// accuracy, and its 64×64 weight has full rank where B·A alone has rank 4.
func ExampleAdd() {
	ctx := context.Background()
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	m := peft.NewMLP([]int{64, 64, 10}, 1)
	dense, _, _ := peft.TrainableParams(m)
	as, err := sltrain.Add(m, sltrain.Config{R: 4, Delta: 0.1, Pretrain: true, Targets: []string{"fc1", "fc2"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	trained, _, _ := peft.TrainableParams(m)
	fmt.Printf("trained numbers: %d of dense training's %d\n", trained, dense)
	cfg := peft.TrainConfig{Steps: 600, BatchSize: 64, LR: 1e-2, EvalEvery: 600, Seed: 1}
	h, err := peft.Train(ctx, m, data, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("SLTrain: eval %s after 600 steps %.3f\n", h.MetricName, h.EvalMetric[0])
	hd, err := peft.FullFineTune(ctx, peft.NewMLP([]int{64, 64, 10}, 1), data, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("dense:   eval %s after 600 steps %.3f\n", hd.MetricName, hd.EvalMetric[0])
	rank := func(w mat.Matrix) int {
		var svd mat.SVD
		svd.Factorize(w, mat.SVDNone)
		sv, r := svd.Values(nil), 0
		for _, s := range sv {
			if s > 1e-10*sv[0] {
				r++
			}
		}
		return r
	}
	a := as[0]
	var lowRank mat.Dense
	lowRank.Mul(a.B.Value, a.A.Value)
	fmt.Printf("fc1: %d of 64×64 entries in S; rank s·B·A = %d, rank S = %d, rank s·B·A + S = %d\n", a.N(), rank(&lowRank), rank(a.Sparse()), rank(a.Weight()))
	// Output:
	// trained numbers: 1355 of dense training's 4810
	// SLTrain: eval accuracy after 600 steps 0.933
	// dense:   eval accuracy after 600 steps 0.967
	// fc1: 409 of 64×64 entries in S; rank s·B·A = 4, rank S = 64, rank s·B·A + S = 64
}
