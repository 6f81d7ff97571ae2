package sltrain_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/sltrain"
)

// BenchmarkStep times one forward and backward pass of a (d×d) SLTrain layer
// (r = 8, δ = 0.03) on a batch of 64 rows, next to the dense layer it
// replaces trained in full: the scatter of S costs O(d²) to zero the matrix and
// O(N) to place the entries, on top of the dense x·Sᵀ.
func BenchmarkStep(b *testing.B) {
	for _, d := range []int{64, 256} {
		rng := rand.New(rand.NewSource(1))
		x := peft.NewConst(adaptertest.RandDense(rng, 64, d))
		for _, kind := range []string{"sltrain", "dense"} {
			b.Run(fmt.Sprintf("%s/d=%d", kind, d), func(b *testing.B) {
				m := adaptertest.NewChain(1, []string{"fc"}, d, d)
				if kind == "sltrain" {
					if _, err := sltrain.Add(m, sltrain.Config{R: 8, Targets: []string{"fc"}, Seed: 1}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					peft.SumAll(m.Forward(x)).Backward()
				}
			})
		}
	}
}
