//go:build !purego

package accel

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// gemmPaths lists every GEMM implementation this machine can run. Each
// setup selects its path for the rest of the (sub)test by flipping the CPU
// feature flags.
func gemmPaths() []gemmPath {
	return []gemmPath{
		{"AVX512", func(t testing.TB) {
			if !cpu.X86.HasAVX512F {
				t.Skip("no AVX-512 on this CPU")
			}
			setDuringTest(t, &useAVX512, true)
		}},
		{"AVX2", func(t testing.TB) {
			if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
				t.Skip("no AVX2/FMA on this CPU")
			}
			setDuringTest(t, &useAVX512, false)
			setDuringTest(t, &useAVX2, true)
		}},
		{"generic", func(t testing.TB) {
			setDuringTest(t, &useAVX512, false)
			setDuringTest(t, &useAVX2, false)
		}},
	}
}
