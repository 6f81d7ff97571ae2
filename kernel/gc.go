package kernel

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// GC pacing. A trivial execute makes about 45 KB of garbage (the
// interpreter compiling the cell, and go-zeromq's queues for the IOPub
// messages) while the kernel's live heap is only a few MB: with Go's
// default GOGC=100 the collector ran every ~100 executes, and those
// executes made the tail of the round trip (p99 3.6–4.2 ms against 1.3–1.8
// ms without collections, on the shared 2-core machine). So while the live
// heap is small the kernel lets its heap reach 3× the live heap
// (GOGC=200: about 6 MB more resident memory, p99 2.3–2.7 ms), and goes
// back to the default 2× once the live heap passes smallHeap, where 3×
// would cost real memory (a training run's matrices). A GOGC set in the
// environment is left alone.

const (
	smallHeapGCPercent = 200
	smallHeap          = 64 << 20
)

// tuneGC applies the pacing above unless GOGC is set.
func tuneGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	paceGC(-1)
}

// paceGC sets the GC percent for the live heap and re-arms itself to run
// after the next collection (through a finalizer, which runs once the
// collection that found its object unreachable is done).
func paceGC(last int) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	pct := 100
	if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() < smallHeap {
		pct = smallHeapGCPercent
	}
	if pct != last {
		debug.SetGCPercent(pct)
	}
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) { paceGC(pct) })
}

// gcSentinel is an object whose finalizer runs after each collection (it
// holds a pointer so that it is not batched by the tiny allocator, whose
// objects' finalizers may never run).
type gcSentinel struct{ _ *int }
