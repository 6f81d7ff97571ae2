package session

// The memory watchdog: a cell that allocates without bound is stopped
// before the process runs out of memory, with a "MemoryLimit" error, and
// the kernel goes on serving with the earlier cells' state whole.
//
// While a cell runs, one goroutine per session samples the Go heap every
// memSampleEvery through runtime/metrics (no stop of the world). When the
// heap (objects, live or not yet swept) is over the limit, the cell is
// stopped only if the heap reachable at some moment was over it too; then
// it is stopped exactly as an interrupt stops it: yaegi's stop, then the
// cell's ctx is cancelled. The live heap of the last collection is no
// evidence, as it counts what was allocated while it marked, and under CPU
// load that is a lot of garbage; the watchdog subtracts what was allocated
// since a sample known to precede the collection (heapHistory: free, and
// the runtime collects back to back while the heap is over its limit), else
// it runs a collection itself (heldAfterGC). So garbage never trips it,
// however far the collector lags. Its own collections happen only while the
// heap is over the limit and the runtime's did not show it held: the first
// at once (and again at the next sample if it found the limit live but not
// held), then at most one per gcGap, ten times as long as the last took, so
// that a cell holding just under the limit while making garbage spends at
// most about a tenth of its time in them (a collection costs a mark of the
// live heap: a few ms for hundreds of MiB of byte slices, tens of ms for as
// much in pointers). A cell that begins with the heap already over the
// limit, held by variables of earlier cells, is stopped only when the heap
// grows past where it began (by a sixteenth of the limit), so that the cell
// that frees them runs.
//
// Afterwards the variables the stopped cell declared are reset to their
// zero values (they usually hold what filled the memory) and the memory is
// returned to the system (debug.FreeOSMemory), so the kernel's resident
// size comes back down. Variables of earlier cells are kept, including
// ones the cell appended to.
//
// The limit is the kernel's process-wide: GOPEFT_MEMORY_LIMIT ("2GiB",
// "500MB", "60%" of the machine, "off"), else 70% of the machine's memory
// (the cgroup v2 memory.max when set, else MemTotal); %memlimit shows or
// sets it. debug.SetMemoryLimit is set to it too, so the collector works
// harder as the heap approaches it.
//
// Not covered: a compiled call that allocates without watching ctx goes on
// allocating after the stop (the cell returns, the call is waited for at
// the next cell), a goroutine started by a cell that allocates after its
// cell ended (the heap is sampled only while a cell runs, so that an idle
// kernel never wakes), and one single allocation bigger than the free memory:
// Go's runtime then aborts the process, and Jupyter reports that the
// kernel died and restarts it.

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memSampleEvery is the watchdog's sampling period while a cell runs. A
// sample is one metrics.Read (a microsecond or two, no stop of the world);
// a cell can fill hundreds of MiB in 25 ms (untouched memory costs little).
const memSampleEvery = 10 * time.Millisecond

// defaultMemFraction of the machine's memory is the default limit.
const defaultMemFraction = 0.70

// The process-wide limit (0: off) and where it came from.
var (
	memMu       sync.Mutex
	memInited   bool
	memSource   string // how the limit was chosen, for %memlimit
	memMachine  int64  // the machine's memory (cgroup or MemTotal), 0 if unknown
	memLimitVal atomic.Int64
)

// initMemLimit sets the limit from GOPEFT_MEMORY_LIMIT or the default, once
// per process.
func initMemLimit() {
	memMu.Lock()
	defer memMu.Unlock()
	if memInited {
		return
	}
	memInited = true
	var src string
	memMachine, memMachineSource = machineMemory()
	if env, ok := os.LookupEnv("GOPEFT_MEMORY_LIMIT"); ok && strings.TrimSpace(env) != "" {
		n, err := parseSize(env)
		if err == nil {
			applyMemLimit(n, "GOPEFT_MEMORY_LIMIT="+env)
			return
		}
		src = fmt.Sprintf("GOPEFT_MEMORY_LIMIT=%q is invalid (%v); default: ", env, err)
	} else {
		src = "default: "
	}
	applyMemLimit(defaultMemLimit(), src+defaultDesc())
}

func defaultMemLimit() int64 {
	if memMachine <= 0 {
		return 0
	}
	return int64(float64(memMachine) * defaultMemFraction)
}

// defaultDesc says how the default limit was chosen.
func defaultDesc() string {
	if memMachine <= 0 {
		return "the machine's memory is unknown, no limit"
	}
	return fmt.Sprintf("%.0f%% of the machine's %s (%s)", defaultMemFraction*100, formatBytes(memMachine), memMachineSource)
}

// memMachineSource names where memMachine was read.
var memMachineSource string

// applyMemLimit sets the limit (n <= 0: off) and the runtime's soft limit.
// The caller holds memMu.
func applyMemLimit(n int64, source string) {
	if n < 0 {
		n = 0
	}
	memLimitVal.Store(n)
	memSource = source
	if n == 0 {
		debug.SetMemoryLimit(math.MaxInt64)
	} else {
		debug.SetMemoryLimit(n)
	}
}

// MemoryLimit is the kernel's memory limit in bytes (0: off).
func MemoryLimit() int64 {
	initMemLimit()
	return memLimitVal.Load()
}

// SetMemoryLimit sets the kernel's memory limit in bytes; n <= 0 turns the
// watchdog off. It is process-wide.
func SetMemoryLimit(n int64) {
	initMemLimit()
	memMu.Lock()
	defer memMu.Unlock()
	applyMemLimit(n, "set by %memlimit")
}

// machineMemory returns the memory the process may use: the cgroup v2
// limit when one is set, else the machine's MemTotal.
func machineMemory() (int64, string) {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				fs := strings.Fields(rest)
				if len(fs) > 0 {
					if kb, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
						total = kb << 10
					}
				}
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			return n, "cgroup memory.max"
		}
	}
	return total, "MemTotal"
}

// parseSize reads a size: a number with an optional unit, B, kB/KB/K, MB/M,
// GB/G, TB/T (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024), or a
// percentage of the machine's memory ("60%"); "off", "none" and "0" turn
// the limit off (0).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "off", "none", "0":
		return 0, nil
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size (want e.g. 2GiB, 500MB, 60%%, off)", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}
	if unit == "%" {
		if memMachine <= 0 {
			return 0, errors.New("the machine's memory is unknown: give a size, not a percentage")
		}
		return int64(f / 100 * float64(memMachine)), nil
	}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (want B, KB, MB, GB, TB, KiB, MiB, GiB, TiB or %%)", s, s[i:])
	}
	n := f * m
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too big", s)
	}
	if n < 64<<20 {
		return 0, fmt.Errorf("%q is below the smallest limit, 64 MiB (the interpreter alone needs tens of MB)", s)
	}
	return int64(n), nil
}

// formatBytes writes n in binary units with one decimal.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// heapMetrics are the samples the watchdog reads: the heap's objects (live
// or not yet swept), the live heap marked by the last collection, the bytes
// allocated since the start, and the collections completed. The cycle count
// is read before the live heap (metrics.Read gathers the counters first and
// the marked heap as it goes; both change together, with the world stopped),
// so the live heap is of that collection or a later one.
var heapMetricNames = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes", "/gc/heap/allocs:bytes", "/gc/cycles/total:gc-cycles"}

// readHeap returns the heap's objects (live or not yet swept) and the live
// heap at the end of the last collection.
func readHeap(s []metrics.Sample) (objects, live int64) {
	metrics.Read(s)
	return sampleInt(s[0]), sampleInt(s[1])
}

// allocated and cycles are the bytes allocated and the collections
// completed, as of the last readHeap with s.
func allocated(s []metrics.Sample) int64 { return sampleInt(s[2]) }
func cycles(s []metrics.Sample) int64    { return sampleInt(s[3]) }

func sampleInt(s metrics.Sample) int64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return int64(s.Value.Uint64())
	}
	return 0
}

func newHeapSamples() []metrics.Sample {
	s := make([]metrics.Sample, len(heapMetricNames))
	for i, n := range heapMetricNames {
		s[i].Name = n
	}
	return s
}

// heapNow is the current heap (objects), for messages.
func heapNow() int64 {
	o, _ := readHeap(newHeapSamples())
	return o
}

// memTrip is a crossing of the limit during the cell with sequence seq.
type memTrip struct {
	seq  uint64
	heap int64
}

// watchdog samples the heap while a cell of its session runs. Its
// goroutine is started at the first cell and sleeps on wake between cells;
// a cell costs it a read of the heap, a few atomic stores and a non-blocking
// send (and a collection when the heap is over the limit as it begins).
type watchdog struct {
	once sync.Once
	seq  atomic.Uint64 // odd while a cell runs
	// base is the heap (objects) when the running cell began, collected
	// when over the limit. A cell that begins over the limit, held by
	// variables of earlier cells, is stopped only when the heap held grows
	// past base by a sixteenth of the limit (the cell's own code and
	// values), so that the cell freeing them (x = nil) runs.
	base atomic.Int64
	// baseCycles and baseAllocs are the collections completed and bytes
	// allocated when the running cell began, the first of its heapHistory.
	baseCycles, baseAllocs atomic.Int64
	samples                []metrics.Sample // begin's
	wake                   chan struct{}    // cap 1: a cell started
	trip                   chan memTrip     // cap 1: the limit was crossed
	quit                   chan struct{}
}

// begin marks the start of a cell and returns its sequence number.
func (w *watchdog) begin() uint64 {
	w.once.Do(func() {
		initMemLimit()
		w.wake = make(chan struct{}, 1)
		w.trip = make(chan memTrip, 1)
		w.quit = make(chan struct{})
		w.samples = newHeapSamples()
		go w.loop(w.quit)
	})
	select {
	case <-w.trip: // a late trip of an earlier cell
	default:
	}
	objects, _ := readHeap(w.samples)
	if limit := memLimitVal.Load(); limit > 0 && objects > limit {
		// Held by earlier cells' variables, or garbage not yet collected
		// (the limit was just lowered): collect, so that base is what is
		// held.
		runtime.GC()
		objects, _ = readHeap(w.samples)
	}
	w.base.Store(objects) // before seq: the loop reads seq first
	w.baseCycles.Store(cycles(w.samples))
	w.baseAllocs.Store(allocated(w.samples))
	seq := w.seq.Add(1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return seq
}

// end marks the end of the cell.
func (w *watchdog) end() { w.seq.Add(1) }

// stop ends the goroutine.
func (w *watchdog) stop() {
	if w.quit != nil {
		close(w.quit)
		w.quit = nil
	}
}

func (w *watchdog) loop(quit <-chan struct{}) {
	samples := newHeapSamples()
	t := time.NewTimer(time.Hour)
	t.Stop()
	var (
		hist    heapHistory
		cell    uint64    // the cell the following are of
		tripped bool      // the cell was stopped
		gcNext  time.Time // the earliest next collection of ours
		retry   bool      // the next collection of ours is a retry
	)
	for {
		select {
		case <-w.wake:
		case <-quit:
			return
		}
		for {
			t.Reset(memSampleEvery)
			select {
			case <-t.C:
			case <-quit:
				return
			}
			seq := w.seq.Load()
			if seq%2 == 0 {
				break // no cell runs: wait for the next
			}
			if seq != cell { // the cell's first sample
				c, a := w.baseCycles.Load(), w.baseAllocs.Load()
				if w.seq.Load() != seq {
					continue // the cell ended: c and a may be of the next
				}
				cell, tripped, gcNext, retry = seq, false, time.Time{}, false
				hist.reset()
				hist.add(c, a, 0)
			}
			limit := memLimitVal.Load()
			if limit <= 0 || tripped {
				continue
			}
			limit = max(limit, w.base.Load()+limit/16)
			objects, live := readHeap(samples)
			held, known := hist.add(cycles(samples), allocated(samples), live)
			if objects <= limit {
				continue
			}
			// Over the limit, maybe with garbage. Held, by the runtime's own
			// collections, or else by one of ours: the first time in a cell
			// at once, then at most every gcGap.
			if !known || held <= limit {
				if time.Now().Before(gcNext) {
					continue
				}
				start := time.Now()
				held, live = heldAfterGC(samples)
				took := time.Since(start)
				hist.add(cycles(samples), allocated(samples), live)
				// When the collection found the limit live but not held (the
				// cell allocated it while it ran: a fast allocator, or garbage
				// under CPU load), once more at the next sample.
				retry = !retry && held <= limit && live > limit
				gcNext = time.Now()
				if !retry {
					gcNext = gcNext.Add(gcGap(took))
				}
				if held <= limit || w.seq.Load() != seq {
					continue // garbage, or the cell has ended
				}
			}
			tripped = true
			select {
			case w.trip <- memTrip{seq: seq, heap: held}:
			default:
			}
		}
	}
}

// heapHistory keeps the last samples of a cell (collections completed, bytes
// allocated) to bound from below the heap that was reachable when the last
// completed collection began, without a collection of its own.
//
// The live heap a collection marks counts, besides what was reachable when
// its mark began, everything allocated while it marked (allocated black),
// dead or not: a mark slowed down by CPU load counts a lot of garbage, and
// the live heap alone is no evidence (a cell making only garbage under a
// 200 MiB limit showed over 150 MiB live). But when the collections
// completed went from at most n-2 at an earlier sample to n now, collection
// n began after that sample (n-1 was not done then), so whatever it
// allocated black was allocated since; the live heap less the bytes
// allocated since that sample is at most what was reachable when it began.
// With the heap over the runtime's limit (set to the kernel's), the runtime
// collects back to back, so a cell holding more than the limit shows it
// within a sample or two.
type heapHistory struct {
	n    int // samples kept, at most len(ring)
	next int // where the next goes
	ring [32]struct{ cycles, allocs int64 }
}

func (h *heapHistory) reset() { h.n, h.next = 0, 0 }

// add records a sample and returns the bound, if a kept sample allows one.
func (h *heapHistory) add(cycles, allocs, live int64) (held int64, ok bool) {
	for i := 1; i <= h.n; i++ { // newest first
		e := h.ring[(h.next-i+len(h.ring))%len(h.ring)]
		if e.cycles <= cycles-2 {
			held, ok = live-(allocs-e.allocs), true
			break
		}
	}
	h.ring[h.next] = struct{ cycles, allocs int64 }{cycles, allocs}
	h.next = (h.next + 1) % len(h.ring)
	h.n = min(h.n+1, len(h.ring))
	return held, ok
}

// gcGap is the pause after a collection of the watchdog that took d before
// the next: ten times d, so that they take about a tenth of the time of a
// cell that holds just under the limit while making garbage, but at most
// gcGapMax, so that a cell that a collection found just under the limit is
// stopped soon after it crosses it (overshoot: its allocation rate times
// gcGapMax, at 1 GB/s of memory written a quarter of a GB).
func gcGap(d time.Duration) time.Duration { return min(max(10*d, gcGapMin), gcGapMax) }

const (
	gcGapMin = 50 * time.Millisecond
	gcGapMax = 250 * time.Millisecond
)

// heldAfterGC runs a full collection and returns a lower bound of the heap
// that was reachable when it started: the live heap it marked less what was
// allocated meanwhile (see heapHistory); and the live heap it marked. s is
// left with the samples read after it. The collection starts after allocs0
// is read (runtime.GC waits for a cycle in progress and starts a new one) and
// its mark ends before the second read, so its black allocations are
// counted in the difference. A cell holding more than the limit is counted
// short by what it allocated during the collection, and caught at the next
// sample.
//
// Small objects are counted allocated when their span leaves the P's cache,
// at the latest at the end of the collection (runtime.GC waits for that in
// its sweep); the error is at most a span per size class in use, some KiB.
func heldAfterGC(s []metrics.Sample) (held, live int64) {
	readHeap(s)
	allocs0 := allocated(s)
	runtime.GC() // returns after mark termination and a full sweep
	_, live = readHeap(s)
	return live - (allocated(s) - allocs0), live
}

// errMemLimit is what execute returns for a cell stopped by the watchdog.
var errMemLimit = errors.New("memory limit")

// memLimitResult is the error of a cell stopped by the watchdog; the
// session has already reset the variables it declared and freed memory.
func memLimitResult(heap, limit int64, reset []string, after int64) Result {
	value := fmt.Sprintf("cell stopped: Go heap reached %s, over the kernel's limit of %s (set GOPEFT_MEMORY_LIMIT or %%memlimit)",
		formatBytes(heap), formatBytes(limit))
	tb := []string{"MemoryLimit: " + value}
	if len(reset) > 0 {
		tb = append(tb, "  variables the cell declared were reset to their zero values to free memory: "+strings.Join(reset, ", "))
	}
	tb = append(tb, fmt.Sprintf("  variables of earlier cells are kept; Go heap now %s", formatBytes(after)))
	if limit > 0 && after > limit/2 {
		tb = append(tb, "  the heap is still near the limit: free earlier variables (x = nil) or raise the limit with %memlimit")
	}
	return errorResult("MemoryLimit", value, tb)
}

// afterMemTrip resets the variables the cell declared and returns memory to
// the system. It returns the names reset and the heap afterwards.
func (s *Session) afterMemTrip(code string) ([]string, int64) {
	var reset []string
	g := s.globals()
	for _, name := range cellVars(code) {
		v, ok := g[name]
		if !ok || !v.IsValid() || !v.CanSet() {
			continue
		}
		func() {
			defer func() { recover() }()
			v.Set(reflect.Zero(v.Type()))
			reset = append(reset, name)
		}()
	}
	debug.FreeOSMemory()
	return reset, heapNow()
}

// cellVars lists the package-level variables a cell declares (var
// declarations and := at its top level).
func cellVars(code string) []string {
	if strings.HasPrefix(strings.TrimSpace(code), "%") {
		_, code, _ = strings.Cut(code, "\n") // %%time: the rest of the cell
	}
	runs, err := splitCell(code)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range runs {
		fset := token.NewFileSet()
		if r.decl {
			f, err := parser.ParseFile(fset, "", "package main\n"+r.src, 0)
			if err != nil {
				continue
			}
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, sp := range gd.Specs {
					for _, n := range sp.(*ast.ValueSpec).Names {
						seen[n.Name] = true
					}
				}
			}
			continue
		}
		f, err := parser.ParseFile(fset, "", "package main; func main() {"+r.src+"\n}", 0)
		if err != nil || len(f.Decls) == 0 {
			continue
		}
		for _, st := range f.Decls[0].(*ast.FuncDecl).Body.List {
			switch st := st.(type) {
			case *ast.AssignStmt:
				if st.Tok == token.DEFINE {
					for _, l := range st.Lhs {
						if id, ok := l.(*ast.Ident); ok {
							seen[id.Name] = true
						}
					}
				}
			case *ast.DeclStmt:
				if gd, ok := st.Decl.(*ast.GenDecl); ok && gd.Tok == token.VAR {
					for _, sp := range gd.Specs {
						for _, n := range sp.(*ast.ValueSpec).Names {
							seen[n.Name] = true
						}
					}
				}
			}
		}
	}
	delete(seen, "_")
	delete(seen, "ctx")
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// memlimitMagic shows or sets the limit.
func memlimitMagic(arg string) (string, error) {
	initMemLimit()
	if arg = strings.TrimSpace(arg); arg != "" {
		if strings.EqualFold(arg, "default") {
			memMu.Lock()
			applyMemLimit(defaultMemLimit(), "default: "+defaultDesc())
			memMu.Unlock()
		} else {
			n, err := parseSize(arg)
			if err != nil {
				return "", err
			}
			SetMemoryLimit(n)
		}
	}
	memMu.Lock()
	src := memSource
	memMu.Unlock()
	limit := memLimitVal.Load()
	l := "off"
	if limit > 0 {
		l = formatBytes(limit)
	}
	return fmt.Sprintf("memory limit: %s (%s); Go heap now %s\n", l, src, formatBytes(heapNow())), nil
}
