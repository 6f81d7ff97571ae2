package accel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/blas/testblas"
)

// gemvNaive is the reference Dgemv, used only for testing: y = alpha·op(A)·x
// + beta·y summed in float64 loops, y not read when beta == 0. It returns
// the error scale |alpha|·Σ|a||x| + |beta·y| for each element.
func gemvNaive(tA bool, m, n int, alpha float64, a []float64, lda int, x []float64, beta float64, y []float64) []float64 {
	rows, cols := m, n
	if tA {
		rows, cols = n, m
	}
	scale := make([]float64, rows)
	for i := 0; i < rows; i++ {
		var s, abs float64
		for j := 0; j < cols; j++ {
			var aij float64
			if tA {
				aij = a[j*lda+i]
			} else {
				aij = a[i*lda+j]
			}
			s += aij * x[j]
			abs += math.Abs(aij * x[j])
		}
		var by float64
		if beta != 0 {
			by = beta * y[i]
		}
		y[i] = alpha*s + by
		scale[i] = math.Abs(alpha)*abs + math.Abs(by)
	}
	return scale
}

// TestDgemvPaths checks Implementation.Dgemv on every path against
// gemvNaive, at sizes on both sides of the kernel widths (4 rows; 8 and 16
// columns), with guard bands around A, x and y.
func TestDgemvPaths(t *testing.T) {
	dims := []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 100}
	for _, path := range gemmPaths() {
		t.Run(path.name, func(t *testing.T) {
			path.setup(t)
			rng := rand.New(rand.NewPCG(11, 12))
			i := 0
			for _, m := range dims {
				for _, n := range dims {
					for _, tA := range []bool{false, true} {
						ab := alphaBetas[i%len(alphaBetas)]
						i++
						lda := n + i%3
						A := newGuarded[float64](rng, m, n, lda)
						lenX, lenY := n, m
						if tA {
							lenX, lenY = m, n
						}
						X := newGuarded[float64](rng, 1, lenX, lenX)
						Y := newGuarded[float64](rng, 1, lenY, lenY)
						if ab[1] == 0 {
							Y.data[0] = math.NaN() // not read when beta == 0
						}
						a0, x0 := A.clone(), X.clone()
						want := append([]float64(nil), Y.data...)
						scale := gemvNaive(tA, m, n, ab[0], A.data, lda, X.data, ab[1], want)
						tr := blas.NoTrans
						if tA {
							tr = blas.Trans
						}
						Implementation{}.Dgemv(tr, m, n, ab[0], A.data, lda, X.data, 1, ab[1], Y.data, 1)
						name := fmt.Sprintf("tA=%t m=%d n=%d lda=%d alpha=%v beta=%v", tA, m, n, lda, ab[0], ab[1])
						if !sameBits(A.all, a0) || !sameBits(X.all, x0) {
							t.Fatalf("%s: A or x modified", name)
						}
						Y.checkGuards(t, name)
						for j, got := range Y.data {
							tol := 4 * float64(max(m, n)+2) * 0x1p-52 * scale[j]
							if math.IsNaN(got) || math.Abs(got-want[j]) > tol {
								t.Fatalf("%s: y[%d] = %v, want %v", name, j, got, want[j])
							}
						}
					}
				}
			}
		})
	}
}

// TestDgemvParallel checks products large enough to be split across
// goroutines, against the same product on one goroutine and gemvNaive.
func TestDgemvParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, mn := range [][2]int{{700, 301}, {263, 999}} {
		m, n := mn[0], mn[1]
		lda := n + 3
		a := randSlice[float64](rng, (m-1)*lda+n)
		for _, tr := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			lenX, lenY := n, m
			if tr == blas.Trans {
				lenX, lenY = m, n
			}
			x, y0 := randSlice[float64](rng, lenX), randSlice[float64](rng, lenY)
			want := append([]float64(nil), y0...)
			scale := gemvNaive(tr == blas.Trans, m, n, 0.5, a, lda, x, -1, want)
			for _, threads := range []int{1, 2, 3} {
				prev := SetThreads(threads)
				y := append([]float64(nil), y0...)
				Implementation{}.Dgemv(tr, m, n, 0.5, a, lda, x, 1, -1, y, 1)
				SetThreads(prev)
				for i := range y {
					if math.Abs(y[i]-want[i]) > 4*float64(max(m, n))*0x1p-52*scale[i] {
						t.Fatalf("%c m=%d n=%d threads=%d: y[%d] = %v, want %v", tr, m, n, threads, i, y[i], want[i])
					}
				}
			}
		}
	}
}

// TestDgerPaths checks Implementation.Dger on every path against a naive
// loop, at sizes across the kernel widths, with guard bands around A, x and y,
// and with updates large enough to be split across goroutines.
func TestDgerPaths(t *testing.T) {
	dims := []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100}
	big := [][2]int{{700, 301}, {263, 999}}
	for _, path := range gemmPaths() {
		t.Run(path.name, func(t *testing.T) {
			path.setup(t)
			rng := rand.New(rand.NewPCG(17, 18))
			var shapes [][2]int
			for _, m := range dims {
				for _, n := range dims {
					shapes = append(shapes, [2]int{m, n})
				}
			}
			for i, mn := range append(shapes, big...) {
				m, n := mn[0], mn[1]
				alpha := []float64{1, -0.5, 2}[i%3]
				lda := n + i%3
				A := newGuarded[float64](rng, m, n, lda)
				X := newGuarded[float64](rng, 1, m, m)
				Y := newGuarded[float64](rng, 1, n, n)
				x0, y0 := X.clone(), Y.clone()
				want := append([]float64(nil), A.data...)
				for r := 0; r < m; r++ {
					for j := 0; j < n; j++ {
						want[r*lda+j] += alpha * X.data[r] * Y.data[j]
					}
				}
				Implementation{}.Dger(m, n, alpha, X.data, 1, Y.data, 1, A.data, lda)
				name := fmt.Sprintf("m=%d n=%d lda=%d alpha=%v", m, n, lda, alpha)
				if !sameBits(X.all, x0) || !sameBits(Y.all, y0) {
					t.Fatalf("%s: x or y modified", name)
				}
				A.checkGuards(t, name)
				for r := 0; r < m; r++ {
					for j := 0; j < n; j++ {
						got, w := A.data[r*lda+j], want[r*lda+j]
						if math.Abs(got-w) > 1e-15*(math.Abs(w)+4) {
							t.Fatalf("%s: A[%d,%d] = %v, want %v", name, r, j, got, w)
						}
					}
				}
			}
		})
	}
}

// TestImplementationDger runs gonum's Dger conformance test on every path.
func TestImplementationDger(t *testing.T) {
	for _, path := range gemmPaths() {
		t.Run(path.name, func(t *testing.T) {
			path.setup(t)
			testblas.DgerTest(t, Implementation{})
		})
	}
}

// TestImplementationDgemv runs gonum's Dgemv conformance test (which covers
// non-unit and negative increments, delegated to gonum) on every path.
func TestImplementationDgemv(t *testing.T) {
	for _, path := range gemmPaths() {
		t.Run(path.name, func(t *testing.T) {
			path.setup(t)
			testblas.DgemvTest(t, Implementation{})
		})
	}
}

func BenchmarkDger(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, impl := range []string{"accel", "gonum"} {
		for _, n := range []int{64, 256, 1024} {
			b.Run(fmt.Sprintf("%s/n=%d", impl, n), func(b *testing.B) {
				a, x, y := randSlice[float64](rng, n*n), randSlice[float64](rng, n), randSlice[float64](rng, n)
				var bl blas.Float64 = Implementation{}
				if impl == "gonum" {
					bl = gonum.Implementation{}
				}
				benchGemm(b, gemmShape{m: n, n: n, k: 1}, 8, func() { bl.Dger(n, n, 1e-3, x, 1, y, 1, a, n) })
			})
		}
	}
}

func BenchmarkDgemv(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, impl := range []string{"accel", "gonum"} {
		for _, tr := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			for _, n := range []int{64, 256, 1024} {
				b.Run(fmt.Sprintf("%s/%c/n=%d", impl, tr, n), func(b *testing.B) {
					a, x, y := randSlice[float64](rng, n*n), randSlice[float64](rng, n), make([]float64, n)
					var bl blas.Float64 = Implementation{}
					if impl == "gonum" {
						bl = gonum.Implementation{}
					}
					benchGemm(b, gemmShape{m: n, n: 1, k: n}, 8, func() { bl.Dgemv(tr, n, n, 1, a, n, x, 1, 0.5, y, 1) })
				})
			}
		}
	}
}
