package salt_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/salt"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts SALT (r = 2, r_L = 1) on the first layer of an MLP, whose
// W₀ is 5×6 (m = 5): the layer trains 2r + 2(m−r)·r_L = 10 numbers. Setting
// α_1 = 2 and β_2 = 0.1 by hand, as training might, doubles W₀'s largest
// singular value and shifts the second; the other three are untouched until
// X·Y moves them.
func ExampleAdd() {
	m := peft.NewMLP([]int{6, 5, 3}, 7)
	w0 := mat.DenseCopyOf(m.Layers[0].W.Value)
	ss, err := salt.Add(m, salt.Config{R: 2, RLoRA: 1, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("trained numbers: %d\n", n)
	s := ss[0]
	s.Scale.Value.Set(0, 0, 2)   // σ_1 → 2·σ_1
	s.Shift.Value.Set(0, 1, 0.1) // σ_2 → σ_2 + 0.1
	before, _ := accel.SingularValues(context.Background(), w0)
	after, _ := accel.SingularValues(context.Background(), s.MergedWeight(w0))
	fmt.Printf("σ(W₀) = %.4f\n", before)
	fmt.Printf("σ(W') = %.4f\n", after)
	// Output:
	// trained numbers: 10
	// σ(W₀) = [0.9978 0.7013 0.3857 0.3537 0.1962]
	// σ(W') = [1.9956 0.8013 0.3857 0.3537 0.1962]
}
