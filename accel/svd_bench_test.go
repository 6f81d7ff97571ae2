package accel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/accel/acceltest"
)

// The benchmarks pit accel's SVD against gonum's mat.SVD (LAPACK dgesvd in
// pure Go on gonum's own BLAS) on Gaussian matrices. scripts/bench-accel-svd
// runs them next to scipy and torch and prints the ratios.

var svdBenchSizes = [][2]int{{256, 256}, {512, 512}, {1024, 1024}, {2048, 512}}

func benchMatrix(m, n int) *mat.Dense {
	// Always the same seed for reproducible results.
	return acceltest.Gaussian(rand.New(rand.NewPCG(7, uint64(m*n))), m, n)
}

func BenchmarkThinSVD(b *testing.B) {
	for _, impl := range []string{"accel", "gonum"} {
		for _, sz := range svdBenchSizes {
			if impl == "gonum" && sz[0]*sz[1] > 512*512 && testing.Short() {
				continue
			}
			b.Run(fmt.Sprintf("%s/n=%dx%d", impl, sz[0], sz[1]), func(b *testing.B) {
				a := benchMatrix(sz[0], sz[1])
				b.ReportAllocs()
				for b.Loop() {
					if impl == "accel" {
						if _, err := accel.ThinSVD(context.Background(), a); err != nil {
							b.Fatal(err)
						}
					} else {
						var f mat.SVD
						if !f.Factorize(a, mat.SVDThin) {
							b.Fatal("gonum: no convergence")
						}
					}
				}
			})
		}
	}
}

func BenchmarkSingularValues(b *testing.B) {
	for _, impl := range []string{"accel", "gonum"} {
		for _, sz := range svdBenchSizes {
			b.Run(fmt.Sprintf("%s/n=%dx%d", impl, sz[0], sz[1]), func(b *testing.B) {
				a := benchMatrix(sz[0], sz[1])
				b.ReportAllocs()
				for b.Loop() {
					if impl == "accel" {
						if _, err := accel.SingularValues(context.Background(), a); err != nil {
							b.Fatal(err)
						}
					} else {
						var f mat.SVD
						if !f.Factorize(a, mat.SVDNone) {
							b.Fatal("gonum: no convergence")
						}
					}
				}
			})
		}
	}
}

// BenchmarkTruncatedSVD is the top-k SVD of LoRA-sized matrices; the peer is
// torch.svd_lowrank(A, q=k, niter=2).
func BenchmarkTruncatedSVD(b *testing.B) {
	for _, c := range []struct{ m, n, k int }{{4096, 1024, 16}, {1024, 1024, 16}, {4096, 1024, 64}} {
		b.Run(fmt.Sprintf("accel/n=%dx%d/k=%d", c.m, c.n, c.k), func(b *testing.B) {
			a := benchMatrix(c.m, c.n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := accel.TruncatedSVD(context.Background(), a, c.k, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
