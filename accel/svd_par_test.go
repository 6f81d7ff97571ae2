package accel

import (
	"fmt"
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

// TestBothWaitsOnPanic checks that when f panics, both still waits for g
// (which writes into the caller's matrices) before the panic leaves it.
func TestBothWaitsOnPanic(t *testing.T) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	var gDone atomic.Bool
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("f's panic did not reach the caller")
			}
			if !gDone.Load() {
				t.Error("both returned (panicking) while g was still running")
			}
		}()
		both(func() error { panic("f fails") }, func() error {
			time.Sleep(50 * time.Millisecond)
			gDone.Store(true)
			return nil
		})
	}()
}
