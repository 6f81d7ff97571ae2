//go:build !unix

package cputime

import "time"

// Process returns 0: CPU time is not measured on this system, so callers
// report wall-clock figures only.
func Process() time.Duration { return 0 }
