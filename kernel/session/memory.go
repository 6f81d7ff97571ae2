package session

// The memory watchdog: a cell that allocates without bound is stopped
// before the process runs out of memory, with a "MemoryLimit" error, and
// the kernel goes on serving with the earlier cells' state whole.
//
// While a cell runs, one goroutine per session samples the Go heap every
// memSampleEvery through runtime/metrics (heap objects, live or not yet
// swept; no stop of the world). When the heap is over the limit, the
// watchdog runs a full collection itself (runtime.GC) and stops the cell
// only if what was reachable when that collection began was over the limit
// too (heldAfterGC); then the cell is stopped exactly as an interrupt stops
// it: yaegi's stop, then the cell's ctx is cancelled. So garbage never trips
// it, however far the collector lags behind under CPU load. The watchdog's
// collections happen only while the heap is over the limit: the first at
// once, then at most one per gcGap, ten times as long as the last took, so
// that a cell holding just under the limit while making garbage spends at
// most about a tenth of its time in them (a collection costs a mark of the
// live heap: a few ms for hundreds of MiB of byte slices, tens of ms for as
// much in pointers).
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
// cells fill hundreds of MiB in 25 ms (untouched memory costs little).
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

// heapMetrics are the samples the watchdog reads.
var heapMetricNames = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes", "/gc/heap/allocs:bytes"}

// readHeap returns the heap's objects (live or not yet swept) and the live
// heap at the end of the last collection.
func readHeap(s []metrics.Sample) (objects, live int64) {
	metrics.Read(s)
	return sampleInt(s[0]), sampleInt(s[1])
}

// allocated is the heap allocated since the process started, as of the
// last readHeap with s.
func allocated(s []metrics.Sample) int64 { return sampleInt(s[2]) }

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
// a cell costs it two atomic adds and a non-blocking send.
type watchdog struct {
	once sync.Once
	seq  atomic.Uint64 // odd while a cell runs
	wake chan struct{} // cap 1: a cell started
	trip chan memTrip  // cap 1: the limit was crossed
	quit chan struct{}
}

// begin marks the start of a cell and returns its sequence number.
func (w *watchdog) begin() uint64 {
	w.once.Do(func() {
		initMemLimit()
		w.wake = make(chan struct{}, 1)
		w.trip = make(chan memTrip, 1)
		w.quit = make(chan struct{})
		go w.loop(w.quit)
	})
	select {
	case <-w.trip: // a late trip of an earlier cell
	default:
	}
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
	for {
		select {
		case <-w.wake:
		case <-quit:
			return
		}
		tripped := uint64(0)
		var gcSeq uint64     // the cell of gcNext
		var gcNext time.Time // the earliest next collection of ours in cell gcSeq
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
			limit := memLimitVal.Load()
			if limit <= 0 || seq == tripped {
				continue
			}
			if objects, _ := readHeap(samples); objects <= limit {
				continue
			}
			// Over the limit, maybe with garbage: collect, then judge by
			// what the collection found live. The first time in a cell at
			// once, then at most every gcGap.
			if seq == gcSeq && time.Now().Before(gcNext) {
				continue
			}
			start := time.Now()
			held := heldAfterGC(samples)
			gcSeq, gcNext = seq, time.Now().Add(gcGap(time.Since(start)))
			if held <= limit || w.seq.Load() != seq {
				continue // garbage, or the cell has ended
			}
			tripped = seq
			select {
			case w.trip <- memTrip{seq: seq, heap: held}:
			default:
			}
		}
	}
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
// allocated meanwhile.
//
// The live heap of a collection counts, besides what was reachable when its
// mark began, everything allocated while it marked (allocated black), dead
// or not. A mark slowed down by CPU load makes that a lot: a cell making
// only garbage under a 200 MiB limit showed over 150 MiB live after the
// runtime's own collections, so the live heap alone is no evidence. The
// collection here starts after allocs0 is read (runtime.GC waits for a
// cycle in progress and starts a new one) and its mark ends before allocs1
// is read, so the black allocations are at most allocs1 - allocs0 (the
// mcaches are flushed at mark termination, so the counter is complete).
// A cell holding more than the limit is counted short by what it allocated
// during the collection, and caught by the next one.
func heldAfterGC(s []metrics.Sample) int64 {
	readHeap(s)
	allocs0 := allocated(s)
	runtime.GC() // returns after mark termination and a full sweep
	_, live := readHeap(s)
	return live - (allocated(s) - allocs0)
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
