package session

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// Runaway recursion. Go ends the process with "fatal error: stack
// overflow" when one goroutine's stack passes 1 GB, which no recover
// catches; an interpreted call takes about a kilobyte of Go stack, so an
// infinite recursion gets there in a few seconds. A watcher samples the
// stack memory of the process (runtime/metrics) every stackPoll and, when
// it passes stackLimit while growing, stops the interpreter as an
// interrupt does (measured, TestRecursionStopsTheCellNotTheKernel -count 5:
// 0.5–0.9 s after the recursion starts, at 256–320 MiB): the
// running cell fails with a StackOverflow error and keeps every earlier
// variable; a goroutine of an earlier cell is stopped and the next cell
// says so.

const (
	stackLimit = 256 << 20
	stackPoll  = 20 * time.Millisecond
)

// stackWatch is a session's side of the watcher.
type stackWatch struct {
	trip chan int64 // the stack size that tripped, for the running cell
}

// errStack is what execute returns for a cell stopped by the watcher.
var errStack = errors.New("stack overflow")

// The watcher is one per process (the stack metric is the process's), and
// stops every session's interpreted code when it trips.
var stackWatcher struct {
	once     sync.Once
	mu       sync.Mutex
	sessions map[*Session]bool
}

// startStackWatch registers s with the watcher, starting it once.
func (s *Session) startStackWatch() {
	s.stack.trip = make(chan int64, 1)
	stackWatcher.once.Do(func() {
		stackWatcher.sessions = map[*Session]bool{}
		go watchStacks()
	})
	stackWatcher.mu.Lock()
	stackWatcher.sessions[s] = true
	stackWatcher.mu.Unlock()
}

// stopStackWatch unregisters s.
func (s *Session) stopStackWatch() {
	stackWatcher.mu.Lock()
	delete(stackWatcher.sessions, s)
	stackWatcher.mu.Unlock()
}

func watchStacks() {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	read := func() int64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(sample[0].Value.Uint64())
	}
	t := time.NewTicker(stackPoll)
	defer t.Stop()
	retry := false // a trip could not be delivered: try again whether or not they grew
	prev := int64(0)
	for range t.C {
		n := read()
		// Only growing stacks trip: a recursion grows its stack by
		// doubling, while the stack of a goroutine stopped earlier stays
		// high as it unwinds (under load for seconds) and must not stop
		// the next cell. A new recursion on top of it still grows.
		grew := n > prev
		prev = n
		switch {
		case n > stackLimit && (grew || retry):
			// The stacks of goroutines that ended are freed by a GC.
			runtime.GC()
			if n = read(); n <= stackLimit {
				prev = n
				continue
			}
			prev, retry = n, false
			stackWatcher.mu.Lock()
			for s := range stackWatcher.sessions {
				if !s.stackTripped(n) {
					retry = true // try again at the next tick
				}
			}
			stackWatcher.mu.Unlock()
		case n > stackLimit:
			runtime.GC() // frees the stacks of stopped goroutines
			prev = read()
		}
	}
}

// stackTripped stops s's running cell, or its interpreted goroutines. It
// reports false when it could do neither (a cell was starting or ending).
func (s *Session) stackTripped(n int64) bool {
	if s.running() != nil {
		select {
		case s.stack.trip <- n:
		default:
		}
		return true
	}
	if !s.mu.TryLock() {
		return false
	}
	if s.it != nil {
		interpStop(s.it)
		s.armed = false
	}
	s.mu.Unlock()
	s.curMu.Lock()
	s.pending = append(s.pending, segText{"stderr", fmt.Sprintf(
		"a goroutine of an earlier cell recursed too deep (stacks of %s, limit %s): gopeft stopped the interpreted code to save the kernel\n",
		formatBytes(n), formatBytes(stackLimit))})
	s.curMu.Unlock()
	return true
}

// stackResult is the error of a cell stopped by the watcher.
func stackResult(n int64) Result {
	msg := fmt.Sprintf("the cell recursed too deep: goroutine stacks reached %s (gopeft stops the cell at %s, "+
		"before Go's fatal 1 GB stack overflow would end the kernel). Look for a recursion without a base case; "+
		"variables from earlier statements are kept", formatBytes(n), formatBytes(stackLimit))
	return errorResult("StackOverflow", msg, []string{"StackOverflow: " + msg})
}
