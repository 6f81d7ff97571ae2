package accel

import (
	"fmt"
	"sync/atomic"
	"time"
)

// claimState is one parallel step of a team: f(worker, task) runs once for
// every task 0…tasks−1, on the caller's goroutine (worker 0) and on the
// team's helpers.
//
// Tasks are claimed one by one (a compare-and-swap per task), each worker
// starting at its own share — worker w at task w·tasks/workers — and going on
// cyclically, so that on an idle machine each worker gets the same share step
// after step (the same rows of a matrix stay in the same core's cache), and
// on a busy one a worker that runs late takes less. The caller does not wait
// for helpers that have not started: the step ends as soon as the last task
// is done, whoever ran it, and a helper that starts later finds nothing left
// to claim. That is what makes many short parallel steps in a row (one per
// column of a bidiagonalization) pay off when the OS is slow to schedule a
// helper's thread.
//
// A panic in a helper is recovered and re-raised on the caller's goroutine
// once every task has finished or been abandoned.
type claimState struct {
	tasks, workers int
	claimed        []atomic.Bool
	done           atomic.Int64
	finished       chan struct{} // closed when done reaches tasks
	panicked       atomic.Pointer[any]
	stop           atomic.Bool // set after a panic: claim nothing more
}

// work claims and runs tasks from worker w's start, cyclically.
func (s *claimState) work(w int, f func(worker, task int)) {
	start := w * s.tasks / s.workers
	for i := 0; i < s.tasks; i++ {
		t := start + i
		if t >= s.tasks {
			t -= s.tasks
		}
		if s.claimed[t].Load() || !s.claimed[t].CompareAndSwap(false, true) {
			continue
		}
		if s.stop.Load() {
			s.finish()
			continue
		}
		f(w, t)
		s.finish()
	}
}

// finish counts one task as done.
func (s *claimState) finish() {
	if s.done.Add(1) == int64(s.tasks) {
		close(s.finished)
	}
}

// run is a helper goroutine's body: work, with its panic recovered and the
// task it was running counted as done, so that the caller does not wait.
func (s *claimState) run(w int, f func(worker, task int)) {
	defer func() {
		if r := recover(); r != nil {
			s.panicked.CompareAndSwap(nil, &r)
			s.stop.Store(true)
			s.finish()
			// Tasks this helper would still have claimed are claimed by the
			// others, which skip them (stop) but count them.
		}
	}()
	s.work(w, f)
}

// team is a set of long-lived helper goroutines for a sequence of short
// parallel steps (the two matrix-vector products per column of labrd): a
// helper that has just finished a step spins, waiting for the next, for up
// to teamSpin before it parks on a channel. A spinning helper keeps its
// core, so on a busy machine the next step finds it running rather than
// waiting for the OS to schedule a woken thread, as a goroutine started per
// step would. A nil *team runs everything on the caller.
//
// On a busy machine a helper can also be descheduled in the middle of a
// task, and the caller then waits for the OS to run it again (milliseconds,
// against microseconds of work). So a team made with adaptive set (for steps
// of microseconds, where a wait over 50 µs means a stall) backs off: after a
// step in which the caller had to park waiting for a helper, it runs the
// next solo steps
// alone (16 at first, doubling up to 1024 while it keeps happening, back to
// 16 after a step without waiting).
type team struct {
	helpers []*teamHelper
	gen     atomic.Int64
	job     atomic.Pointer[teamJob]

	// Caller-side only (steps come from one goroutine at a time).
	adaptive      bool
	solo, backoff int
}

const (
	teamBackoffMin = 16
	teamBackoffMax = 1024
)

type teamJob struct {
	s    *claimState
	f    func(worker, task int)
	quit bool
}

type teamHelper struct {
	sleeping atomic.Bool
	wake     chan struct{}
}

// teamSpin bounds a helper's busy wait between steps.
const teamSpin = 200 * time.Microsecond

// newTeam starts workers−1 helpers (none when workers ≤ 1: it returns nil).
// The caller must call close when done.
func newTeam(workers int) *team {
	if workers <= 1 {
		return nil
	}
	t := &team{helpers: make([]*teamHelper, workers-1)}
	for i := range t.helpers {
		h := &teamHelper{wake: make(chan struct{}, 1)}
		t.helpers[i] = h
		go t.loop(i+1, h, 0)
	}
	return t
}

// workers reports the caller plus the helpers (1 for a nil team).
func (t *team) workers() int {
	if t == nil {
		return 1
	}
	return 1 + len(t.helpers)
}

// close stops the helpers (they exit as soon as they see it).
func (t *team) close() {
	if t != nil {
		t.post(&teamJob{quit: true})
	}
}

func (t *team) post(j *teamJob) {
	t.job.Store(j)
	t.gen.Add(1)
	for _, h := range t.helpers {
		if h.sleeping.Load() && h.sleeping.CompareAndSwap(true, false) {
			h.wake <- struct{}{}
		}
	}
}

// run runs one step on the team: f(worker, task) for every task, the caller
// taking part, returning when all are done. Steps must not overlap: run is
// called from one goroutine at a time.
func (t *team) run(tasks int, f func(worker, task int)) {
	t.start(tasks, f).join()
}

// teamStep is a step started by team.start; join finishes it.
type teamStep struct {
	t *team // nil: not posted to helpers
	s *claimState
	f func(worker, task int)
}

// start posts a step to the helpers and returns without running any of it
// (with no helpers, it returns the step for join to run). The caller may
// do other work, then must call join before the next start.
func (t *team) start(tasks int, f func(worker, task int)) teamStep {
	if tasks <= 0 {
		return teamStep{}
	}
	s := &claimState{tasks: tasks, workers: t.workers(), claimed: make([]atomic.Bool, tasks), finished: make(chan struct{})}
	if t == nil || tasks == 1 {
		return teamStep{s: s, f: f}
	}
	if t.solo > 0 {
		t.solo--
		return teamStep{s: s, f: f}
	}
	t.post(&teamJob{s: s, f: f})
	return teamStep{t: t, s: s, f: f}
}

// join runs the step's unclaimed tasks on the caller (worker 0), waits for
// the helpers' to finish, and re-raises a helper's panic.
func (st teamStep) join() {
	s := st.s
	if s == nil {
		return
	}
	s.work(0, st.f)
	// A helper's last band is usually a few microseconds from done: spin
	// for it before parking.
	spinStart := time.Now()
	parked := false
	for spins := 0; s.done.Load() < int64(s.tasks); spins++ {
		if spins&255 == 255 && time.Since(spinStart) > teamSpin/4 {
			<-s.finished
			parked = true
			break
		}
	}
	if t := st.t; t != nil && t.adaptive {
		if parked {
			t.backoff = min(teamBackoffMax, max(teamBackoffMin, 2*t.backoff))
			t.solo = t.backoff
		} else {
			t.backoff = 0
		}
	}
	if p := s.panicked.Load(); p != nil {
		panic(fmt.Errorf("accel: panic in SVD worker: %v", *p))
	}
}

// loop is helper w's body: run each posted job once, spin between jobs,
// park when the wait gets long. seen is the generation the helper has
// already handled; it is passed in (0 for a new team) rather than read
// here, so that a job posted before the goroutine first runs is not missed.
func (t *team) loop(w int, h *teamHelper, seen int64) {
	for {
		spinStart := time.Now()
		for spins := 0; t.gen.Load() == seen; spins++ {
			if spins&1023 == 1023 && time.Since(spinStart) > teamSpin {
				h.sleeping.Store(true)
				if t.gen.Load() != seen && h.sleeping.CompareAndSwap(true, false) {
					break // a job arrived before anyone saw us asleep
				}
				<-h.wake
				break
			}
		}
		seen = t.gen.Load()
		j := t.job.Load()
		if j.quit {
			return
		}
		j.s.run(w, j.f)
	}
}

// both runs f on the caller's goroutine and g on another one when Threads()
// allows two, and returns the first non-nil error (f's first). A panic in g
// is recovered and re-raised on the caller once f has returned.
func both(f, g func() error) error {
	if Threads() <= 1 {
		if err := f(); err != nil {
			return err
		}
		return g()
	}
	var gErr error
	var gPanic any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { gPanic = recover() }()
		gErr = g()
	}()
	var fErr error
	func() {
		// Wait for g even when f panics: g writes into the caller's
		// matrices and must not outlive the call.
		defer func() { <-done }()
		fErr = f()
	}()
	if gPanic != nil {
		panic(fmt.Errorf("accel: panic in SVD worker: %v", gPanic))
	}
	if fErr != nil {
		return fErr
	}
	return gErr
}
