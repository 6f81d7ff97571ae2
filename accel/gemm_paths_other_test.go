//go:build !amd64 || purego

package accel

import "testing"

// gemmPaths lists every GEMM implementation this build can run: here only
// the generic one.
func gemmPaths() []gemmPath {
	return []gemmPath{{"generic", func(testing.TB) {}}}
}
