package pissa_test

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/pissa"
	"gonum.org/v1/gonum/mat"
)

// ExampleConfig initializes a rank-2 PiSSA adapter and shows that the
// frozen residual keeps only W's tail of singular values.
func ExampleConfig() {
	m := peft.NewMLP([]int{6, 5, 3}, 7)
	s0, _ := accel.SingularValues(context.Background(), m.Layers[0].W.Value)
	ads, err := pissa.Add(m, pissa.Config{R: 2, Alpha: 4, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	s1, _ := accel.SingularValues(context.Background(), m.Layers[0].W.Value)
	fmt.Printf("σ(W)     = %.4f\n", s0)
	fmt.Printf("σ(W_res) = %.4f\n", s1)
	fmt.Printf("B %d×%d, A %d×%d, s = %g\n", ads[0].B.Value.RawMatrix().Rows, ads[0].R, ads[0].R, ads[0].A.Value.RawMatrix().Cols, ads[0].Scaling())
	// Output:
	// σ(W)     = [0.9978 0.7013 0.3857 0.3537 0.1962]
	// σ(W_res) = [0.3857 0.3537 0.1962 0.0000 0.0000]
	// B 5×2, A 2×6, s = 2
}

// ExampleToLoRA exports a trained PiSSA adapter as a plain rank-2r LoRA on
// the original weight W, the form PEFT users load.
func ExampleToLoRA() {
	m := peft.NewMLP([]int{6, 5, 3}, 7)
	w := mat.DenseCopyOf(m.Layers[0].W.Value) // the original W
	ads, err := pissa.Add(m, pissa.Config{R: 2, Alpha: 4, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := ads[0]
	a0, b0 := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value) // keep the init
	a.B.Value.Set(0, 0, a.B.Value.At(0, 0)+0.3)                      // as if trained
	l := pissa.ToLoRA(a, a0, b0)
	fmt.Printf("rank %d, α = %g, s = %g\n", l.R, l.Alpha, l.Scaling())
	var d mat.Dense
	d.Sub(l.MergedWeight(w), a.MergedWeight(m.Layers[0].W.Value))
	fmt.Printf("max |W + s·B'·A' − (W_res + s·B·A)| < 1e-12: %v\n", mat.Norm(&d, math.Inf(1)) < 1e-12)
	// Output:
	// rank 4, α = 8, s = 2
	// max |W + s·B'·A' − (W_res + s·B·A)| < 1e-12: true
}
