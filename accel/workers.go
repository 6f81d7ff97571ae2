package accel

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// This file is accel's one worker system, used by every parallel loop: the
// GEMM's split of C across goroutines (parallel), the matrix-vector products
// of Implementation.Dgemv and of the SVD's bidiagonalization, the SVD's
// rotation batches, and its concurrent back-transformations (both).
//
// A team is the caller plus workers−1 helper goroutines. A step of the team
// is a number of tasks, f(worker, task) for task 0…tasks−1, claimed one by
// one by whichever worker gets there first (claimState). A panic in any task,
// the caller's included, is recovered, stops the step (the tasks nobody has
// started are skipped), calls the step's abort hook if it has one, and is
// re-raised on the caller's goroutine once no task of the step is running
// any more, so no worker outlives the call that started it.
//
// Long sequences of short steps (labrd: two per column) keep one team for
// the whole sequence, whose helpers spin between steps (newTeam); a single
// parallel product (parallel, both) makes a team for its one step
// (newStepTeam), whose helpers exit when they are done with it and whose
// caller parks rather than spins while it waits, so a step costs no more
// CPU time than goroutines started for it.

// claimState is one step of a team: f(worker, task) runs once for every
// task 0…tasks−1, on the caller's goroutine (worker 0) and on the team's
// helpers.
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
// Tasks may also wait for each other (the GEMM's packing barrier) when there
// are no more tasks than workers: a worker holds one task until it is done,
// so each task then gets a worker of its own.
type claimState struct {
	tasks, workers int
	claimed        []atomic.Bool
	done           atomic.Int64
	finished       chan struct{} // closed when done reaches tasks
	panicked       atomic.Pointer[any]
	stop           atomic.Bool // set after a panic: run nothing more
	abort          func()      // if not nil, called on the first panic
}

func newClaimState(tasks, workers int, abort func()) *claimState {
	return &claimState{tasks: tasks, workers: workers, claimed: make([]atomic.Bool, tasks), finished: make(chan struct{}), abort: abort}
}

// work claims and runs tasks from worker w's start, cyclically. After a
// panic (stop) it still claims the tasks nobody has, and counts them as done
// without running them, so the step ends whoever is left to finish it.
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
		if !s.stop.Load() {
			s.do(w, t, f)
		}
		s.finish()
	}
}

// do runs one task, recovering its panic.
func (s *claimState) do(w, t int, f func(worker, task int)) {
	defer func() {
		if r := recover(); r != nil {
			s.fail(r)
		}
	}()
	f(w, t)
}

// fail records a task's panic r, keeping the first one that is not
// errAborted (the panic of tasks that abort released from a barrier), stops
// the step, and calls abort once.
func (s *claimState) fail(r any) {
	for {
		old := s.panicked.Load()
		if old != nil && (*old != errAborted || r == errAborted) {
			break
		}
		if s.panicked.CompareAndSwap(old, &r) {
			break
		}
	}
	if !s.stop.Swap(true) && s.abort != nil {
		s.abort()
	}
}

// finish counts one task as done.
func (s *claimState) finish() {
	if s.done.Add(1) == int64(s.tasks) {
		close(s.finished)
	}
}

// workerPanic is the value re-raised on the caller for a task's panic r:
// an error saying so, which wraps r when r is an error.
func workerPanic(r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("accel: panic in worker: %w", err)
	}
	return fmt.Errorf("accel: panic in worker: %v", r)
}

// team is a set of helper goroutines for a sequence of parallel steps run
// from one goroutine at a time (the caller, which takes part as worker 0).
// A helper that has just finished a step spins, waiting for the next, for up
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
// next solo steps alone (16 at first, doubling up to 1024 while it keeps
// happening, back to 16 after a step without waiting). Steps whose tasks
// wait for each other must not run on an adaptive team.
type team struct {
	helpers []*teamHelper
	gen     atomic.Int64
	job     atomic.Pointer[teamJob]
	oneStep bool // newStepTeam: no spinning, helpers exit after one job

	// Caller-side only (steps come from one goroutine at a time).
	adaptive      bool
	solo, backoff int
}

const (
	teamBackoffMin = 16
	teamBackoffMax = 1024
)

type teamJob struct {
	s       *claimState
	f       func(worker, task int)
	quit    bool
	helpers int // helpers 1…helpers work on it (the others ignore it)
}

type teamHelper struct {
	sleeping atomic.Bool
	wake     chan struct{}
}

// teamSpin bounds a helper's busy wait between steps.
const teamSpin = 200 * time.Microsecond

// newTeam starts workers−1 helpers for a sequence of steps (none when
// workers ≤ 1: it returns nil). The caller must call close when done.
func newTeam(workers int) *team {
	return startTeam(workers, false)
}

// newStepTeam is newTeam for a single step: its helpers exit once they have
// worked on the first step posted, and the caller's join parks at once
// rather than spinning while it waits for them. The caller must still call
// close (which stops helpers that have not seen a step).
func newStepTeam(workers int) *team {
	return startTeam(workers, true)
}

func startTeam(workers int, oneStep bool) *team {
	if workers <= 1 {
		return nil
	}
	t := &team{helpers: make([]*teamHelper, workers-1), oneStep: oneStep}
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
		t.post(&teamJob{quit: true, helpers: len(t.helpers)})
	}
}

func (t *team) post(j *teamJob) {
	t.job.Store(j)
	t.gen.Add(1)
	for _, h := range t.helpers[:j.helpers] {
		if h.sleeping.Load() && h.sleeping.CompareAndSwap(true, false) {
			h.wake <- struct{}{}
		}
	}
}

// run runs one step on the team: f(worker, task) for every task, the caller
// taking part, returning when all are done. Steps must not overlap: run is
// called from one goroutine at a time.
func (t *team) run(tasks int, f func(worker, task int)) {
	t.start(tasks, nil, f).join()
}

// teamStep is a step started by team.start; join finishes it.
type teamStep struct {
	t *team // nil: not posted to helpers
	s *claimState
	f func(worker, task int)
}

// start posts a step to the helpers and returns without running any of it
// (with no helpers, it returns the step for join to run). The caller may
// do other work, then must call join before the next start. abort, if not
// nil, is called on the step's first panic (see claimState).
func (t *team) start(tasks int, abort func(), f func(worker, task int)) teamStep {
	return t.startOn(t.workers(), tasks, abort, f)
}

// startOn is start on the caller and the first workers−1 helpers only
// (workers ≤ t.workers()); the other helpers are not woken.
func (t *team) startOn(workers, tasks int, abort func(), f func(worker, task int)) teamStep {
	if tasks <= 0 {
		return teamStep{}
	}
	workers = max(1, min(workers, t.workers()))
	s := newClaimState(tasks, workers, abort)
	if t == nil || tasks == 1 || workers == 1 {
		return teamStep{s: s, f: f}
	}
	if t.solo > 0 {
		t.solo--
		return teamStep{s: s, f: f}
	}
	t.post(&teamJob{s: s, f: f, helpers: workers - 1})
	return teamStep{t: t, s: s, f: f}
}

// join runs the step's unclaimed tasks on the caller (worker 0), waits for
// the helpers' to finish, and re-raises the step's first panic.
func (st teamStep) join() {
	s := st.s
	if s == nil {
		return
	}
	s.work(0, st.f)
	parked := false
	if s.done.Load() < int64(s.tasks) {
		if st.t == nil || !st.t.oneStep {
			// A helper's last task is usually a few microseconds from
			// done: spin for it before parking.
			spinStart := time.Now()
			for spins := 0; s.done.Load() < int64(s.tasks); spins++ {
				if spins&255 == 255 && time.Since(spinStart) > teamSpin/4 {
					parked = true
					break
				}
			}
		} else {
			parked = true
		}
		if parked {
			<-s.finished
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
		panic(workerPanic(*p))
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
		if w > j.helpers {
			continue // not asked: wait for the next job
		}
		if j.quit {
			return
		}
		j.s.work(w, j.f)
		if t.oneStep {
			return
		}
	}
}

// pool is the persistent team behind parallel: its helpers live for the
// whole process (started the first time a parallel product needs them,
// more when a later one needs more), spin for teamSpin after a step and
// then park, so a parallel product costs no goroutine creation and, in a
// sequence of products, usually finds its helpers running. One caller at a
// time uses it (busy); a parallel step that finds it taken (an SVD running
// its own teams next to a product, say) makes a team for its one step.
var pool struct {
	busy atomic.Bool
	tm   *team        // owned by whoever holds busy
	last atomic.Int64 // when the pool's last step ended, in ns since poolEpoch
}

// poolEpoch is the origin of pool.last (a monotonic clock reading).
var poolEpoch = time.Now()

// epochNs is now as a mark for pool.last and lastGemm: ns since poolEpoch,
// at least 1 (0 means no mark).
func epochNs() int64 { return max(1, time.Since(poolEpoch).Nanoseconds()) }

// sinceMark is the time since mark, from epochNs (a long time for 0).
func sinceMark(mark int64) time.Duration {
	if mark == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(time.Since(poolEpoch).Nanoseconds() - mark)
}

// poolHot reports whether the pool's helpers are likely still spinning
// after their last step (it ended less than half of teamSpin ago), so that
// a new step starts on them within microseconds instead of the ~100 µs a
// parked helper takes to wake.
func poolHot() bool {
	return sinceMark(pool.last.Load()) < teamSpin/2
}

// parallel runs f(0), …, f(nt−1) at the same time, f(0) on the caller's
// goroutine, and returns when all are done: on the persistent pool's
// caller and first nt−1 helpers (the others are not woken), or, when the
// pool is in use, on a team made for this one step (newStepTeam). Each f(t)
// gets a goroutine of its own, so they may wait for each other; onPanic, if
// not nil, is called on the first panic to release the others
// (barrier.abort). The first panic that is not errAborted is re-raised on
// the caller's goroutine once all have returned.
func parallel(nt int, onPanic func(), f func(t int)) {
	parallelOn(nt, nt, onPanic, f)
}

// parallelOn is parallel for tasks tasks on at most workers goroutines:
// each worker w starts at task w·tasks/workers and goes on with the next
// unclaimed ones, so a worker that runs late or slow leaves its later tasks
// to the others.
func parallelOn(workers, tasks int, onPanic func(), f func(t int)) {
	task := func(_, t int) { f(t) }
	workers = min(workers, tasks)
	if workers > 1 && pool.busy.CompareAndSwap(false, true) {
		defer pool.busy.Store(false)
		if pool.tm.workers() < workers {
			pool.tm.close()
			pool.tm = newTeam(workers)
		}
		defer func() { pool.last.Store(epochNs()) }()
		pool.tm.startOn(workers, tasks, onPanic, task).join()
		return
	}
	tm := newStepTeam(workers)
	defer tm.close()
	tm.start(tasks, onPanic, task).join()
}

// both runs f and g, concurrently when Threads() allows two (f on the
// caller's goroutine, g on a helper, each taking the other's over if it is
// not started by then), and returns the first non-nil error (f's first). g
// is skipped if it has not started when f has failed. A panic in either is
// re-raised on the caller's goroutine once neither is running.
func both(f, g func() error) error {
	tm := newStepTeam(min(2, Threads()))
	defer tm.close()
	var fErr, gErr error
	var fFailed atomic.Bool
	tm.run(2, func(_, k int) {
		if k == 0 {
			fErr = f()
			fFailed.Store(fErr != nil)
		} else if !fFailed.Load() {
			gErr = g()
		}
	})
	if fErr != nil {
		return fErr
	}
	return gErr
}

// errAborted is the panic of goroutines released from a barrier because
// another one panicked; the step reports the other one's panic instead.
var errAborted = errors.New("accel: worker aborted")

// barrier makes n goroutines wait until all have arrived. abort releases
// them for good: every wait then panics with errAborted, so a panic in one
// goroutine cannot leave the others waiting forever.
type barrier struct {
	mu         sync.Mutex
	cond       sync.Cond
	n, count   int
	generation int
	broken     bool
}

func newBarrier(n int) *barrier {
	b := &barrier{n: n}
	b.cond.L = &b.mu
	return b
}

func (b *barrier) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken {
		panic(errAborted)
	}
	gen := b.generation
	if b.count++; b.count == b.n {
		b.count = 0
		b.generation++
		b.cond.Broadcast()
		return
	}
	for gen == b.generation && !b.broken {
		b.cond.Wait()
	}
	if gen == b.generation {
		panic(errAborted)
	}
}

func (b *barrier) abort() {
	b.mu.Lock()
	b.broken = true
	b.cond.Broadcast()
	b.mu.Unlock()
}
