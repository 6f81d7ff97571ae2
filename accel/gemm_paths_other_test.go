//go:build !amd64 || purego

package accel

import "testing"

// gemmPaths lists every GEMM implementation this build can run: here only
// the generic one.
func gemmPaths() []gemmPath {
	return []gemmPath{{"generic", func(testing.TB) {}}}
}

// gemmKernelSets lists the kernel sets this build can run, for tests that
// call gemmBlocked with blockings of their own.
func gemmKernelSets() (d []*kernelSet[float64], s []*kernelSet[float32]) {
	return []*kernelSet[float64]{&dgemmGenericSet}, []*kernelSet[float32]{&sgemmGenericSet}
}
