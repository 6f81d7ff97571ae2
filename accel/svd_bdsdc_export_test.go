package accel

// SetBdsdcCross sets the size from which ThinSVD uses the divide-and-conquer
// bidiagonal solver (math.MaxInt: never, 1: always) and returns a function
// that restores it; for tests and benchmarks only.
func SetBdsdcCross(n int) (restore func()) {
	old := bdsdcCross
	bdsdcCross = n
	return func() { bdsdcCross = old }
}
