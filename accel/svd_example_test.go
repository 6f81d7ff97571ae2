package accel_test

import (
	"context"
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/accel"
)

func ExampleThinSVD() {
	a := mat.NewDense(3, 2, []float64{
		3, 0,
		0, 4,
		0, 0,
	})
	r, err := accel.ThinSVD(context.Background(), a)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("S = %.4f\n", r.S)
	fmt.Printf("U = %.4f\n", mat.Formatted(r.U, mat.Prefix("    ")))
	fmt.Printf("VT = %.4f\n", mat.Formatted(r.VT, mat.Prefix("     ")))
	// Output:
	// S = [4.0000 3.0000]
	// U = ⎡0.0000  1.0000⎤
	//     ⎢1.0000  0.0000⎥
	//     ⎣0.0000  0.0000⎦
	// VT = ⎡0.0000  1.0000⎤
	//      ⎣1.0000  0.0000⎦
}

func ExampleTruncatedSVD() {
	// A rank-2 matrix: its top-2 SVD is exact and the residual bound tiny.
	a := mat.NewDense(4, 3, []float64{
		1, 2, 3,
		2, 4, 6,
		1, 0, 1,
		0, 1, 1,
	})
	r, err := accel.TruncatedSVD(context.Background(), a, 2, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	exact, _ := accel.SingularValues(context.Background(), a)
	fmt.Printf("top-2 S = %.4f, exact %.4f\n", r.S, exact[:2])
	fmt.Println("residual bound below 1e-12:", r.Residual < 1e-12)
	// Output:
	// top-2 S = [8.5399 1.0342], exact [8.5399 1.0342]
	// residual bound below 1e-12: true
}
