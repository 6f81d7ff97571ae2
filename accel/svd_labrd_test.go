package accel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/lapack"
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

// TestLarftGram checks the Gram-matrix form of dlarft against gonum's
// Dlarft and against the product of the reflectors themselves:
// I − V·T·Vᵀ = H_0·H_1·…·H_{kb−1} with H_j = I − τ_j·v_j·v_jᵀ.
func TestLarftGram(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sz := range [][2]int{{1, 1}, {7, 3}, {50, 17}, {200, 64}} {
		r, kb := sz[0], sz[1]
		v := make([]float64, r*kb)
		tau := make([]float64, kb)
		for j := 0; j < kb; j++ {
			for p := 0; p < r; p++ {
				switch {
				case p == j:
					v[p*kb+j] = 1
				case p > j:
					v[p*kb+j] = rng.NormFloat64()
				}
			}
			tau[j] = 2 / (1 + rng.Float64()) // in (1, 2], as a reflector's
		}
		if kb > 2 {
			tau[1] = 0 // an identity reflector
		}
		got := make([]float64, kb*kb)
		larftGram(r, kb, v, tau, got, make([]float64, kb*kb))
		want := make([]float64, kb*kb)
		gonum.Implementation{}.Dlarft(lapack.Forward, lapack.ColumnWise, r, kb, v, kb, tau, want, kb)
		for i := range want {
			if d := math.Abs(got[i] - want[i]); d > 1e-12*(1+math.Abs(want[i])) {
				t.Fatalf("%d×%d: T[%d, %d] = %g, gonum's Dlarft %g", r, kb, i/kb, i%kb, got[i], want[i])
			}
		}
		// H = I − V·T·Vᵀ against the product of the reflectors, applied to
		// a random vector.
		x := make([]float64, r)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		y := slices.Clone(x) // H_0·…·H_{kb−1}·x: the last reflector first
		for j := kb - 1; j >= 0; j-- {
			var s float64
			for p := 0; p < r; p++ {
				s += v[p*kb+j] * y[p]
			}
			for p := 0; p < r; p++ {
				y[p] -= tau[j] * s * v[p*kb+j]
			}
		}
		vx := make([]float64, kb) // Vᵀx, then T·Vᵀx
		for j := 0; j < kb; j++ {
			for p := 0; p < r; p++ {
				vx[j] += v[p*kb+j] * x[p]
			}
		}
		tvx := make([]float64, kb)
		for a := 0; a < kb; a++ {
			for b := 0; b < kb; b++ {
				tvx[a] += got[a*kb+b] * vx[b]
			}
		}
		for p := 0; p < r; p++ {
			var s float64
			for j := 0; j < kb; j++ {
				s += v[p*kb+j] * tvx[j]
			}
			if d := math.Abs(x[p] - s - y[p]); d > 1e-10*(1+math.Abs(y[p])) {
				t.Fatalf("%d×%d: (I − V·T·Vᵀ)·x [%d] = %g, the reflectors give %g", r, kb, p, x[p]-s, y[p])
			}
		}
	}
}

// TestGeqr2 checks the panel QR against gonum's Dgeqr2 on the same input:
// R, the reflectors and tau, for tall, square and wide panels, and a stride
// wider than the panel.
func TestGeqr2(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sz := range [][2]int{{1, 1}, {5, 1}, {9, 4}, {64, 64}, {300, 64}, {40, 50}} {
		m, n := sz[0], sz[1]
		lda := n + 3
		a := make([]float64, m*lda)
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		want, wantTau := slices.Clone(a), make([]float64, min(m, n))
		gonum.Implementation{}.Dgeqr2(m, n, want, lda, wantTau, make([]float64, n))
		got, gotTau := slices.Clone(a), make([]float64, min(m, n))
		geqr2(m, n, got, lda, gotTau, make([]float64, m), make([]float64, n))
		for i := range want {
			if i%lda >= n {
				if got[i] != a[i] {
					t.Fatalf("%d×%d: wrote outside the panel at %d", m, n, i)
				}
				continue
			}
			if d := math.Abs(got[i] - want[i]); d > 1e-11*(1+math.Abs(want[i])) {
				t.Fatalf("%d×%d: a[%d, %d] = %g, gonum's Dgeqr2 %g", m, n, i/lda, i%lda, got[i], want[i])
			}
		}
		for j := range wantTau {
			if d := math.Abs(gotTau[j] - wantTau[j]); d > 1e-12 {
				t.Fatalf("%d×%d: tau[%d] = %g, gonum's %g", m, n, j, gotTau[j], wantTau[j])
			}
		}
	}
}
