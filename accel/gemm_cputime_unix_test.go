//go:build unix

package accel

import (
	"syscall"
	"time"
)

// processCPUTime returns the user+system CPU time of the process so far:
// benchmarks report GFLOP per CPU-second beside wall-clock GFLOP/s, which on
// a shared, loaded machine tells the code's speed apart from the time it
// waited for a core.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
