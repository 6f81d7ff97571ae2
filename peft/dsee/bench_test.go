package dsee_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/dsee"
	"github.com/gopeft/gopeft/peft/lora"
)

// BenchmarkStep times one forward and backward pass of a (d×d) layer with
// DSEE (r = 8, N = 64, pruned or not) or LoRA (r = 8) on a batch of 64
// rows: DSEE adds the scatter of S₂ (O(d²) to zero the matrix, O(N) to place
// the entries) and the dense x·S₂ᵀ.
func BenchmarkStep(b *testing.B) {
	for _, d := range []int{64, 256} {
		rng := rand.New(rand.NewSource(1))
		x := peft.NewConst(adaptertest.RandDense(rng, 64, d))
		for _, kind := range []string{"dsee", "dsee-pruned", "lora"} {
			b.Run(fmt.Sprintf("%s/d=%d", kind, d), func(b *testing.B) {
				m := adaptertest.NewChain(1, []string{"fc"}, d, d)
				var err error
				if kind == "lora" {
					_, err = lora.Add(m, lora.Config{R: 8, Targets: []string{"fc"}, Seed: 1})
				} else {
					_, err = dsee.Add(m, dsee.Config{R: 8, Selection: dsee.Magnitude, Targets: []string{"fc"}, Seed: 1})
				}
				if err == nil && kind == "dsee-pruned" {
					err = dsee.Prune(m, 0.5)
				}
				if err != nil {
					b.Fatal(err)
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
