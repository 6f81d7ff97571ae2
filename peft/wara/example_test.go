package wara_test

import (
	"context"
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/wara"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts WaRA of rank r = 1 on both layers of an MLP: fc1 (W₀
// 8×6) and fc2 (W₀ 3×8, whose odd height is padded to 4 on the wavelet
// grid and cropped back). At init B = 0, so the model is the base model.
// Once the factors are nonzero, as after training, each subband adds rank
// one: fc1's ΔW has rank 4r = 4 for 2r·(d + k) = 28 numbers, where a LoRA
// given those 28 numbers has rank 2.
func ExampleAdd() {
	m := peft.NewMLP([]int{6, 8, 3}, 7)
	x := peft.NewConst(mat.NewDense(2, 6, []float64{1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1}))
	before := mat.DenseCopyOf(m.Forward(x).Value)
	ws, err := wara.Add(m, wara.Config{R: 1, Targets: []string{"fc1", "fc2"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("output at init is the base model's: %v\n", mat.Equal(m.Forward(x).Value, before))
	rng := rand.New(rand.NewSource(2))
	for i, w := range ws {
		r, c := w.B.Dims()
		for p := 0; p < r; p++ {
			for q := 0; q < c; q++ {
				w.B.Value.Set(p, q, rng.NormFloat64()) // as if trained
			}
		}
		d, k := w.Dims()
		dp, kp := wara.Padded(d, k)
		fmt.Printf("%s: W₀ (%d×%d) on the (%d×%d) grid, %d numbers, rank(ΔW) = %d\n",
			m.Layers[i].Name, d, k, dp, kp, 2*w.R*(dp+kp), rank(w.Delta()))
	}
	fmt.Printf("output changed: %v\n", !mat.EqualApprox(m.Forward(x).Value, before, 1e-9))
	// Output:
	// output at init is the base model's: true
	// fc1: W₀ (8×6) on the (8×6) grid, 28 numbers, rank(ΔW) = 4
	// fc2: W₀ (3×8) on the (4×8) grid, 24 numbers, rank(ΔW) = 3
	// output changed: true
}

// rank returns the number of singular values of a above 1e-10·σ_1.
func rank(a mat.Matrix) int {
	s, err := accel.SingularValues(context.Background(), a)
	if err != nil {
		return -1
	}
	n := 0
	for _, v := range s {
		if v > 1e-10*s[0] {
			n++
		}
	}
	return n
}
