package flora_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/flora"
)

// BenchmarkForward times a forward and backward pass of FLoRA on the
// paper's ConvNeXt setting, ranks (16, 16, 2, 2), on a (64, 64, 3, 3)
// kernel (W 64×576), for n im2col rows, in each form.
func BenchmarkForward(b *testing.B) {
	dims := []int{64, 64, 3, 3}
	rng := rand.New(rand.NewSource(1))
	l := &peft.Linear{Name: "conv", W: peft.NewConst(adaptertest.RandDense(rng, 64, 576)), Kernel: dims}
	f, err := flora.New("conv", "default", dims, flora.Config{Ranks: []int{16, 16, 2, 2}, Scale: 4}, rng)
	if err != nil {
		b.Fatal(err)
	}
	for _, form := range []struct {
		name string
		form int
	}{{"factored", flora.FormFactored}, {"delta", flora.FormDelta}} {
		for _, n := range []int{16, 256, 2048} {
			b.Run(fmt.Sprintf("%s/n=%d", form.name, n), func(b *testing.B) {
				flora.SetForm(b, form.form)
				x := peft.NewConst(adaptertest.RandDense(rng, n, 576))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					peft.SumAll(f.Forward(l, x, l.Base(x))).Backward()
				}
			})
		}
	}
}
