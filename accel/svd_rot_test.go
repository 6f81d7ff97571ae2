package accel

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/accel/acceltest"
)

// rotSeqRef is the reference implementation of rotSeq, used only for
// testing: the rotations one entry at a time, in the order the doc states.
func rotSeqRef(a []float64, lda, w int, cs []float64, backward bool) {
	count := len(cs) / 2
	for t := 0; t < count; t++ {
		k := t
		if backward {
			k = count - 1 - t
		}
		c, s := cs[2*k], cs[2*k+1]
		for i := 0; i < w; i++ {
			x, y := a[k*lda+i], a[(k+1)*lda+i]
			a[k*lda+i] = c*x + s*y
			a[(k+1)*lda+i] = c*y - s*x
		}
	}
}

// TestRotSeq checks every rotSeq path against rotSeqRef at widths on both
// sides of the kernels' strips (16 for AVX2, 32 for AVX-512), forward and
// backward, with strides larger than the width, inside a NaN guard band
// that must stay untouched.
func TestRotSeq(t *testing.T) {
	for _, p := range rotPaths() {
		t.Run(p.name, func(t *testing.T) {
			p.set(t)
			// Always the same seed for reproducible results.
			rng := rand.New(rand.NewPCG(11, 12))
			for _, w := range []int{0, 1, 3, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 97} {
				for _, count := range []int{0, 1, 2, 7, 40} {
					for _, extra := range []int{0, 5} {
						for _, backward := range []bool{false, true} {
							lda := w + extra
							if lda == 0 {
								lda = 1
							}
							rows := count + 1
							const guard = 37
							buf := make([]float64, guard+rows*lda+guard)
							for i := range buf {
								buf[i] = math.NaN()
							}
							a := buf[guard : guard+rows*lda]
							for r := 0; r < rows; r++ {
								for i := 0; i < w; i++ {
									a[r*lda+i] = rng.NormFloat64()
								}
							}
							cs := make([]float64, 2*count)
							for k := 0; k < count; k++ {
								th := rng.Float64() * 2 * math.Pi
								cs[2*k], cs[2*k+1] = math.Cos(th), math.Sin(th)
							}
							if count > 2 {
								cs[2], cs[3] = 1, 0 // an identity rotation
							}
							want := append([]float64(nil), a...)
							rotSeqRef(want, lda, w, cs, backward)
							csCopy := append([]float64(nil), cs...)
							rotSeq(a, lda, w, cs, backward)
							name := fmt.Sprintf("w=%d count=%d lda=%d backward=%v", w, count, lda, backward)
							for i := range a {
								if i%lda >= w {
									if !math.IsNaN(a[i]) {
										t.Fatalf("%s: wrote %v into the gap at %d", name, a[i], i)
									}
									continue
								}
								if d := math.Abs(a[i] - want[i]); d > 1e-13*(1+math.Abs(want[i])) {
									t.Fatalf("%s: entry %d = %v, want %v", name, i, a[i], want[i])
								}
							}
							for i := 0; i < guard; i++ {
								if !math.IsNaN(buf[i]) || !math.IsNaN(buf[len(buf)-1-i]) {
									t.Fatalf("%s: guard band modified", name)
								}
							}
							for i := range cs {
								if cs[i] != csCopy[i] {
									t.Fatalf("%s: modified read-only cs", name)
								}
							}
						}
					}
				}
			}
		})
	}
}

// setRotFlag sets *p to v for the duration of the test.
func setRotFlag(t *testing.T, p *bool, v bool) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// rotPathCase selects one implementation of rotSeq.
type rotPathCase struct {
	name string
	set  func(t *testing.T)
}

// svdInternal runs the package's thin SVD directly, for the path tests.
type svdInternal struct{}

func (svdInternal) ThinSVD(ctx context.Context, a mat.Matrix) (*mat.Dense, []float64, *mat.Dense, error) {
	r, err := ThinSVD(ctx, a)
	return r.U, r.S, r.VT, err
}

// TestThinSVDRotPaths runs the SVD conformance suite on each rotation path.
func TestThinSVDRotPaths(t *testing.T) {
	for _, p := range rotPaths() {
		t.Run(p.name, func(t *testing.T) {
			p.set(t)
			acceltest.SVDTest(t, svdInternal{}, 1e-12)
		})
	}
}

// TestRotSeq2Fwd checks the fused two-sequence path against rotSeqRef
// applied twice, with B as long as A and one shorter, on every path.
func TestRotSeq2Fwd(t *testing.T) {
	for _, p := range rotPaths() {
		t.Run(p.name, func(t *testing.T) {
			p.set(t)
			rng := rand.New(rand.NewPCG(13, 14))
			for _, w := range []int{1, 16, 31, 32, 33, 64, 70} {
				for _, count := range []int{1, 2, 3, 9, 40} {
					for _, short := range []bool{false, true} {
						cb := count
						if short {
							cb = count - 1
						}
						lda := w + 3
						const guard = 29
						buf := make([]float64, guard+(count+1)*lda+guard)
						for i := range buf {
							buf[i] = math.NaN()
						}
						a := buf[guard : guard+(count+1)*lda]
						for r := 0; r <= count; r++ {
							for i := 0; i < w; i++ {
								a[r*lda+i] = rng.NormFloat64()
							}
						}
						rot := func(n int) []float64 {
							cs := make([]float64, 2*n)
							for k := 0; k < n; k++ {
								th := rng.Float64() * 2 * math.Pi
								cs[2*k], cs[2*k+1] = math.Cos(th), math.Sin(th)
							}
							return cs
						}
						csA, csB := rot(count), rot(cb)
						want := append([]float64(nil), a...)
						rotSeqRef(want, lda, w, csA, false)
						rotSeqRef(want, lda, w, csB, false)
						rotSeq2Fwd(a, lda, w, csA, csB)
						for i := range a {
							if i%lda >= w {
								if !math.IsNaN(a[i]) {
									t.Fatalf("w=%d count=%d short=%v: wrote into the gap", w, count, short)
								}
								continue
							}
							if d := math.Abs(a[i] - want[i]); d > 1e-13*(1+math.Abs(want[i])) {
								t.Fatalf("w=%d count=%d short=%v: entry %d = %v, want %v", w, count, short, i, a[i], want[i])
							}
						}
						for i := 0; i < guard; i++ {
							if !math.IsNaN(buf[i]) || !math.IsNaN(buf[len(buf)-1-i]) {
								t.Fatalf("w=%d count=%d: guard band modified", w, count)
							}
						}
					}
				}
			}
		})
	}
}
