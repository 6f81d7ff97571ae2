package accel

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTeamRun checks that team.run runs every task exactly
// once, with worker indices below the team size, over many short steps in a
// row (the labrd pattern), including steps with a helper that is slow
// (which, on an adaptive team, sends the next steps to the caller alone).
func TestTeamRun(t *testing.T) {
	for _, c := range []struct {
		workers  int
		adaptive bool
	}{{1, false}, {2, false}, {3, false}, {2, true}, {3, true}} {
		workers := c.workers
		t.Run(fmt.Sprintf("workers=%d/adaptive=%v", workers, c.adaptive), func(t *testing.T) {
			tm := newTeam(workers)
			defer tm.close()
			if tm != nil {
				tm.adaptive = c.adaptive
			}
			for step := 0; step < 300; step++ {
				tasks := 1 + step%17
				counts := make([]atomic.Int32, tasks)
				check := func(name string, run func(int, func(w, k int))) {
					for k := range counts {
						counts[k].Store(0)
					}
					run(tasks, func(w, k int) {
						if w < 0 || w >= workers {
							t.Errorf("%s: worker %d of %d", name, w, workers)
						}
						if step%50 == 7 && w == 1 {
							time.Sleep(time.Millisecond) // a late helper
						}
						counts[k].Add(1)
					})
					for k := range counts {
						if c := counts[k].Load(); c != 1 {
							t.Fatalf("%s: step %d: task %d of %d ran %d times", name, step, k, tasks, c)
						}
					}
				}
				check("team.run", tm.run)
			}
		})
	}
}

// TestTeamPanic checks that a panic in a helper's task reaches the caller
// (and does not hang it), and that the team still works afterwards.
func TestTeamPanic(t *testing.T) {
	tm := newTeam(2)
	defer tm.close()
	for _, name := range []string{"first step", "second step"} {
		// The caller's first task waits until the helper has taken one, so
		// the helper's panic always happens and must reach the caller.
		started := make(chan struct{})
		var once sync.Once
		got := func() (r any) {
			defer func() { r = recover() }()
			f := func(w, k int) {
				if w == 1 {
					once.Do(func() { close(started) })
					panic("boom in helper")
				}
				select {
				case <-started:
				case <-time.After(5 * time.Second):
				}
			}
			tm.run(16, f)
			return nil
		}()
		if got == nil || !strings.Contains(fmt.Sprint(got), "boom in helper") {
			t.Fatalf("%s: recovered %v, want the helper's panic", name, got)
		}
	}
	var n atomic.Int32
	tm.run(8, func(w, k int) { n.Add(1) })
	if n.Load() != 8 {
		t.Fatalf("after a panic: %d of 8 tasks ran", n.Load())
	}
}

// TestTeamCallerPanic checks that a panic in the caller's own task reaches
// the caller only once the helper's task has returned (it may be writing
// into the caller's data), and that the team still works afterwards.
func TestTeamCallerPanic(t *testing.T) {
	tm := newTeam(2)
	defer tm.close()
	var helperDone atomic.Bool
	started := make(chan struct{})
	got := func() (r any) {
		defer func() { r = recover() }()
		tm.run(2, func(w, k int) {
			if w == 1 {
				close(started)
				time.Sleep(50 * time.Millisecond)
				helperDone.Store(true)
				return
			}
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Error("the helper never started")
			}
			panic("boom in caller")
		})
		return nil
	}()
	if got == nil || !strings.Contains(fmt.Sprint(got), "boom in caller") {
		t.Fatalf("recovered %v, want the caller's panic", got)
	}
	if !helperDone.Load() {
		t.Fatal("run panicked while the helper's task was still running")
	}
	var n atomic.Int32
	tm.run(8, func(w, k int) { n.Add(1) })
	if n.Load() != 8 {
		t.Fatalf("after a panic: %d of 8 tasks ran", n.Load())
	}
}

// TestWorkerPanicWraps checks that an error a task panics with stays
// reachable with errors.Is from the caller's panic.
func TestWorkerPanicWraps(t *testing.T) {
	sentinel := errors.New("sentinel")
	tm := newTeam(2)
	defer tm.close()
	err := catch(func() { tm.run(4, func(w, k int) { panic(sentinel) }) })
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want an error wrapping the task's", err)
	}
}

// TestBothWaitsOnPanic checks that when f panics, both still waits for g
// (which writes into the caller's matrices) before the panic leaves it.
func TestBothWaitsOnPanic(t *testing.T) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	var gDone atomic.Bool
	gStarted := make(chan struct{})
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("f's panic did not reach the caller")
			}
			if !gDone.Load() {
				t.Error("both returned (panicking) while g was still running")
			}
		}()
		both(func() error {
			// Panic once g is running (g not started by then would be
			// skipped, and the test would prove nothing).
			select {
			case <-gStarted:
			case <-time.After(5 * time.Second):
				t.Error("g never started")
			}
			panic("f fails")
		}, func() error {
			close(gStarted)
			time.Sleep(50 * time.Millisecond)
			gDone.Store(true)
			return nil
		})
	}()
}

// TestBoth checks both's errors (f's first) with one and two threads, and
// that g runs unless f has already failed.
func TestBoth(t *testing.T) {
	errF, errG := errors.New("f"), errors.New("g")
	for _, threads := range []int{1, 2} {
		prev := SetThreads(threads)
		ran := 0
		var mu sync.Mutex
		count := func(err error) func() error {
			return func() error { mu.Lock(); ran++; mu.Unlock(); return err }
		}
		if err := both(count(nil), count(nil)); err != nil || ran != 2 {
			t.Errorf("threads=%d: both(ok, ok) = %v after %d runs, want nil after 2", threads, err, ran)
		}
		if err := both(count(errF), count(errG)); err != errF {
			t.Errorf("threads=%d: both(f fails, g fails) = %v, want f's error", threads, err)
		}
		if err := both(count(nil), count(errG)); err != errG {
			t.Errorf("threads=%d: both(ok, g fails) = %v, want g's error", threads, err)
		}
		SetThreads(prev)
	}
}

// TestParallelPanic checks that a panic in a worker goroutine, or in the
// caller's own part, reaches the caller's goroutine.
func TestParallelPanic(t *testing.T) {
	for _, bad := range []int{0, 2} {
		err := catch(func() {
			parallel(3, nil, func(i int) {
				if i == bad {
					panic("boom")
				}
			})
		})
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("part %d panics: got %v, want its panic", bad, err)
		}
	}
}

// TestParallelPanicBarrier checks that a part's panic releases the others
// waiting at a barrier, and that the part's panic, not the others'
// errAborted, reaches the caller: whether the caller's part or a helper's
// panics, and whether the others are waiting for it at a barrier already or
// get there later.
func TestParallelPanicBarrier(t *testing.T) {
	for _, bad := range []int{0, 1} {
		for _, early := range []bool{false, true} {
			bar := newBarrier(3)
			var running atomic.Int32
			err := catch(func() {
				parallel(3, bar.abort, func(i int) {
					running.Add(1)
					defer running.Add(-1)
					if !early {
						bar.wait()
					}
					if i == bad {
						panic("boom")
					}
					bar.wait()
					bar.wait()
				})
			})
			if err == nil || !strings.Contains(err.Error(), "boom") || errors.Is(err, errAborted) {
				t.Fatalf("part %d panics (early %v): got %v, want its panic", bad, early, err)
			}
			if n := running.Load(); n != 0 {
				t.Fatalf("part %d panics (early %v): parallel returned with %d parts running", bad, early, n)
			}
		}
	}
}

// TestParallelBarrier checks that every part of a parallel step gets a
// goroutine of its own (they can all wait at one barrier), step after step.
func TestParallelBarrier(t *testing.T) {
	for _, nt := range []int{1, 2, 3, 5} {
		for step := 0; step < 50; step++ {
			bar := newBarrier(nt)
			var hits atomic.Int32
			parallel(nt, bar.abort, func(i int) {
				for range 3 {
					bar.wait()
				}
				hits.Add(1)
			})
			if hits.Load() != int32(nt) {
				t.Fatalf("nt=%d: %d parts ran", nt, hits.Load())
			}
		}
	}
}

// TestScratch checks the scratch pool: lengths, reuse of the smallest
// buffer that fits, no reuse of a buffer more than four times too large,
// element types kept apart, and a bounded free list.
func TestScratch(t *testing.T) {
	// Empty the pool (other tests may have left buffers in it).
	scratch.mu.Lock()
	saved64, saved32 := scratch.f64, scratch.f32
	scratch.f64, scratch.f32 = nil, nil
	scratch.mu.Unlock()
	defer func() {
		scratch.mu.Lock()
		scratch.f64, scratch.f32 = saved64, saved32
		scratch.mu.Unlock()
	}()
	big, mid := getScratch[float64](1000), getScratch[float64](300)
	if len(*big) != 1000 || len(*mid) != 300 {
		t.Fatalf("lengths %d, %d, want 1000, 300", len(*big), len(*mid))
	}
	putScratch(big)
	putScratch(mid)
	if p := getScratch[float64](200); p != mid || len(*p) != 200 {
		t.Fatalf("getScratch(200) did not reuse the 300 buffer (len %d, cap %d)", len(*p), cap(*p))
	}
	if p := getScratch[float64](100); p == big {
		t.Fatal("getScratch(100) took the 1000 buffer")
	}
	if p := getScratch[float32](500); cap(*p) != 500 {
		t.Fatalf("getScratch[float32](500): cap %d, want a new buffer", cap(*p))
	}
	if p := getScratch[float64](900); p != big {
		t.Fatal("getScratch(900) did not reuse the 1000 buffer")
	}
	for i := range 3 * maxFreeScratch {
		b := make([]float64, 10000+i)
		putScratch(&b)
	}
	scratch.mu.Lock()
	n := len(scratch.f64)
	smallest := cap(*scratch.f64[0])
	for _, p := range scratch.f64 {
		smallest = min(smallest, cap(*p))
	}
	scratch.mu.Unlock()
	if n != maxFreeScratch || smallest != 10000+2*maxFreeScratch {
		t.Fatalf("free list: %d buffers, smallest %d; want %d, the largest kept", n, smallest, maxFreeScratch)
	}
}

// TestStepTeamHelpersExit checks that the helpers of one-step teams
// (both, and parallel when the pool is taken) exit once their step is done,
// and that parallel reuses the pool's helpers: no goroutine is left behind
// by many parallel products.
func TestStepTeamHelpersExit(t *testing.T) {
	prev := SetThreads(3)
	defer SetThreads(prev)
	parallel(3, nil, func(int) {}) // the pool's helpers, which stay
	base := runtime.NumGoroutine()
	for range 200 {
		parallel(3, nil, func(int) {})
		both(func() error { return nil }, func() error { return nil })
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after 400 one-step teams, %d before", n, base)
	}
}

// BenchmarkWorkerWake measures how long a parallel step waits for a parked
// helper to start (the helpers park 200 µs after a step): the first part of
// what gemmWakeNs charges (the rest, the slow first millisecond,
// BenchmarkGemmSequence shows). It reports the median over the runs.
//
//	go test ./accel -run '^$' -bench WorkerWake
func BenchmarkWorkerWake(b *testing.B) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	var lat []time.Duration
	for b.Loop() {
		time.Sleep(time.Millisecond) // long enough for the helper to park
		t0 := time.Now()
		var started time.Duration
		parallel(2, nil, func(task int) {
			if task == 1 {
				started = time.Since(t0)
			}
			for time.Since(t0) < 3*time.Millisecond { // keep the caller busy past the wake-up
			}
		})
		lat = append(lat, started)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "µs-to-start")
}
