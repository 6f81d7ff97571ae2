//go:build unix

package cputime_test

import (
	"testing"
	"time"

	"github.com/gopeft/gopeft/internal/cputime"
)

// Busy work shows up as CPU time, which never goes backwards.
func TestProcessGrowsWithWork(t *testing.T) {
	start := cputime.Process()
	if start <= 0 {
		t.Fatalf("Process() = %v, want > 0: the test binary has run", start)
	}
	x := 1.0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for i := 0; i < 100000; i++ {
			x = x*1.0000001 + 1e-9
		}
		now := cputime.Process()
		if now < start {
			t.Fatalf("Process() went back from %v to %v", start, now)
		}
		if now > start {
			return
		}
	}
	t.Fatalf("Process() stayed at %v over 5 s of busy work (x=%g)", start, x)
}
