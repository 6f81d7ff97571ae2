package session

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// nopPub discards everything.
type nopPub struct{}

func (nopPub) Stream(string, string)                                {}
func (nopPub) Display(map[string]any, map[string]any, string, bool) {}
func (nopPub) ClearOutput(bool)                                     {}
func (nopPub) Input(string, bool) (string, error)                   { return "", nil }

func BenchmarkNew(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, err := New()
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

func BenchmarkExecute(b *testing.B) {
	for _, c := range []struct{ name, code string }{
		{"assign", "x = 1"},
		{"expr", "x + 1"},
		{"print", "fmt.Println(x)"},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newSession(b)
			runOK(b, s, "x := 0")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res := s.Execute(context.Background(), c.code, i, nopPub{}); res.Error != nil {
					b.Fatal(res.Error)
				}
			}
		})
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryGrowth runs the same cell many times: the heap must not keep
// growing with the number of cells (beyond what yaegi keeps per compiled
// cell, measured here).
func TestMemoryGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	s := newSession(t)
	runOK(t, s, "x := 0")
	exec := func(n int) {
		for i := 0; i < n; i++ {
			if res := s.Execute(context.Background(), "x = x + 1", i, nopPub{}); res.Error != nil {
				t.Fatal(res.Error)
			}
		}
	}
	exec(1000)
	h1 := heap()
	t0 := time.Now()
	exec(5000)
	per := time.Since(t0) / 5000
	h2 := heap()
	growth := float64(h2) - float64(h1)
	t.Logf("heap after 1000 cells %.1f MB, after 6000 %.1f MB (%.0f bytes/cell), %v per cell", float64(h1)/1e6, float64(h2)/1e6, growth/5000, per)
	if growth/5000 > 2048 { // measured: ~750 bytes per cell (yaegi grows its global frame)
		t.Errorf("heap grows by %.0f bytes per cell", growth/5000)
	}
}
