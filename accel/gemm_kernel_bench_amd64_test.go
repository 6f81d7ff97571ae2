//go:build !purego

package accel

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkDgemmKernel times the AVX-512 and AVX2 microkernels alone on
// packed panels that stay in cache: the ceiling for the blocked driver.
func BenchmarkDgemmKernel(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, ks := range []*kernelSet[float64]{&dgemmAVX512Set, &dgemmAVX2Set} {
		if ks.name == "AVX512" && !useAVX512 || ks.name == "AVX2" && !useAVX2 {
			continue
		}
		for _, h := range []int{ks.mr, ks.mr / 2} {
			b.Run(fmt.Sprintf("%s/h=%d", ks.name, h), func(b *testing.B) {
				kc := ks.kc
				a, bp, c := randSlice[float64](rng, h*kc), randSlice[float64](rng, ks.nr*kc), make([]float64, h*ks.nr)
				benchGemm(b, gemmShape{m: h, n: ks.nr, k: kc}, 0, func() { ks.tile(h, kc, a, 1, h, bp, ks.nr, c, ks.nr, 1, 1) })
			})
		}
	}
}

// BenchmarkSgemmKernel is BenchmarkDgemmKernel for float32.
func BenchmarkSgemmKernel(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, ks := range []*kernelSet[float32]{&sgemmAVX512Set, &sgemmAVX2Set} {
		if ks.name == "AVX512" && !useAVX512 || ks.name == "AVX2" && !useAVX2 {
			continue
		}
		for _, h := range []int{ks.mr, ks.mr / 2} {
			b.Run(fmt.Sprintf("%s/h=%d", ks.name, h), func(b *testing.B) {
				kc := ks.kc
				a, bp, c := randSlice[float32](rng, h*kc), randSlice[float32](rng, ks.nr*kc), make([]float32, h*ks.nr)
				benchGemm(b, gemmShape{m: h, n: ks.nr, k: kc}, 0, func() { ks.tile(h, kc, a, 1, h, bp, ks.nr, c, ks.nr, 1, 1) })
			})
		}
	}
}
