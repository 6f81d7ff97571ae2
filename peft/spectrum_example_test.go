package peft_test

import (
	"context"
	"fmt"
	"math"

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

func ExampleAmplification() {
	// W = diag(10, 5, 0.5, 0.1); ΔW = 4·e₃e₃ᵀ amplifies W's third direction.
	w := mat.NewDiagDense(4, []float64{10, 5, 0.5, 0.1})
	dw := mat.NewDense(4, 4, nil)
	dw.Set(2, 2, 4)
	a, err := peft.Amplification(context.Background(), w, dw, 1)
	fmt.Printf("%.4f %v\n", a, err) // ‖ΔW‖_F / |w₃₃| = 4 / 0.5
	// Output: 8.0000 <nil>
}

func ExampleUpdateSparsity() {
	dw := mat.NewDense(2, 3, []float64{0, 1e-9, 0.3, 0, -2, 1e-4})
	exact, _ := peft.UpdateSparsity(dw, 0)
	small, _ := peft.UpdateSparsity(dw, 1e-3)
	fmt.Printf("%.4f %.4f\n", exact, small)
	// Output: 0.3333 0.6667
}

func ExampleFitPowerLawXMin() {
	// Quantiles of a Pareto law with α = 3 and xmin = 1: x_i = (1−u_i)^(−1/2).
	x := make([]float64, 1000)
	for i := range x {
		u := (float64(i) + 0.5) / 1000
		x[i] = math.Pow(1-u, -0.5)
	}
	p, err := peft.FitPowerLawXMin(x, 1)
	fmt.Printf("α = %.2f ± %.2f over %d values, %v\n", p.Alpha, p.Sigma, p.NTail, err)
	// Output: α = 3.00 ± 0.06 over 1000 values, <nil>
}

func ExampleSpectrum_ESD() {
	s, _ := peft.SpectrumOf([]float64{4, 2})
	s.Rows, s.Cols = 8, 2 // W is 8×2: N = 8, M = 2
	e, err := s.ESD()
	fmt.Println(e.Lambda, e.N, e.M, err) // σ²/N
	// Output: [2 0.5] 8 2 <nil>
}
