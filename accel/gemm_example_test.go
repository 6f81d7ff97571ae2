package accel_test

import (
	"fmt"

	"github.com/gopeft/gopeft/accel"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// C = A·Bᵀ for a 2×3 A and a 2×3 B stored row-major.
func ExampleDgemm() {
	a := []float64{
		1, 2, 3,
		4, 5, 6,
	}
	b := []float64{
		1, 0, 1,
		0, 1, 0,
	}
	c := make([]float64, 2*2)
	accel.Dgemm(false, true, 2, 2, 3, 1, a, 3, b, 3, 0, c, 2)
	fmt.Println(c)
	// Output:
	// [4 2 10 5]
}

// Bad arguments panic with an accel.ArgError that names them.
func ExampleArgError() {
	defer func() {
		err := recover().(accel.ArgError)
		fmt.Println(err.Arg)
		fmt.Println(err)
	}()
	a := make([]float64, 5)
	c := make([]float64, 4)
	accel.Dgemm(false, false, 2, 2, 3, 1, a, 3, a, 2, 0, c, 2)
	// Output:
	// a
	// accel: Dgemm: bad a: len(a) = 5 < 6 needed for A stored 2×3 with lda = 3
}

// After Use, gonum's mat package multiplies on accel.
func ExampleUse() {
	old := blas64.Implementation()
	defer blas64.Use(old)

	accel.Use()
	a := mat.NewDense(2, 2, []float64{1, 2, 3, 4})
	var c mat.Dense
	c.Mul(a, a)
	fmt.Println(mat.Formatted(&c))
	// Output:
	// ⎡ 7  10⎤
	// ⎣15  22⎦
}
