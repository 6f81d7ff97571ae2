package qgalore_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/qgalore"
)

// ExampleQGaLore trains the digits MLP with Q-GaLore at rank 4 and shows
// what it keeps: the projected weights in INT8 (Value is their
// dequantized copy), the projectors in INT4, and each layer's refresh
// interval.
func ExampleQGaLore() {
	m := peft.NewMLP([]int{64, 32, 10}, 1)
	opt := qgalore.New(qgalore.Config{Rank: 4, UpdateProjGap: 10, Scale: 1, Seed: 1})
	cfg := peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 0.01, Optimizer: opt, Seed: 1}
	if _, err := peft.Train(context.Background(), m, peft.DigitsData(0.2, 1), cfg); err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range peft.TrainableOf(m) {
		w := opt.Weight(p)
		if w == nil {
			continue // a bias: plain AdamW in float64
		}
		pq, _ := opt.Projector(p)
		gap, svds := opt.Gap(p)
		r, c := p.Dims()
		fmt.Printf("%s (%d×%d): weight %s %.3f bits/entry, projector %s (%d×%d), %d SVDs, interval %d\n",
			p.Name, r, c, w.Format, w.Bits(), pq.Format, pq.Rows, pq.Cols, svds, gap)
	}
	fmt.Printf("state: %d bytes\n", opt.StateBytes())
	// Output:
	// fc1.weight (32×64): weight INT8 8.125 bits/entry, projector INT4 (32×4), 6 SVDs, interval 10
	// fc2.weight (10×32): weight INT8 8.200 bits/entry, projector INT4 (10×4), 6 SVDs, interval 10
	// state: 9396 bytes
}
