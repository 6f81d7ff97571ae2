package accel

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/gopeft/gopeft/internal/cputime"
)

// gemmShape is one benchmarked product: op(A) m×k times op(B) k×n.
type gemmShape struct {
	name    string
	m, n, k int
}

// benchShapes are squares plus the shapes a LoRA step uses (d = 4096 or
// 1024, k = 1024, r = 16, batch 256).
var benchShapes = []gemmShape{
	{"n=64", 64, 64, 64},
	{"n=256", 256, 256, 256},
	{"n=1024", 1024, 1024, 1024},
	{"n=2048", 2048, 2048, 2048},
	{"n=4096", 4096, 4096, 4096},
	{"4096x1024*1024x16", 4096, 16, 1024},
	{"16x1024*1024x4096", 16, 4096, 1024},
	{"256x1024*1024x1024", 256, 1024, 1024},
}

// benchImpls are the implementations compared: asm is the default
// dispatch (AVX-512 here), the others are selected by flipping flags.
func benchImpls() []gemmPath {
	impls := []gemmPath{{"asm", func(testing.TB) {}}}
	for _, p := range gemmPaths() {
		switch p.name {
		case "AVX2":
			impls = append(impls, gemmPath{"avx2", p.setup})
		case "generic":
			impls = append(impls, p)
		}
	}
	return impls
}

func BenchmarkDgemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, impl := range append(benchImpls(), gemmPath{"gonum", func(testing.TB) {}}) {
		b.Run(impl.name, func(b *testing.B) {
			impl.setup(b)
			for _, s := range benchShapes {
				for _, threads := range []int{1, 2} {
					b.Run(fmt.Sprintf("%s/t=%d", s.name, threads), func(b *testing.B) {
						if impl.name == "generic" && s.m*s.n*s.k > 1<<26 && testing.Short() || impl.name != "asm" && s.m*s.n*s.k > 1<<30 {
							b.Skip("slow")
						}
						a, bm, c := randSlice[float64](rng, s.m*s.k), randSlice[float64](rng, s.k*s.n), make([]float64, s.m*s.n)
						prev := SetThreads(threads)
						defer SetThreads(prev)
						run := func() { Dgemm(false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n) }
						if impl.name == "gonum" {
							if threads != 1 {
								b.Skip("gonum's Dgemm picks its own parallelism")
							}
							run = func() {
								gonum.Implementation{}.Dgemm(blas.NoTrans, blas.NoTrans, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n)
							}
						}
						benchGemm(b, s, 8, run)
					})
				}
			}
		})
	}
}

func BenchmarkSgemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, impl := range benchImpls() {
		b.Run(impl.name, func(b *testing.B) {
			impl.setup(b)
			for _, s := range benchShapes {
				for _, threads := range []int{1, 2} {
					b.Run(fmt.Sprintf("%s/t=%d", s.name, threads), func(b *testing.B) {
						if impl.name == "generic" && s.m*s.n*s.k > 1<<26 && testing.Short() || impl.name != "asm" && s.m*s.n*s.k > 1<<30 {
							b.Skip("slow")
						}
						a, bm, c := randSlice[float32](rng, s.m*s.k), randSlice[float32](rng, s.k*s.n), make([]float32, s.m*s.n)
						prev := SetThreads(threads)
						defer SetThreads(prev)
						benchGemm(b, s, 4, func() { Sgemm(false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n) })
					})
				}
			}
		})
	}
}

// benchGemm times run and reports GFLOP/s (2mnk flops per product).
func benchGemm(b *testing.B, s gemmShape, elem int, run func()) {
	if elem > 0 {
		b.SetBytes(int64(elem * (s.m*s.k + s.k*s.n + s.m*s.n)))
	}
	b.ReportAllocs()
	run() // warm the buffer pool and the caches
	b.ResetTimer()
	cpu0 := cputime.Process()
	for b.Loop() {
		run()
	}
	gflop := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N) / 1e9
	b.ReportMetric(gflop/b.Elapsed().Seconds(), "GFLOP/s")
	if cpu := cputime.Process() - cpu0; cpu > 0 {
		b.ReportMetric(gflop/cpu.Seconds(), "GFLOP/cpu-s")
	}
}

func randSlice[T float32 | float64](rng *rand.Rand, n int) []T {
	x := make([]T, n)
	for i := range x {
		x[i] = T(rng.Float64()*2 - 1)
	}
	return x
}

// BenchmarkDgemmTrans times the LoRA shapes with a transposed operand, as
// backward passes (Xᵀ·dY) and PyTorch-layout weights (x·Wᵀ) use them, on
// one goroutine.
func BenchmarkDgemmTrans(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	prev := SetThreads(1)
	defer SetThreads(prev)
	for _, s := range slices.Concat(benchShapes[2:3], benchShapes[5:]) {
		a, bm, c := randSlice[float64](rng, s.m*s.k), randSlice[float64](rng, s.k*s.n), make([]float64, s.m*s.n)
		for _, tr := range []struct {
			name   string
			tA, tB bool
		}{{"NN", false, false}, {"TN", true, false}, {"NT", false, true}, {"TT", true, true}} {
			lda, ldb := s.k, s.n
			if tr.tA {
				lda = s.m
			}
			if tr.tB {
				ldb = s.k
			}
			b.Run(s.name+"/"+tr.name, func(b *testing.B) {
				benchGemm(b, s, 8, func() { Dgemm(tr.tA, tr.tB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n) })
			})
		}
	}
}
