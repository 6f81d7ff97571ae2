package peft_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

func ExampleSpectrumOf() {
	s, err := peft.SpectrumOf([]float64{8, 4, 2, 0.1, 0.1, 0.1})
	if err != nil {
		fmt.Println(err)
		return
	}
	e := s.Energy()
	fmt.Printf("energy of rank 2: %.4f\n", e[1])
	fmt.Println("rank for 99% energy:", s.RankForEnergy(0.99))
	fmt.Printf("effective rank %.4f, stable rank %.4f\n", s.EffectiveRank(), s.StableRank())
	fmt.Println("elbow:", s.Elbow())
	fmt.Println("numerical rank at 0.5:", s.NumericalRank(0.5))
	// Output:
	// energy of rank 2: 0.9520
	// rank for 99% energy: 3
	// effective rank 2.8879, stable rank 1.3130
	// elbow: 3
	// numerical rank at 0.5: 3
}

func ExampleNewSpectrum() {
	a := mat.NewDense(3, 2, []float64{3, 0, 0, 2, 0, 0})
	s, err := peft.NewSpectrum(context.Background(), a)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("σ = %.4f, shape %d×%d\n", s.S, s.Rows, s.Cols)
	_, err = peft.SpectrumOf([]float64{1, -1})
	fmt.Println(err)
	// Output:
	// σ = [3.0000 2.0000], shape 3×2
	// peft: SpectrumOf: singular value 1 is negative (-1)
}

func ExampleSubspaceSimilarityBases() {
	u := mat.NewDense(3, 2, []float64{1, 0, 0, 1, 0, 0}) // e1, e2
	v := mat.NewDense(3, 2, []float64{1, 0, 0, 0, 0, 1}) // e1, e3
	phi, _ := peft.SubspaceSimilarityBases(u, v)
	fmt.Printf("%.2f\n", mat.Formatted(phi))
	th, _ := peft.PrincipalAnglesBases(u, v)
	fmt.Printf("principal angles %.4f\n", th)
	// Output:
	// ⎡1.00  1.00⎤
	// ⎣1.00  0.50⎦
	// principal angles [0.0000 1.5708]
}

func ExampleMarchenkoPastur() {
	mp, _ := peft.NewMarchenkoPastur(4, 1)
	lo, hi := mp.Edges()
	fmt.Printf("bulk [%.4f, %.4f], ρ(1) = %.4f\n", lo, hi, mp.Density(1))
	// Output:
	// bulk [0.2500, 2.2500], ρ(1) = 0.6164
}
