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
// it passes stackLimit, stops the interpreter as an interrupt does: the
// running cell fails with a StackOverflow error and keeps every earlier
// variable; a goroutine of an earlier cell is stopped and the next cell
// says so.

const (
	stackLimit = 256 << 20
	stackPoll  = 20 * time.Millisecond
)

// stackWatch is the watcher's state.
type stackWatch struct {
	once sync.Once
	trip chan int64 // the stack size that tripped, for the running cell
	quit chan struct{}
}

// errStack is what execute returns for a cell stopped by the watcher.
var errStack = errors.New("stack overflow")

// startStackWatch starts the watcher once per session.
func (s *Session) startStackWatch() {
	s.stack.once.Do(func() {
		s.stack.trip = make(chan int64, 1)
		s.stack.quit = make(chan struct{})
		go s.watchStack(s.stack.quit)
	})
}

func (s *Session) watchStack(quit <-chan struct{}) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	t := time.NewTicker(stackPoll)
	defer t.Stop()
	tripped := false
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		n := int64(sample[0].Value.Uint64())
		switch {
		case n > stackLimit && !tripped:
			tripped = true
			if s.running() != nil {
				select {
				case s.stack.trip <- n:
				default:
				}
				continue
			}
			s.mu.Lock()
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
			runtime.GC()
		case n < stackLimit/2 && tripped:
			tripped = false
		case tripped:
			runtime.GC() // frees the stack of the stopped goroutine
		}
	}
}

// stackResult is the error of a cell stopped by the watcher.
func stackResult(n int64) Result {
	msg := fmt.Sprintf("the cell recursed too deep: goroutine stacks reached %s (gopeft stops the cell at %s, "+
		"before Go's fatal 1 GB stack overflow would end the kernel). Look for a recursion without a base case; "+
		"variables from earlier statements are kept", formatBytes(n), formatBytes(stackLimit))
	return errorResult("StackOverflow", msg, []string{"StackOverflow: " + msg})
}
