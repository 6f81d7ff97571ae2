package loldu_test

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/loldu"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts LoLDU of rank r = 2 on both layers of an MLP. Each
// layer's W is replaced by W_res, and the adapter adds back
// s·P·L_r·diag(z)·U_r, so the model is unchanged at init while only the r
// numbers of z are trained per layer. z starts at the first r pivots of
// W's LU factorization; changing z, as training does, changes the output.
func ExampleAdd() {
	m := peft.NewMLP([]int{6, 8, 3}, 7)
	x := peft.NewConst(mat.NewDense(2, 6, []float64{1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1}))
	before := mat.DenseCopyOf(m.Forward(x).Value)
	w := mat.DenseCopyOf(m.Layers[0].W.Value)
	as, err := loldu.Add(m, loldu.Config{R: 2, Targets: []string{"fc1", "fc2"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("trained numbers: %d; output at init unchanged: %v\n", n, mat.EqualApprox(m.Forward(x).Value, before, 1e-12))
	a := as[0]
	fmt.Printf("fc1: W_res + s·P·L_r·diag(z)·U_r rebuilds W: %v\n", mat.EqualApprox(a.MergedWeight(m.Layers[0].W.Value), w, 1e-12))
	z := a.Diagonal()
	fmt.Printf("fc1: s = %.1f, L is %d×%d, U is %d×%d, %d pivots in z\n", a.Scale(), a.L.RawMatrix().Rows, a.L.RawMatrix().Cols, a.U.RawMatrix().Rows, a.U.RawMatrix().Cols, len(z))
	a.Z.Value.Set(0, 0, 2*z[0]) // as if trained
	fmt.Printf("output changed after moving z: %v\n", !mat.EqualApprox(m.Forward(x).Value, before, 1e-12))
	// Output:
	// trained numbers: 4; output at init unchanged: true
	// fc1: W_res + s·P·L_r·diag(z)·U_r rebuilds W: true
	// fc1: s = 1.0, L is 8×2, U is 2×6, 2 pivots in z
	// output changed after moving z: true
}
