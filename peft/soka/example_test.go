package soka_test

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/soka"
)

// ExampleAdd puts SoKA on both layers of the shipped digits MLP: fc1's W
// (64×64) splits into Kronecker terms U_k (8×8) ⊗ V_k (8×8), fc2's (10×64)
// into (5×4) ⊗ (2×16). Each layer's rank is chosen from its Kronecker
// spectrum: the smallest keeping 90% of the energy, or the elbow if
// smaller, and at most 8 (which binds on both layers here). The principal terms become the adapter, and the
// residual stays frozen in W, so the model still computes what it did.
func ExampleAdd() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	as, err := soka.Add(m, soka.Config{R: 8, Energy: 0.9, Targets: []string{"fc1", "fc2"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, a := range as {
		e := soka.Energy(a.Spectrum)
		fmt.Printf("%s: U_k (%d×%d), V_k (%d×%d), %d terms; energy rule %d, elbow %d: rank %d keeps %.2f of the energy\n",
			m.Layers[i].Name, a.M1, a.N1, a.M2, a.N2, len(a.Spectrum), soka.EnergyRank(a.Spectrum, 0.9), soka.ElbowRank(a.Spectrum), a.R, e[a.R-1])
	}
	n, _, _ := peft.TrainableParams(m)
	fmt.Printf("%d trained numbers\n", n)
	// Output:
	// fc1: U_k (8×8), V_k (8×8), 64 terms; energy rule 26, elbow 19: rank 8 keeps 0.54 of the energy
	// fc2: U_k (5×4), V_k (2×16), 20 terms; energy rule 10, elbow 8: rank 8 keeps 0.86 of the energy
	// 1456 trained numbers
}
