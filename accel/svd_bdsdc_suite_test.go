package accel_test

import (
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/accel/acceltest"
)

// TestThinSVDDivideConquer runs the conformance suite with the
// divide-and-conquer bidiagonal solver at every size (by default it takes
// over from 64 columns), so that its leaf-only and one-merge cases (n ≤ 64)
// and the suite's special matrices (zeros, identity, rank 1, 1e±300) go
// through it too.
func TestThinSVDDivideConquer(t *testing.T) {
	defer accel.SetBdsdcCross(1)()
	acceltest.SVDTest(t, thinSVD{}, svdTol)
}
