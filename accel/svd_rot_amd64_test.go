//go:build !purego

package accel

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// rotPaths lists the rotSeq paths this CPU can run: the generic code, and
// each assembly kernel selected by flipping the feature flags.
func rotPaths() []rotPathCase {
	ps := []rotPathCase{{"generic", func(t *testing.T) {
		setRotFlag(t, &useRotAVX512, false)
		setRotFlag(t, &useRotAVX2, false)
	}}}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ps = append(ps, rotPathCase{"avx2", func(t *testing.T) {
			setRotFlag(t, &useRotAVX512, false)
			setRotFlag(t, &useRotAVX2, true)
		}})
	}
	if cpu.X86.HasAVX512F {
		ps = append(ps, rotPathCase{"avx512", func(t *testing.T) {
			setRotFlag(t, &useRotAVX512, true)
		}})
	}
	return ps
}
