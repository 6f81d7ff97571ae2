package flora_test

import (
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/flora"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts FLoRA on a convolution-shaped layer and a plain one of an
// MLP. fc1's W (16×72) holds a 3×3 kernel (C_out, C_in, kh, kw) = (16, 8,
// 3, 3), so with Ranks (4, 4, 2, 2) its update is a Tucker tensor with a
// 4×4×2×2 core: 64 + 16·4 + 8·4 + 3·2 + 3·2 = 172 trained numbers, about
// a rank-2 LoRA's 2·(16 + 72) = 176, yet ΔW can reach rank 4 as a matrix.
// fc2 (3×16) has no kernel, so R = 2 makes it s·U_1·G·U_2ᵀ with a 2×2
// core. G is zero at init, so the model starts as the base model.
func ExampleAdd() {
	m := peft.NewMLP([]int{72, 16, 3}, 7)
	m.Layers[0].Kernel = []int{16, 8, 3, 3}
	x := peft.NewConst(mat.NewDense(2, 72, nil))
	x.Value.Apply(func(i, j int, _ float64) float64 { return float64((i+1)*(j%5)) / 10 }, x.Value)
	before := mat.DenseCopyOf(m.Forward(x).Value)

	conv, err := flora.Add(m, flora.Config{Ranks: []int{4, 4, 2, 2}, Scale: 4, Targets: []string{"fc1"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fc, err := flora.Add(m, flora.Config{R: 2, Targets: []string{"fc2"}, Seed: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("fc1: modes %v, ranks %v, %d numbers\n", conv[0].Dims(), conv[0].Ranks(), conv[0].NumParams())
	fmt.Printf("fc2: modes %v, ranks %v, %d numbers\n", fc[0].Dims(), fc[0].Ranks(), fc[0].NumParams())
	fmt.Printf("trained numbers: %d; output at init is the base model's: %v\n", n, mat.Equal(m.Forward(x).Value, before))

	// As if trained: a random core.
	rng := rand.New(rand.NewSource(3))
	g := conv[0].G.Value
	g.Apply(func(_, _ int, _ float64) float64 { return rng.NormFloat64() }, g)
	r, c := conv[0].Delta().Dims()
	fmt.Printf("ΔW of fc1 is (%d×%d), of rank at most %d\n", r, c, conv[0].Rank())
	// Output:
	// fc1: modes [16 8 3 3], ranks [4 4 2 2], 172 numbers
	// fc2: modes [3 16], ranks [2 2], 42 numbers
	// trained numbers: 214; output at init is the base model's: true
	// ΔW of fc1 is (16×72), of rank at most 4
}

// ExampleConfig_Check shows the error of a mode rank above its dim.
func ExampleConfig_Check() {
	cfg := flora.Config{Ranks: []int{16, 16, 4, 2}}
	fmt.Println(cfg.Check("stage1.conv", []int{64, 32, 3, 3}))
	// Output:
	// peft: FLoRA on stage1.conv: Ranks[2] = 4 out of range for mode 3 of (64×32×3×3): want 1 ≤ r_3 ≤ d_3 = 3
}
