package accel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/lapack/gonum"
	"gonum.org/v1/gonum/mat"
)

// TestLabrd checks labrd against gonum's Dlabrd (the reference here) on the
// same input: every output, with the products on one goroutine and split.
func TestLabrd(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, threads := range []int{1, 2, 3} {
		for _, sz := range [][3]int{{5, 5, 2}, {40, 33, 8}, {200, 150, 32}, {300, 300, 32}, {257, 129, 17}, {520, 400, 32}} {
			m, n, nb := sz[0], sz[1], sz[2]
			t.Run(fmt.Sprintf("threads=%d/%dx%d/nb=%d", threads, m, n, nb), func(t *testing.T) {
				old := SetThreads(threads)
				defer SetThreads(old)
				a := make([]float64, m*n)
				for i := range a {
					a[i] = rng.NormFloat64()
				}
				type out struct{ a, d, e, tq, tp, x, y []float64 }
				run := func(f func(o out)) out {
					o := out{append([]float64(nil), a...), make([]float64, nb), make([]float64, nb), make([]float64, nb), make([]float64, nb), make([]float64, m*nb), make([]float64, n*nb)}
					f(o)
					return o
				}
				var impl gonum.Implementation
				want := run(func(o out) { impl.Dlabrd(m, n, nb, o.a, n, o.d, o.e, o.tq, o.tp, o.x, nb, o.y, nb) })
				got := run(func(o out) {
					tm := newTeam(threads)
					defer tm.close()
					labrd(tm, m, n, nb, o.a, n, o.d, o.e, o.tq, o.tp, o.x, nb, o.y, nb)
				})
				cmp := func(name string, g, w []float64) {
					for i := range w {
						if math.Abs(g[i]-w[i]) > 1e-12*(1+math.Abs(w[i])) {
							t.Fatalf("%s[%d] = %v, gonum's %v", name, i, g[i], w[i])
						}
					}
				}
				cmp("a", got.a, want.a)
				cmp("d", got.d, want.d)
				cmp("e", got.e[:min(nb, n-1)], want.e[:min(nb, n-1)])
				cmp("tauQ", got.tq, want.tq)
				cmp("tauP", got.tp, want.tp)
				cmp("x", got.x, want.x)
				cmp("y", got.y, want.y)
			})
		}
	}
}

// TestSVDNoConvergence forces the QR iteration to give up and checks that
// ThinSVD reports ErrNoConvergence, naming the shape, instead of an answer.
func TestSVDNoConvergence(t *testing.T) {
	old := bdsqrMaxSweeps
	bdsqrMaxSweeps = 0
	defer func() { bdsqrMaxSweeps = old }()
	rng := rand.New(rand.NewPCG(23, 24))
	a := mat.NewDense(50, 40, nil)
	for i := 0; i < 50; i++ {
		for j := 0; j < 40; j++ {
			a.Set(i, j, rng.NormFloat64())
		}
	}
	r, err := ThinSVD(context.Background(), a)
	if !errors.Is(err, ErrNoConvergence) {
		t.Fatalf("err = %v, want ErrNoConvergence", err)
	}
	if !strings.Contains(err.Error(), "50×40") {
		t.Errorf("error %q does not name the shape 50×40", err)
	}
	if r.U != nil || r.S != nil {
		t.Errorf("returned a result with the error")
	}
}
