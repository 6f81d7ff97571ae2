package dora_test

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dora"
	"gonum.org/v1/gonum/mat"
)

// ExampleDoRA attaches DoRA to a small classifier: the output is the base
// model's at init, and after B moves the merged weight's row norms are
// still the magnitudes M.
func ExampleDoRA() {
	m := peft.NewMLP([]int{4, 3, 2}, 1)
	x := peft.NewConst(mat.NewDense(1, 4, []float64{1, -2, 0.5, 3}))
	before := mat.DenseCopyOf(m.Forward(x).Value)
	ads, err := dora.Add(m, dora.Config{R: 1, Alpha: 2, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	d := ads[0]
	fmt.Println("output unchanged at init:", mat.Equal(m.Forward(x).Value, before))
	fmt.Printf("M = %.4f\n", d.M.Value.RawMatrix().Data)
	d.B.Value.Set(0, 0, 0.5) // as if trained
	w := d.MergedWeight(m.Layers[0].W.Value)
	fmt.Printf("row norms of merged W' = %.4f\n", rowNorms(w))
	n, total, pct := peft.TrainableParams(m)
	fmt.Printf("trainable %d of %d (%.1f%%)\n", n, total, pct)
	// Output:
	// output unchanged at init: true
	// M = [0.4858 0.5893 0.5483]
	// row norms of merged W' = [0.4858 0.5893 0.5483]
	// trainable 10 of 33 (30.3%)
}

// ExampleConfig attaches DoRA to both layers of a classifier and lists the
// trainable tensors with PEFT's names.
func ExampleConfig() {
	m := peft.NewMLP([]int{6, 4, 3}, 1)
	if _, err := dora.Add(m, dora.Config{R: 2, Alpha: 4, Targets: []string{"fc1", "fc2"}}); err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range m.Params() {
		if p.Trainable {
			r, c := p.Dims()
			fmt.Printf("%s %d×%d\n", p.Name, r, c)
		}
	}
	// Output:
	// fc1.lora_A.default.weight 2×6
	// fc1.lora_B.default.weight 4×2
	// fc1.lora_magnitude_vector.default.weight 1×4
	// fc2.lora_A.default.weight 2×4
	// fc2.lora_B.default.weight 3×2
	// fc2.lora_magnitude_vector.default.weight 1×3
}
