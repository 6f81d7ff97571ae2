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

// gemmKernelSets lists the kernel sets this machine can run, for tests that
// call gemmBlocked with blockings of their own.
func gemmKernelSets() (d []*kernelSet[float64], s []*kernelSet[float32]) {
	if cpu.X86.HasAVX512F {
		d, s = append(d, &dgemmAVX512Set), append(s, &sgemmAVX512Set)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		d, s = append(d, &dgemmAVX2Set), append(s, &sgemmAVX2Set)
	}
	return append(d, &dgemmGenericSet), append(s, &sgemmGenericSet)
}
