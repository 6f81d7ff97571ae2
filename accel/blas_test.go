package accel

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/blas/testblas"
	"gonum.org/v1/gonum/mat"
)

// TestImplementationDgemm runs gonum's own Dgemm conformance test against
// Implementation on every path.
func TestImplementationDgemm(t *testing.T) {
	for _, path := range gemmPaths() {
		t.Run(path.name, func(t *testing.T) {
			path.setup(t)
			testblas.TestDgemm(t, Implementation{})
			// TestDgemm's matrices are small; cross the tile widths too.
			rng := rand.New(rand.NewPCG(7, 8))
			for _, tr := range []blas.Transpose{blas.NoTrans, blas.Trans} {
				for _, tr2 := range []blas.Transpose{blas.NoTrans, blas.Trans} {
					for _, mnk := range [][3]int{{1, 1, 1}, {15, 17, 13}, {29, 33, 31}, {60, 20, 300}} {
						m, n, k := mnk[0], mnk[1], mnk[2]
						a, b := randSlice[float64](rng, m*k), randSlice[float64](rng, k*n)
						lda, ldb := k, n
						if tr == blas.Trans {
							lda = m
						}
						if tr2 == blas.Trans {
							ldb = k
						}
						want, got := randSlice[float64](rng, m*n), make([]float64, m*n)
						copy(got, want)
						gonum.Implementation{}.Dgemm(tr, tr2, m, n, k, 0.5, a, lda, b, ldb, -1, want, n)
						Implementation{}.Dgemm(tr, tr2, m, n, k, 0.5, a, lda, b, ldb, -1, got, n)
						for i := range got {
							if d := got[i] - want[i]; d > 1e-12 || d < -1e-12 {
								t.Fatalf("%c%c m=%d n=%d k=%d: C[%d] = %v, gonum %v", tr, tr2, m, n, k, i, got[i], want[i])
							}
						}
					}
				}
			}
		})
	}
}

// TestImplementationPanics checks that Implementation panics with gonum's
// own messages, so gonum's callers see what they expect.
func TestImplementationPanics(t *testing.T) {
	s := make([]float64, 10)
	for _, tc := range []struct {
		f    func()
		want string
	}{
		{func() { Implementation{}.Dgemm('x', blas.NoTrans, 1, 1, 1, 1, s, 1, s, 1, 0, s, 1) }, "blas: illegal transpose"},
		{func() { Implementation{}.Dgemm(blas.NoTrans, blas.NoTrans, -1, 1, 1, 1, s, 1, s, 1, 0, s, 1) }, "blas: m < 0"},
		{func() { Implementation{}.Dgemm(blas.NoTrans, blas.NoTrans, 2, 2, 3, 1, s, 2, s, 2, 0, s, 2) }, "blas: bad leading dimension of A"},
		{func() { Implementation{}.Dgemm(blas.NoTrans, blas.NoTrans, 2, 2, 3, 1, s[:4], 3, s, 2, 0, s, 2) }, "blas: insufficient length of a"},
		{func() { Implementation{}.Dgemm(blas.NoTrans, blas.NoTrans, 3, 3, 3, 1, s, 3, s, 3, 0, s[:8], 3) }, "blas: insufficient length of c"},
	} {
		err := catch(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want panic %q", err, tc.want)
		}
	}
}

// TestUse checks that after Use, mat.Dense.Mul runs on accel and agrees
// with gonum's own BLAS.
func TestUse(t *testing.T) {
	old := blas64.Implementation()
	defer blas64.Use(old)
	rng := rand.New(rand.NewPCG(9, 10))
	a := mat.NewDense(70, 50, randSlice[float64](rng, 70*50))
	b := mat.NewDense(50, 40, randSlice[float64](rng, 50*40))
	var want, got mat.Dense
	blas64.Use(gonum.Implementation{})
	want.Mul(a, b)
	Use()
	if _, ok := blas64.Implementation().(Implementation); !ok {
		t.Fatalf("after Use, blas64.Implementation() is %T", blas64.Implementation())
	}
	got.Mul(a, b)
	if !mat.EqualApprox(&got, &want, 1e-12) {
		t.Fatal("mat.Dense.Mul on accel differs from gonum's")
	}
}

// BenchmarkFactorize times gonum's own QR and SVD (values only) of an n×n
// matrix with gonum's BLAS and with accel's Implementation installed.
func BenchmarkFactorize(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	old := blas64.Implementation()
	defer blas64.Use(old)
	for _, impl := range []string{"gonum", "accel"} {
		var bl blas.Float64 = gonum.Implementation{}
		if impl == "accel" {
			bl = Implementation{}
		}
		for _, n := range []int{256, 1024} {
			a := mat.NewDense(n, n, randSlice[float64](rng, n*n))
			b.Run(fmt.Sprintf("QR/%s/n=%d", impl, n), func(b *testing.B) {
				blas64.Use(bl)
				var qr mat.QR
				for b.Loop() {
					qr.Factorize(a)
				}
			})
			b.Run(fmt.Sprintf("SVDValues/%s/n=%d", impl, n), func(b *testing.B) {
				if n > 512 && testing.Short() {
					b.Skip("slow")
				}
				blas64.Use(bl)
				var svd mat.SVD
				for b.Loop() {
					if !svd.Factorize(a, mat.SVDNone) {
						b.Fatal("SVD failed")
					}
				}
			})
		}
	}
}
