package snnet_test

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/snnet"
)

// BenchmarkLeastSquares times the stitch's init on n rows at the digits
// anchors' widths, both ways.
func BenchmarkLeastSquares(b *testing.B) {
	for _, s := range []struct{ n, d1, d2 int }{{256, 16, 64}, {256, 64, 16}, {1024, 64, 64}} {
		b.Run(fmt.Sprintf("n=%d/d1=%d/d2=%d", s.n, s.d1, s.d2), func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			x1 := adaptertest.RandDense(rng, s.n, s.d1)
			x2 := adaptertest.RandDense(rng, s.n, s.d2)
			b.ReportAllocs()
			b.SetBytes(int64(8 * s.n * (s.d1 + s.d2)))
			for b.Loop() {
				if _, _, err := snnet.LeastSquares(context.Background(), x1, x2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStep times one forward and backward pass of a stitched network
// (16-wide front layer, stitch 16→64 with LoRA r = 8, two 64-wide back
// layers) on a batch of 64.
func BenchmarkStep(b *testing.B) {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	s, err := snnet.New(context.Background(), peft.NewMLP(snnet.DigitsSmallSizes, 1), peft.NewMLP(snnet.DigitsLargeSizes, 2), data, snnet.StitchConfig{L: 1, LPrime: 1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := snnet.Add(s, snnet.Config{R: 8}); err != nil {
		b.Fatal(err)
	}
	batch := data.Sample(rand.New(rand.NewSource(1)), 64)
	b.ReportAllocs()
	for b.Loop() {
		s.Loss(batch).Backward()
	}
}
