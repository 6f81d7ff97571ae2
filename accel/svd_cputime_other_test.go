//go:build !unix

package accel_test

import "time"

// svdCPUTime is unavailable here: benchmarks report wall-clock time only.
func svdCPUTime() time.Duration { return 0 }
