package session

import (
	"context"
	"fmt"
	"go/token"
	"os"
	"runtime"
	"strings"
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

// TestMemoryGrowth runs the same cells many times: the heap must not keep
// growing with the number of cells. Without the trimming of roots.go a
// trivial cell cost about 830 bytes of heap for good, a statement about
// 750, and the global frame grew by a slot per cell.
func TestMemoryGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, tc := range []struct {
		code     string
		maxBytes float64 // per cell
	}{
		{"1", 40},         // measured: 2
		{"x = x + 1", 80}, // measured: 0
	} {
		s := newSession(t)
		runOK(t, s, "x := 0")
		exec := func(n int) {
			for i := 0; i < n; i++ {
				if res := s.Execute(context.Background(), tc.code, i, nopPub{}); res.Error != nil {
					t.Fatal(res.Error)
				}
			}
		}
		exec(1000)
		h1 := heap()
		t0 := time.Now()
		const n = 5000
		exec(n)
		per := time.Since(t0) / n
		h2 := heap()
		growth := (float64(h2) - float64(h1)) / n
		t.Logf("%q: heap after 1000 cells %.2f MB, after 6000 %.2f MB (%.0f bytes/cell), %v per cell", tc.code, float64(h1)/1e6, float64(h2)/1e6, growth, per)
		if growth > tc.maxBytes {
			t.Errorf("%q: heap grows by %.0f bytes per cell", tc.code, growth)
		}
		nf := 0
		s.it.FileSet().Iterate(func(*token.File) bool { nf++; return true })
		if nf > 100 {
			t.Errorf("%q: the interpreter's FileSet holds %d files after %d cells", tc.code, nf, n+1000)
		}
	}
}

// TestReleasedSlotsReused: the global frame slots of a shown final
// expression are reused by later cells with other types, and values
// declared in between keep theirs.
func TestReleasedSlotsReused(t *testing.T) {
	s := newSession(t)
	cells := []struct{ code, want string }{
		{`"a string"`, "a string"},
		{"n := 7", ""},
		{"3.5", "3.5"},
		{`func sq(x int) int { return x * x }`, ""},
		{"sq(n)", "49"},
		{`m := map[string]int{"a": 1}`, ""},
		{`[]int{1, 2}`, "[1 2]"},
		{`m["a"] + n`, "8"},
		{"type pt struct{ X, Y int }\npt{1, 2}", "{X:1 Y:2}"},
		{"n", "7"},
		{`fmt.Sprint(m)`, "map[a:1]"},
	}
	for _, c := range cells {
		res := s.Execute(context.Background(), c.code, 1, nopPub{})
		if res.Error != nil {
			t.Fatalf("%q: %v", c.code, res.Error.Traceback)
		}
		got, _ := res.Data["text/plain"].(string)
		if got != c.want {
			t.Errorf("%q shows %q, want %q", c.code, got, c.want)
		}
	}
	if n := globalSlots(s.it); n > 40 {
		t.Errorf("global frame layout has %d slots", n)
	}
}

// TestTrivialCellGarbage: a trivial cell must not allocate much, since its
// garbage sets how often the GC runs, a cause of slow round trips. The
// output pipes' 64 KB buffers were allocated per cell (148 KB a cell, a GC
// every 30 cells); they are recycled now (measured: 17 KB a cell).
func TestTrivialCellGarbage(t *testing.T) {
	s := newSession(t)
	for i := 0; i < 100; i++ {
		s.Execute(context.Background(), "1", i, nopPub{})
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const n = 300
	for i := 0; i < n; i++ {
		if res := s.Execute(context.Background(), "1", i, nopPub{}); res.Error != nil {
			t.Fatal(res.Error)
		}
	}
	runtime.ReadMemStats(&m1)
	per := (m1.TotalAlloc - m0.TotalAlloc) / n
	t.Logf("%d bytes allocated per trivial cell", per)
	if per > 48<<10 {
		t.Errorf("a trivial cell allocates %d bytes", per)
	}
}

// TestPipesMadeOnce: the output pipes are made once per session, not per
// cell (per cell they cost a dozen system calls and, at the end of every
// cell, a wait for their readers to be woken by the network poller, a cause
// of slow round trips on a loaded machine); compiled output is still
// caught in every cell.
func TestPipesMadeOnce(t *testing.T) {
	s := newSession(t)
	first, _ := runOK(t, s, `fmt.Sprintf("%p", os.Stdout)`)
	for i := 0; i < 20; i++ {
		res, rec := runOK(t, s, `os.Stdout.WriteString("compiled\n")`+"\n"+`fmt.Sprintf("%p", os.Stdout)`)
		if text(res) != text(first) {
			t.Fatalf("cell %d writes to %s, the first to %s: a new pipe per cell", i, text(res), text(first))
		}
		if got := rec.stdout(); got != "compiled\n" {
			t.Fatalf("cell %d: compiled output %q", i, got)
		}
	}
	if fmt.Sprintf("%p", os.Stdout) == strings.Trim(text(first), `"`) {
		t.Error("os.Stdout is still the pipe between cells")
	}
}
