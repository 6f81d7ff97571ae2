//go:build !amd64 || purego

package accel

// cpuidCaches reports no CPUID cache information: without assembly the
// sizes come from sysfs or the defaults.
func cpuidCaches() (cacheInfo, bool) { return cacheInfo{}, false }
