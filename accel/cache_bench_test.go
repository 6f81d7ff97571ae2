package accel

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// sweepBest times each run in rounds interleaved with the other entries of a
// sweep and keeps each entry's best: on a loaded machine the best round is
// the one least disturbed.
func sweepBest(rounds int, flops float64, runs []func()) []float64 {
	best := make([]float64, len(runs))
	for r := 0; r < rounds; r++ {
		for i, run := range runs {
			t0 := time.Now()
			run()
			best[i] = max(best[i], flops/time.Since(t0).Seconds()/1e9)
		}
	}
	return best
}

// BenchmarkGemmCacheConfigs runs the default path's GEMM with the blocking
// of every configuration of cacheConfigs, on one goroutine, interleaved,
// and prints each configuration's best GFLOP/s over the rounds and its
// ratio to the best one; it reports the least ratio as min-ratio.
// Configurations that come to the same blocking share one measurement (the
// same code run twice would only measure the machine's noise).
//
//	go test ./accel -run '^$' -bench GemmCacheConfigs -benchtime 1x
func BenchmarkGemmCacheConfigs(b *testing.B) {
	dsets, ssets := gemmKernelSets()
	prev := SetThreads(1)
	defer SetThreads(prev)
	rng := rand.New(rand.NewPCG(1, 1))
	shapes := []gemmShape{{"n=1024", 1024, 1024, 1024}, {"256x1024*1024x1024", 256, 1024, 1024}, {"n=2048", 2048, 2048, 2048}}
	for _, typ := range []string{"d", "s"} {
		for _, s := range shapes {
			b.Run(typ+"/"+s.name, func(b *testing.B) {
				type blocking struct{ kc, mc, nc int }
				var distinct []blocking
				var which []int // configuration → index into distinct
				var names []string
				for _, ci := range cacheConfigs() {
					var bl blocking
					if typ == "d" {
						bl.kc, bl.mc, bl.nc = gemmBlocking(ci, dsets[0].mr, dsets[0].nr, 8)
					} else {
						bl.kc, bl.mc, bl.nc = gemmBlocking(ci, ssets[0].mr, ssets[0].nr, 4)
					}
					k := slices.Index(distinct, bl)
					if k < 0 {
						k = len(distinct)
						distinct = append(distinct, bl)
					}
					which = append(which, k)
					names = append(names, fmt.Sprintf("%s kc=%d mc=%d nc=%d", ci.Source, bl.kc, bl.mc, bl.nc))
				}
				var runs []func()
				if typ == "d" {
					a, bm, c := randSlice[float64](rng, s.m*s.k), randSlice[float64](rng, s.k*s.n), make([]float64, s.m*s.n)
					for _, bl := range distinct {
						ks := *dsets[0]
						ks.kc, ks.mc, ks.nc = bl.kc, bl.mc, bl.nc
						runs = append(runs, func() { gemmBlocked(&ks, false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n) })
					}
				} else {
					a, bm, c := randSlice[float32](rng, s.m*s.k), randSlice[float32](rng, s.k*s.n), make([]float32, s.m*s.n)
					for _, bl := range distinct {
						ks := *ssets[0]
						ks.kc, ks.mc, ks.nc = bl.kc, bl.mc, bl.nc
						runs = append(runs, func() { gemmBlocked(&ks, false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n) })
					}
				}
				rounds := 5
				if s.m*s.n*s.k > 1<<31 {
					rounds = 3
				}
				best := sweepBest(rounds, 2*float64(s.m)*float64(s.n)*float64(s.k), runs)
				top := slices.Max(best)
				minRatio := 1.0
				for i, k := range which {
					g := best[k]
					minRatio = min(minRatio, g/top)
					flag := ""
					if g/top < 0.9 {
						flag = "  BELOW 0.9"
					}
					fmt.Printf("cache-sweep %s %s %-40s %7.1f GFLOP/s  %.3f%s\n", typ, s.name, names[i], g, g/top, flag)
				}
				b.ReportMetric(minRatio, "min-ratio")
			})
		}
	}
}

// loraShapes are the products of a LoRA step the README lists (d = 4096,
// k = 1024, r = 16, batch 256), with the transposes the backward pass and
// PyTorch-layout weights use.
var loraShapes = []struct {
	name    string
	tA, tB  bool
	m, n, k int
}{
	{"4096x1024*1024x16", false, false, 4096, 16, 1024},
	{"16x1024*1024x4096", false, false, 16, 4096, 1024},
	{"256x1024*1024x1024", false, false, 256, 1024, 1024},
	{"(1024x4096)T*4096x16", true, false, 1024, 16, 4096},
	{"16x1024*(4096x1024)T", false, true, 16, 4096, 1024},
	{"4096x16*16x1024", false, false, 4096, 1024, 16},
}

// BenchmarkGemmThreads runs every LoRA shape and the squares with 1 and 2
// threads (SetThreads), interleaved, and prints the best GFLOP/s of each
// and the ratio t=2 / t=1, flagging any shape slower on 2 threads.
//
//	go test ./accel -run '^$' -bench GemmThreads -benchtime 1x
func BenchmarkGemmThreads(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	type shape struct {
		name    string
		tA, tB  bool
		m, n, k int
	}
	shapes := []shape{{"n=256", false, false, 256, 256, 256}, {"n=1024", false, false, 1024, 1024, 1024}}
	for _, s := range loraShapes {
		shapes = append(shapes, shape(s))
	}
	for _, typ := range []string{"d", "s"} {
		for _, s := range shapes {
			b.Run(typ+"/"+s.name, func(b *testing.B) {
				lda, ldb := s.k, s.n
				if s.tA {
					lda = s.m
				}
				if s.tB {
					ldb = s.k
				}
				var run func()
				if typ == "d" {
					a, bm, c := randSlice[float64](rng, s.m*s.k), randSlice[float64](rng, s.k*s.n), make([]float64, s.m*s.n)
					run = func() { Dgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n) }
				} else {
					a, bm, c := randSlice[float32](rng, s.m*s.k), randSlice[float32](rng, s.k*s.n), make([]float32, s.m*s.n)
					run = func() { Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n) }
				}
				// Enough repetitions per timing for about 2 ms at 20 GFLOP/s.
				reps := max(1, int(2e7/(float64(s.m)*float64(s.n)*float64(s.k))))
				with := func(nt int) func() {
					return func() {
						prev := SetThreads(nt)
						for range reps {
							run()
						}
						SetThreads(prev)
					}
				}
				best := sweepBest(7, 2*float64(s.m)*float64(s.n)*float64(s.k)*float64(reps), []func(){with(1), with(2)})
				flag := ""
				if best[1] < best[0] {
					flag = "  SLOWER on 2 threads"
				}
				fmt.Printf("threads %s %-22s t=1 %7.1f  t=2 %7.1f GFLOP/s  t2/t1 %.2f%s\n", typ, s.name, best[0], best[1], best[1]/best[0], flag)
				b.ReportMetric(best[1]/best[0], "t2/t1")
			})
		}
	}
}

// BenchmarkGemmSequence times short products that decide the parallel
// split on their own (gemmGrid's wake-up cost), on 1 and 2 threads: alone
// (5 ms idle before each, so parked helpers must be woken) and in a
// sequence (40 back to back, after which the helpers are hot). It prints
// the median µs per product and the ratio t1/t2 (above 1: two threads are
// faster).
//
//	go test ./accel -run '^$' -bench GemmSequence -benchtime 1x
func BenchmarkGemmSequence(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		typ string
		n   int
	}{{"d", 192}, {"d", 256}, {"d", 384}, {"s", 192}, {"s", 256}, {"s", 384}} {
		b.Run(fmt.Sprintf("%s/n=%d", c.typ, c.n), func(b *testing.B) {
			n := c.n
			var run func()
			if c.typ == "d" {
				a, bm, cm := randSlice[float64](rng, n*n), randSlice[float64](rng, n*n), make([]float64, n*n)
				run = func() { Dgemm(false, false, n, n, n, 1, a, n, bm, n, 0, cm, n) }
			} else {
				a, bm, cm := randSlice[float32](rng, n*n), randSlice[float32](rng, n*n), make([]float32, n*n)
				run = func() { Sgemm(false, false, n, n, n, 1, a, n, bm, n, 0, cm, n) }
			}
			run() // the kernel's speed is measured on first use
			median := func(nt int, alone bool) float64 {
				prev := SetThreads(nt)
				defer SetThreads(prev)
				var us []float64
				time.Sleep(5 * time.Millisecond)
				for range 40 {
					if alone {
						time.Sleep(5 * time.Millisecond)
					}
					t0 := time.Now()
					run()
					us = append(us, time.Since(t0).Seconds()*1e6)
				}
				slices.Sort(us)
				return us[len(us)/2]
			}
			for _, alone := range []bool{true, false} {
				t1, t2 := median(1, alone), median(2, alone)
				what := "sequence"
				if alone {
					what = "alone"
				}
				fmt.Printf("gemm-sequence %s n=%d %-8s t=1 %6.0f µs  t=2 %6.0f µs  t1/t2 %.2f\n", c.typ, n, what, t1, t2, t1/t2)
				b.ReportMetric(t1/t2, what+"-t1/t2")
			}
		})
	}
}
