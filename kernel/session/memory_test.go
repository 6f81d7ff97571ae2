package session

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// withMemLimit sets the kernel's limit for one test.
func withMemLimit(t *testing.T, n int64) {
	t.Helper()
	prev := MemoryLimit()
	SetMemoryLimit(n)
	t.Cleanup(func() { SetMemoryLimit(prev) })
}

// rss is the process's resident set size, from /proc/self/status.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestMemoryLimitStopsCell: a cell that allocates without bound is stopped
// soon after its heap crosses the limit, with a MemoryLimit error; earlier
// variables are kept, the next cell runs, and the memory comes back. The
// second cell writes its memory, so that it is resident.
func TestMemoryLimitStopsCell(t *testing.T) {
	for _, cell := range []string{
		"var xs [][]byte\nfor {\n\txs = append(xs, make([]byte, 1<<20))\n}",
		"import \"bytes\"\nvar xs [][]byte\nfor {\n\txs = append(xs, bytes.Repeat([]byte{1}, 1<<20))\n}",
	} {
		t.Run("", func(t *testing.T) { testMemoryStop(t, cell) })
	}
}

func testMemoryStop(t *testing.T, cell string) {
	s := newSession(t)
	runOK(t, s, "kept := 41")
	const limit = 300 << 20
	withMemLimit(t, limit)
	debug.FreeOSMemory()
	heap0, rss0 := heapNow(), rss(t)

	// Note when the heap first crosses the limit, and the peak RSS; without
	// a watchdog, interrupt the cell at 4× the limit or after 10 s.
	crossed := make(chan time.Time, 1)
	var rssPeak int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		samples := newHeapSamples()
		start := time.Now()
		for ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
			o, _ := readHeap(samples)
			if o > limit && len(crossed) == 0 {
				crossed <- time.Now()
			}
			rssPeak = max(rssPeak, rss(t))
			if o > 4*limit || time.Since(start) > 10*time.Second {
				cancel()
			}
		}
	}()
	t0 := time.Now()
	res := s.Execute(ctx, cell, 2, &recorder{})
	end := time.Now()
	cancel()
	<-done
	if res.Error == nil || res.Error.Name != "MemoryLimit" {
		t.Fatalf("want a MemoryLimit error, got %+v", res)
	}
	if !strings.Contains(res.Error.Value, "over the kernel's limit of 300.0 MiB") {
		t.Errorf("evalue %q", res.Error.Value)
	}
	tb := strings.Join(res.Error.Traceback, "\n")
	if !strings.Contains(tb, "xs") {
		t.Errorf("traceback does not name the reset variable xs:\n%s", tb)
	}
	var lag time.Duration
	select {
	case c := <-crossed:
		lag = end.Sub(c)
	default:
		t.Fatal("the heap never crossed the limit, yet the cell was stopped")
	}
	t.Logf("cell ran %v; error %v after the heap crossed %s", end.Sub(t0), lag, formatBytes(limit))
	if lag > 2*time.Second {
		t.Errorf("the cell was stopped %v after the heap crossed the limit", lag)
	}

	res, _ = runOK(t, s, "kept + 1")
	if text(res) != "42" {
		t.Errorf("state lost after the memory stop: kept+1 shows %q", text(res))
	}
	res, _ = runOK(t, s, "len(xs)")
	if text(res) != "0" {
		t.Errorf("xs was not reset: len %s", text(res))
	}
	runtime.GC()
	heap1, rss1 := heapNow(), rss(t)
	t.Logf("heap %s before, %s after; RSS %s before, peak %s, %s after",
		formatBytes(heap0), formatBytes(heap1), formatBytes(rss0), formatBytes(rssPeak), formatBytes(rss1))
	if heap1 > heap0+32<<20 {
		t.Errorf("heap %s after the stopped cell, %s before", formatBytes(heap1), formatBytes(heap0))
	}
	if rss1 > rss0+64<<20 && !raceEnabled { // the race detector's shadow memory stays
		t.Errorf("RSS %s after the stopped cell, %s before", formatBytes(rss1), formatBytes(rss0))
	}
}

// TestMemoryLimitKeepsEarlierVars: a cell that grows a variable of an
// earlier cell is stopped too; that variable is kept (not reset).
func TestMemoryLimitKeepsEarlierVars(t *testing.T) {
	s := newSession(t)
	withMemLimit(t, 200<<20)
	runOK(t, s, "var ys [][]byte\nys = append(ys, []byte(\"first\"))")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // without a watchdog
	defer cancel()
	res := s.Execute(ctx, "for i := 0; i < 1000; i++ {\n\tys = append(ys, make([]byte, 1<<20))\n}", 2, &recorder{})
	if res.Error == nil || res.Error.Name != "MemoryLimit" {
		t.Fatalf("want a MemoryLimit error, got %+v", res)
	}
	if tb := strings.Join(res.Error.Traceback, "\n"); !strings.Contains(tb, "still near the limit") {
		t.Errorf("no hint that ys still holds the memory:\n%s", tb)
	}
	res, _ = runOK(t, s, "string(ys[0])")
	if text(res) != "first" {
		t.Errorf("ys[0] is %s", text(res))
	}
	// ys still holds more than the limit: a cell that frees it runs to its
	// end however long it takes (the watchdog samples it many times).
	runOK(t, s, "import \"time\"\ntime.Sleep(100 * time.Millisecond)\nys = nil")
	if res, _ := runOK(t, s, "len(ys)"); text(res) != "0" {
		t.Errorf("len(ys) is %s after ys = nil", text(res))
	}
}

// TestMemoryLimitIgnoresGarbage: a cell making much more garbage than the
// limit, with a small live heap, runs to its end.
func TestMemoryLimitIgnoresGarbage(t *testing.T) {
	s := newSession(t)
	withMemLimit(t, 200<<20)
	res, _ := runOK(t, s, "total := 0\nfor i := 0; i < 300; i++ {\n\tb := make([]byte, 8<<20)\n\tb[0] = 1\n\ttotal += len(b)\n}\ntotal >> 20")
	if text(res) != "2400" {
		t.Errorf("total %s MiB", text(res))
	}
}

// TestHeapHistory: a sample bounds the heap held at a collection only when
// two collections completed since, so that the last began after it.
func TestHeapHistory(t *testing.T) {
	var h heapHistory
	type step struct {
		cycles, allocs, live int64
		held                 int64 // -1: no bound
	}
	for i, st := range []step{
		{cycles: 5, allocs: 100, live: 50, held: -1},
		{cycles: 6, allocs: 300, live: 250, held: -1}, // collection 6 may have begun before the first sample
		{cycles: 7, allocs: 400, live: 390, held: 90}, // 7 began after the first: 390 - (400-100)
		{cycles: 7, allocs: 500, live: 390, held: -10},
		{cycles: 9, allocs: 520, live: 480, held: 460}, // after the sample at 500 (7 <= 9-2): 480 - 20
	} {
		held, ok := h.add(st.cycles, st.allocs, st.live)
		if want := st.held != -1; ok != want || ok && held != st.held {
			t.Errorf("step %d: held %d, %v; want %d, %v", i, held, ok, st.held, want)
		}
	}
	h.reset()
	for i := range 100 { // the ring wraps
		h.add(int64(i), int64(i)*10, 0)
	}
	if held, ok := h.add(100, 1000, 2000); !ok || held != 2000-(1000-980) {
		t.Errorf("after wrapping: held %d, %v", held, ok)
	}
}

func TestMemlimitMagic(t *testing.T) {
	s := newSession(t)
	withMemLimit(t, 1<<30)
	_, rec := runOK(t, s, "%memlimit")
	if !strings.Contains(rec.stdout(), "memory limit: 1.0 GiB") {
		t.Errorf("%%memlimit shows %q", rec.stdout())
	}
	_, rec = runOK(t, s, "%memlimit 500MB")
	if MemoryLimit() != 500e6 || !strings.Contains(rec.stdout(), "476.8 MiB") {
		t.Errorf("limit %d after %%memlimit 500MB; shows %q", MemoryLimit(), rec.stdout())
	}
	if got := debug.SetMemoryLimit(-1); got != 500e6 {
		t.Errorf("runtime memory limit %d, want the kernel's", got)
	}
	res := s.Execute(context.Background(), "%memlimit lots", 3, &recorder{})
	if res.Error == nil || res.Error.Name != "UsageError" {
		t.Errorf("%%memlimit lots: %+v", res)
	}
	_, rec = runOK(t, s, "%help")
	if !strings.Contains(rec.stdout(), "%memlimit") {
		t.Error("%help does not document %memlimit")
	}
}

func TestParseSize(t *testing.T) {
	initMemLimit()
	for in, want := range map[string]int64{
		"2GiB": 2 << 30, "500MB": 500e6, "1.5 GiB": 3 << 29, "300mb": 300e6, "off": 0, "0": 0, "100000000": 1e8,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "2 parsecs", "-1GB", "1KB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) gave no error", in)
		}
	}
	t.Logf("machine memory %s (%s), default limit %s", formatBytes(memMachine), memMachineSource, formatBytes(defaultMemLimit()))
	if memMachine > 0 {
		if got, _ := parseSize("50%"); got != memMachine/2 {
			t.Errorf("50%% is %d of %d", got, memMachine)
		}
	}
}
