//go:build unix

package accel_test

import (
	"syscall"
	"time"
)

// svdCPUTime returns the user+system CPU time of the process so far: the SVD
// benchmarks report CPU seconds per operation beside wall-clock time, which
// on a shared, loaded machine tells the code's cost apart from waiting.
func svdCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
