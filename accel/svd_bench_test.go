package accel_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/accel/acceltest"
	"github.com/gopeft/gopeft/internal/cputime"
)

// The benchmarks pit accel's SVD against gonum's mat.SVD (LAPACK dgesvd in
// pure Go, on whatever BLAS gonum has installed: its own unless accel.Use()
// was called) on Gaussian matrices. scripts/bench-accel-svd runs them next
// to scipy and torch (accel/testdata/svd_peer.py) and prints the ratios.
// Each reports cpu-ns/op, the process CPU time per operation, beside ns/op.

var svdBenchSizes = [][2]int{{256, 256}, {512, 512}, {1024, 1024}, {2048, 512}}

func benchMatrix(m, n int) *mat.Dense {
	// Always the same seed for reproducible results.
	return acceltest.Gaussian(rand.New(rand.NewPCG(7, uint64(m*n))), m, n)
}

// kernelMatrix is the m×n Cauchy-like matrix A[i][j] = 1/(1 + 100·(i/m −
// j/n)²), whose spectrum decays (σ₁ ≈ 524, σ₁₆ ≈ 6, σ₃₁ ≈ 0.07 at
// 4096×1024); the peer script builds the same matrix.
func kernelMatrix(m, n int) *mat.Dense {
	a := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			x := float64(i)/float64(m) - float64(j)/float64(n)
			a.Set(i, j, 1/(1+100*x*x))
		}
	}
	return a
}

// benchSVD times run and reports cpu-ns/op.
func benchSVD(b *testing.B, run func() error) {
	b.ReportAllocs()
	if err := run(); err != nil { // warm up
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cputime.Process()
	for b.Loop() {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	if cpu := cputime.Process() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func gonumSVD(a mat.Matrix, kind mat.SVDKind) error {
	var f mat.SVD
	if !f.Factorize(a, kind) {
		return fmt.Errorf("gonum: no convergence")
	}
	return nil
}

func BenchmarkThinSVD(b *testing.B) {
	for _, impl := range []string{"accel", "gonum"} {
		for _, sz := range svdBenchSizes {
			b.Run(fmt.Sprintf("%s/n=%dx%d", impl, sz[0], sz[1]), func(b *testing.B) {
				a := benchMatrix(sz[0], sz[1])
				benchSVD(b, func() error {
					if impl == "gonum" {
						return gonumSVD(a, mat.SVDThin)
					}
					_, err := accel.ThinSVD(context.Background(), a)
					return err
				})
			})
		}
	}
}

func BenchmarkSingularValues(b *testing.B) {
	for _, impl := range []string{"accel", "gonum"} {
		for _, sz := range svdBenchSizes {
			b.Run(fmt.Sprintf("%s/n=%dx%d", impl, sz[0], sz[1]), func(b *testing.B) {
				a := benchMatrix(sz[0], sz[1])
				benchSVD(b, func() error {
					if impl == "gonum" {
						return gonumSVD(a, mat.SVDNone)
					}
					_, err := accel.SingularValues(context.Background(), a)
					return err
				})
			})
		}
	}
}

// BenchmarkTruncatedSVD is the top-k SVD of LoRA-sized matrices, Gaussian
// (flat spectrum, the hard case for sketching) and kernelMatrix (decaying);
// the peer is torch.svd_lowrank(A, q=k, niter=2). It reports log10relerr,
// the decimal logarithm of the largest relative error of the k values
// against the exact ones (a logarithm because the benchmark output prints
// metrics in fixed point; −17 stands for 0).
func BenchmarkTruncatedSVD(b *testing.B) {
	for _, c := range []struct {
		kind    string
		m, n, k int
	}{{"gauss", 4096, 1024, 16}, {"kernel", 4096, 1024, 16}, {"gauss", 1024, 1024, 16}, {"gauss", 4096, 1024, 64}} {
		b.Run(fmt.Sprintf("accel/%s/n=%dx%d/k=%d", c.kind, c.m, c.n, c.k), func(b *testing.B) {
			var a *mat.Dense
			if c.kind == "gauss" {
				a = benchMatrix(c.m, c.n)
			} else {
				a = kernelMatrix(c.m, c.n)
			}
			exact, err := accel.SingularValues(context.Background(), a)
			if err != nil {
				b.Fatal(err)
			}
			var got []float64
			benchSVD(b, func() error {
				r, err := accel.TruncatedSVD(context.Background(), a, c.k, nil)
				got = r.S
				return err
			})
			worst := 0.0
			for i, s := range got {
				worst = math.Max(worst, math.Abs(s-exact[i])/exact[i])
			}
			b.ReportMetric(math.Log10(math.Max(worst, 1e-17)), "log10relerr")
		})
	}
}

// BenchmarkThinSVDLarge is the thin SVD at 1024², 2048² and 4096×1024 on 1
// and 2 threads (accel.SetThreads), with the bidiagonal SVD by divide and
// conquer (accel, the default) and by the QR iteration (accel-qr, the path
// before it). scripts/bench-accel-svd runs it with SVD_BENCH_LARGE=1 next
// to scipy's gesdd on as many OpenBLAS threads.
func BenchmarkThinSVDLarge(b *testing.B) {
	for _, sz := range [][2]int{{1024, 1024}, {2048, 2048}, {4096, 1024}} {
		for _, threads := range []int{1, 2} {
			for _, impl := range []string{"accel", "accel-qr"} {
				b.Run(fmt.Sprintf("%s/n=%dx%d/t=%d", impl, sz[0], sz[1], threads), func(b *testing.B) {
					defer accel.SetThreads(accel.SetThreads(threads))
					if impl == "accel-qr" {
						defer accel.SetBdsdcCross(math.MaxInt)()
					}
					a := benchMatrix(sz[0], sz[1])
					benchSVD(b, func() error {
						_, err := accel.ThinSVD(context.Background(), a)
						return err
					})
				})
			}
		}
	}
}
