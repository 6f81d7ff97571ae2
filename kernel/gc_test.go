package kernel

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent reads the current GC percent.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// waitGCPercent collects until the pacing finalizer has set want.
func waitGCPercent(t *testing.T, want int) {
	t.Helper()
	for i := 0; i < 50; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if gcPercent() == want {
			return
		}
	}
	t.Fatalf("GC percent %d, want %d", gcPercent(), want)
}

// TestGCPacing: with a small live heap the kernel collects at 3× the live
// heap (fewer collections in the round trips of small cells), with a large
// one at Go's default 2×; GOGC in the environment wins.
func TestGCPacing(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "150")
	tuneGC()
	if p := gcPercent(); p != 100 {
		t.Errorf("with GOGC set, tuneGC changed the GC percent to %d", p)
	}
	t.Setenv("GOGC", "")
	tuneGC()
	waitGCPercent(t, smallHeapGCPercent)
	big := make([]byte, smallHeap+(16<<20))
	waitGCPercent(t, 100)
	runtime.KeepAlive(big)
	waitGCPercent(t, smallHeapGCPercent)
}
