package moram_test

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/moram"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts MoRAM (r = 2 atoms per task, keep k = 2) on the first
// layer of an MLP (W₀ 8×6), starts a second task, and shows what each
// input row activates: in training mode exactly k of the R = 4 experts,
// with weights summing to 1, the two old ones frozen.
func ExampleAdd() {
	m := peft.NewMLP([]int{6, 8, 3}, 7)
	as, err := moram.Add(m, moram.Config{R: 2, TopK: 2, Tau: 0.5, Targets: []string{"fc1"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("task %d: %d experts, %d trained numbers\n", as[0].Tasks, as[0].Rank(), n)

	// ... train task 1 with peft.Train, then:
	moram.IncrementTask(as)
	n, _, _ = peft.TrainableParams(m)
	fmt.Printf("task %d: %d experts, %d trained numbers\n", as[0].Tasks, as[0].Rank(), n)

	x := mat.NewDense(2, 6, []float64{1, 2, 3, 4, 5, 6, 6, -5, 4, -3, 2, -1})
	w := as[0].Weights(x, true) // (2×4), old atoms first
	for i := 0; i < 2; i++ {
		nz, sum := 0, 0.0
		for _, v := range w.RawRowView(i) {
			if v != 0 {
				nz++
				sum += v
			}
		}
		fmt.Printf("row %d: %d experts active, weights sum to %.4f\n", i, nz, sum)
	}
	// Output:
	// task 1: 2 experts, 28 trained numbers
	// task 2: 4 experts, 28 trained numbers
	// row 0: 2 experts active, weights sum to 1.0000
	// row 1: 2 experts active, weights sum to 1.0000
}
