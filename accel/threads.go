package accel

import (
	"runtime"
	"sync/atomic"
)

// threads is the number of goroutines large products may use; 0 means
// runtime.GOMAXPROCS(0) at the time of the call.
var threads atomic.Int64

// SetThreads sets the number of goroutines used for large products and
// returns the previous setting. n ≤ 0 restores the default,
// runtime.GOMAXPROCS(0). Whatever the setting, a product that starts while
// another parallel product is running runs on its caller's goroutine alone,
// so callers that are already parallel do not oversubscribe the cores.
func SetThreads(n int) (previous int) {
	if n < 0 {
		n = 0
	}
	old := int(threads.Swap(int64(n)))
	if old == 0 {
		old = runtime.GOMAXPROCS(0)
	}
	return old
}

// Threads reports the number of goroutines large products may use.
func Threads() int {
	if n := int(threads.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}
