//go:build !amd64 || purego

package accel

import "testing"

// rotPaths lists the rotSeq paths: only the generic code on this build.
func rotPaths() []rotPathCase {
	return []rotPathCase{{"generic", func(t *testing.T) {}}}
}
