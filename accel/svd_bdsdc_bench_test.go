package accel

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// BenchmarkBidiagSVD times stage 2 of the thin SVD alone, the bidiagonal
// SVD with vectors, by the QR iteration (qr) and by divide and conquer
// (dc), on the bidiagonal of an n×n Gaussian matrix: the crossover
// bdsdcCross comes from it.
func BenchmarkBidiagSVD(b *testing.B) {
	for _, n := range bidiagBenchSizes {
		// Always the same seed for reproducible results.
		rng := rand.New(rand.NewPCG(7, uint64(n)))
		a := make([]float64, n*n)
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		d, e := make([]float64, n), make([]float64, n-1)
		if err := gebrdBlocked(context.Background(), n, n, a, n, d, e, make([]float64, n), make([]float64, n)); err != nil {
			b.Fatal(err)
		}
		for _, alg := range []string{"qr", "dc"} {
			b.Run(fmt.Sprintf("%s/n=%d", alg, n), func(b *testing.B) {
				x, y := make([]float64, n*n), make([]float64, n*n)
				for b.Loop() {
					dd, ee := slices.Clone(d), slices.Clone(e)
					var err error
					if alg == "qr" {
						err = bdsqrVectors(context.Background(), n, dd, ee, x, n, y, n)
					} else {
						err = bdsdcVectors(context.Background(), n, dd, ee, x, n, y, n)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

var bidiagBenchSizes = []int{64, 96, 128, 192, 256, 512, 1024, 2048}
