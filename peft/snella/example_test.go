package snella_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/snella"
	"gonum.org/v1/gonum/mat"
)

// ExampleAdd puts SNELLA with q = 4 on the first layer of an MLP (W₀
// 16×12), keeping every entry at first (sparsity 0, as the released
// scripts), and an allocator that takes the budget to the default target
// sparsity 0.3, ⌈0.7·192⌉ = 135 entries, over 100 steps. The layer trains
// q·(d + k) + 3 = 115 numbers; its kernel-merged update has full rank 12,
// where B·Aᵀ of the same factors has rank q = 4.
func ExampleAdd() {
	m := peft.NewMLP([]int{12, 16, 3}, 7)
	as, err := snella.Add(m, snella.Config{Q: 4, Targets: []string{"fc1"}, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := as[0]
	n, _, _ := peft.TrainableParams(m)
	var lin mat.Dense
	lin.Mul(a.B.Value, a.A.Value.T())
	fmt.Printf("trained numbers: %d\n", n)
	fmt.Printf("rank(K) = %d, rank(B·Aᵀ) = %d\n", rank(a.Kernel()), rank(&lin))
	fmt.Printf("kept %d of %d (sparsity %.4f)\n", a.Kept(), 16*12, a.Sparsity())

	al, err := snella.NewAllocator(as, snella.AllocatorConfig{TotalStep: 100})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range []int{1, 50, 100} {
		b, _ := al.Budget(t)
		fmt.Printf("budget at step %d: %d\n", t, b)
	}
	// Then: peft.Train(ctx, m, data, peft.TrainConfig{Steps: 100, Hooks: []peft.Hook{al}, …})

	// Output:
	// trained numbers: 115
	// rank(K) = 12, rank(B·Aᵀ) = 4
	// kept 192 of 192 (sparsity 0.0000)
	// budget at step 1: 190
	// budget at step 50: 142
	// budget at step 100: 135
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
