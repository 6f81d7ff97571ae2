//go:build !unix

package accel

import "time"

// processCPUTime is unavailable here: benchmarks report wall-clock figures only.
func processCPUTime() time.Duration { return 0 }
