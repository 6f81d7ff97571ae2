package accel_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/accel/acceltest"
)

// svdTol is the conformance tolerance: the suite's matrices are at most
// 400×400, where backward-stable algorithms give errors near p·ε ≤ 1e-13.
const svdTol = 1e-12

type thinSVD struct{}

func (thinSVD) ThinSVD(ctx context.Context, a mat.Matrix) (*mat.Dense, []float64, *mat.Dense, error) {
	r, err := accel.ThinSVD(ctx, a)
	return r.U, r.S, r.VT, err
}

func (thinSVD) SingularValues(ctx context.Context, a mat.Matrix) ([]float64, error) {
	return accel.SingularValues(ctx, a)
}

type truncated struct{ opts *accel.TruncatedOptions }

func (t truncated) TruncatedSVD(ctx context.Context, a mat.Matrix, k int) (*mat.Dense, []float64, *mat.Dense, float64, error) {
	r, err := accel.TruncatedSVD(ctx, a, k, t.opts)
	return r.U, r.S, r.VT, r.Residual, err
}

func TestThinSVD(t *testing.T) { acceltest.SVDTest(t, thinSVD{}, svdTol) }

func TestSingularValues(t *testing.T) {
	acceltest.SingularValuesTest(t, thinSVD{}, thinSVD{}, svdTol)
}

func TestTruncatedSVD(t *testing.T) {
	// Default options (oversampling 10, 2 power iterations): on these decaying
	// spectra the top-k values are within 1e-6 relative.
	acceltest.TruncatedTest(t, truncated{}, svdTol, 1e-6)
}

func TestSVDNonFinite(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		a := mat.NewDense(40, 30, nil)
		for i := range 40 {
			a.Set(i, i%30, 1)
		}
		a.Set(7, 11, v)
		check := func(name string, err error) {
			t.Helper()
			var nf *accel.NonFiniteError
			if !errors.As(err, &nf) {
				t.Fatalf("%s with %v: err = %v, want *NonFiniteError", name, v, err)
			}
			if nf.Row != 7 || nf.Col != 11 {
				t.Errorf("%s: NonFiniteError at (%d,%d), want (7,11)", name, nf.Row, nf.Col)
			}
		}
		_, err := accel.ThinSVD(context.Background(), a)
		check("ThinSVD", err)
		_, err = accel.SingularValues(context.Background(), a)
		check("SingularValues", err)
		_, err = accel.TruncatedSVD(context.Background(), a, 3, nil)
		check("TruncatedSVD", err)
	}
}

func TestTruncatedSVDBadK(t *testing.T) {
	a := mat.NewDense(5, 3, nil)
	for _, k := range []int{-1, 0, 4} {
		func() {
			defer func() {
				r := recover()
				e, ok := r.(accel.SVDArgError)
				if !ok {
					t.Fatalf("k=%d: recovered %v, want SVDArgError", k, r)
				}
				if e.M != 5 || e.N != 3 {
					t.Errorf("k=%d: error names shape %d×%d, want 5×3", k, e.M, e.N)
				}
			}()
			accel.TruncatedSVD(context.Background(), a, k, nil)
		}()
	}
}

// TestSVDCancel checks that a cancelled context stops a large decomposition
// promptly: already cancelled, and cancelled while running.
func TestSVDCancel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	a := acceltest.Gaussian(rng, 1200, 1200)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := accel.ThinSVD(ctx, a); !errors.Is(err, context.Canceled) {
		t.Errorf("ThinSVD with a cancelled context: err = %v", err)
	}
	if _, err := accel.TruncatedSVD(ctx, a, 5, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("TruncatedSVD with a cancelled context: err = %v", err)
	}
	// Deadlines that land in the bidiagonalization (50 ms) and later
	// (150 ms); either way the call must return promptly. The thin SVD of
	// 1200² takes 0.39–0.5 s on two cores of the development machine with
	// nothing else running (a deadline of 400 ms, used before, was reached
	// after the call had finished).
	for _, c := range []struct {
		vec      bool
		deadline time.Duration
	}{{true, 50 * time.Millisecond}, {true, 150 * time.Millisecond}, {false, 50 * time.Millisecond}} {
		ctx, cancel := context.WithTimeout(context.Background(), c.deadline)
		start := time.Now()
		var err error
		if c.vec {
			_, err = accel.ThinSVD(ctx, a)
		} else {
			_, err = accel.SingularValues(ctx, a)
		}
		el := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("vectors=%v deadline %v: err = %v after %v, want DeadlineExceeded", c.vec, c.deadline, err, el)
		}
		if el > c.deadline+500*time.Millisecond {
			t.Errorf("vectors=%v: returned %v after the %v deadline", c.vec, el-c.deadline, c.deadline)
		}
		t.Logf("vectors=%v deadline %v: returned %v after it", c.vec, c.deadline, el-c.deadline)
	}
}

// TestThinSVDLarge runs the checks of the conformance suite on matrices
// large enough for several panels of every blocked stage (bidiagonalization,
// QR, back-transformation) and many rotation batches: square graded, tall
// (QR first) and wide.
func TestThinSVDLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large SVD")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	s := make([]float64, 450)
	for i := range s {
		s[i] = math.Pow(10, -12*float64(i)/449)
	}
	for _, c := range []struct {
		name string
		a    *mat.Dense
	}{
		{"graded/450x450", acceltest.WithSpectrum(rng, 450, 450, s)},
		{"random/900x400", acceltest.Gaussian(rng, 900, 400)},
		{"random/300x520", acceltest.Gaussian(rng, 300, 520)},
	} {
		// 1, 2, 3 threads: the SVD's team with no helper, one, two.
		for _, threads := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/threads=%d", c.name, threads), func(t *testing.T) {
				old := accel.SetThreads(threads)
				defer accel.SetThreads(old)
				r, err := accel.ThinSVD(context.Background(), c.a)
				if err != nil {
					t.Fatal(err)
				}
				acceltest.CheckValues(t, c.a, r.S, svdTol)
				if e := acceltest.Reconstruction(c.a, r.U, r.S, r.VT); e > svdTol {
					t.Errorf("‖A − UΣVᵀ‖_F/‖A‖_F = %.3g", e)
				}
				if e := acceltest.OrthoCols(r.U); e > svdTol {
					t.Errorf("max|UᵀU − I| = %.3g", e)
				}
				if e := acceltest.OrthoCols(r.VT.T()); e > svdTol {
					t.Errorf("max|VVᵀ − I| = %.3g", e)
				}
				acceltest.CheckSigns(t, r.U)
			})
		}
	}
}
