// Package cputime reads the CPU time the process has used, user and system,
// for benchmarks that report CPU time per operation beside wall-clock time:
// on a shared, loaded machine the wall clock also counts the time spent
// waiting for a core. It imports only the standard library, so any package
// of the module may use it.
package cputime
