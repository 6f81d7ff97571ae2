package hut_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/hut"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts HUT of rank r = 1 on the first layer of an MLP (W₀ 8×6).
// At init B = 0, so the mask J + B·A is all ones and the model is the base
// model. Once B and A are nonzero, as after training, the mask has rank
// one above J, yet ΔW = W₀ ⊙ (B·A) has full rank 6: the layer trains
// r·(d + k) = 14 numbers, as a rank-1 LoRA would, for an update no rank-1
// LoRA can make.
func ExampleAdd() {
	m := peft.NewMLP([]int{6, 8, 3}, 7)
	l := m.Layers[0]
	x := peft.NewConst(mat.NewDense(2, 6, []float64{1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1}))
	before := mat.DenseCopyOf(m.Forward(x).Value)
	hs, err := hut.Add(m, hut.Config{R: 1, Targets: []string{"fc1"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("trained numbers: %d; output at init is the base model's: %v\n", n, mat.Equal(m.Forward(x).Value, before))
	h := hs[0]
	for i := 0; i < 8; i++ {
		h.B.Value.Set(i, 0, 0.1*float64(i+1)) // as if trained
	}
	var ba mat.Dense
	ba.Mul(h.B.Value, h.A.Value)
	fmt.Printf("rank(B·A) = %d, rank(ΔW) = %d\n", rank(&ba), rank(h.Delta(l.W.Value)))
	// Output:
	// trained numbers: 14; output at init is the base model's: true
	// rank(B·A) = 1, rank(ΔW) = 6
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
