package accel

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// gemmPath is one implementation of GEMM: setup selects it for a test.
type gemmPath struct {
	name  string
	setup func(testing.TB)
}

// setDuringTest sets *p = v until the end of the test.
func setDuringTest[V any](t testing.TB, p *V, v V) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// gemmNaive is the reference implementation of GEMM, used only for testing:
// the triple loop from Dgemm's doc comment, summed in float64, with BLAS's
// special cases (beta == 0 does not read C; alpha == 0 or k == 0 does not
// read A or B). It also returns, for each element of C, the bound
// |alpha|·Σ|a||b| + |beta·c| that scales the rounding error.
func gemmNaive[T float32 | float64](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) (scale []float64) {
	scale = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, abs float64
			if alpha != 0 {
				for p := 0; p < k; p++ {
					var x, y T
					if tA {
						x = a[p*lda+i]
					} else {
						x = a[i*lda+p]
					}
					if tB {
						y = b[j*ldb+p]
					} else {
						y = b[p*ldb+j]
					}
					s += float64(x) * float64(y)
					abs += math.Abs(float64(x) * float64(y))
				}
			}
			cij := &c[i*ldc+j]
			var bc float64
			if beta != 0 {
				bc = float64(beta) * float64(*cij)
			}
			*cij = T(float64(alpha)*s + bc)
			scale[i*n+j] = math.Abs(float64(alpha))*abs + math.Abs(bc)
		}
	}
	return scale
}

// guarded is a matrix stored row-major with stride ld inside a slice whose
// other elements (guard bands before and after, and the gaps between rows
// when ld > cols) are NaN, to detect reads and writes outside the matrix.
type guarded[T float32 | float64] struct {
	all              []T // guard, data, guard
	data             []T // the slice handed to GEMM
	rows, cols, ld   int
	guardLen, dataLn int
}

const guardLen = 37

func newGuarded[T float32 | float64](rng *rand.Rand, rows, cols, ld int) *guarded[T] {
	n := 0
	if rows > 0 {
		n = (rows-1)*ld + cols
	}
	g := &guarded[T]{all: make([]T, n+2*guardLen), rows: rows, cols: cols, ld: ld, guardLen: guardLen, dataLn: n}
	nan := T(math.NaN())
	for i := range g.all {
		g.all[i] = nan
	}
	g.data = g.all[guardLen : guardLen+n : guardLen+n]
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			g.data[i*ld+j] = T(rng.Float64()*2 - 1)
		}
	}
	return g
}

// checkGuards reports elements outside the matrix that are no longer NaN.
func (g *guarded[T]) checkGuards(t *testing.T, name string) {
	t.Helper()
	for i, v := range g.all {
		d := i - g.guardLen
		inside := d >= 0 && d < g.dataLn && d%g.ld < g.cols
		if !inside && !math.IsNaN(float64(v)) {
			t.Fatalf("%s: element %d outside the matrix (offset %d from data) was written: %v", name, i, d, v)
		}
	}
}

func (g *guarded[T]) clone() []T { return append([]T(nil), g.all...) }

// sameBits reports whether x and y are identical, NaNs included.
func sameBits[T float32 | float64](x, y []T) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] && !(math.IsNaN(float64(x[i])) && math.IsNaN(float64(y[i]))) {
			return false
		}
	}
	return true
}

// gemmCase is one product to test.
type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta float64
	extra       [3]int // ld - width for A, B, C
	sameAB      bool   // pass one slice as both A and B (needs matching shapes)
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("tA=%t,tB=%t,m=%d,n=%d,k=%d,alpha=%v,beta=%v,ldextra=%v,sameAB=%t",
		tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.extra, tc.sameAB)
}

// runGemmCase runs one case through gemm (Dgemm or Sgemm as currently
// dispatched) and checks it against gemmNaive, the guard bands and the
// read-only inputs.
func runGemmCase[T float32 | float64](t *testing.T, rng *rand.Rand, tc gemmCase, gemm func(tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)) {
	t.Helper()
	ra, ca := tc.m, tc.k
	if tc.tA {
		ra, ca = tc.k, tc.m
	}
	rb, cb := tc.k, tc.n
	if tc.tB {
		rb, cb = tc.n, tc.k
	}
	lda, ldb, ldc := max(1, ca)+tc.extra[0], max(1, cb)+tc.extra[1], max(1, tc.n)+tc.extra[2]
	A := newGuarded[T](rng, ra, ca, lda)
	B := A
	if tc.sameAB {
		if rb != ra || cb != ca {
			t.Fatalf("%v: sameAB needs B stored like A", tc)
		}
		ldb = lda
	} else {
		B = newGuarded[T](rng, rb, cb, ldb)
	}
	C := newGuarded[T](rng, tc.m, tc.n, ldc)
	if tc.beta == 0 {
		// BLAS: C is not read when beta == 0, so NaN in C must not survive.
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j += 3 {
				C.data[i*ldc+j] = T(math.NaN())
			}
		}
	}
	a0, b0 := A.clone(), B.clone()
	want := append([]T(nil), C.data...)
	scale := gemmNaive(tc.tA, tc.tB, tc.m, tc.n, tc.k, T(tc.alpha), A.data, lda, B.data, ldb, T(tc.beta), want, ldc)

	gemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, T(tc.alpha), A.data, lda, B.data, ldb, T(tc.beta), C.data, ldc)

	if !sameBits(A.all, a0) || !sameBits(B.all, b0) {
		t.Fatalf("%v: read-only A or B modified", tc)
	}
	C.checkGuards(t, tc.String())
	var zero T
	eps := 0x1p-52
	if _, ok := any(zero).(float32); ok {
		eps = 0x1p-23
	}
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			got, w := float64(C.data[i*ldc+j]), float64(want[i*ldc+j])
			tol := 2 * float64(tc.k+2) * eps * scale[i*tc.n+j]
			if math.IsNaN(got) || math.Abs(got-w) > tol {
				t.Fatalf("%v: C[%d,%d] = %v, want %v (tol %.3g)", tc, i, j, got, w, tol)
			}
		}
	}
}

var alphaBetas = [][2]float64{{1, 0}, {1, 1}, {-1, 0.5}, {0.5, -1}, {0, 0.5}, {0, 0}, {1, -1}, {-1, 1}, {0.5, 0}, {0, 1}}

// smallGemmCases crosses sizes on both sides of every tile width (mr = 4, 6,
// 14; nr = 4, 8, 16, 32 and the balanced-height splits) with the four
// transpose combinations, rotating alpha, beta and stride padding.
func smallGemmCases() []gemmCase {
	dims := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 23, 28, 29, 31, 32, 33}
	ks := []int{0, 1, 2, 7, 17}
	var cases []gemmCase
	i := 0
	for _, m := range dims {
		for _, n := range dims {
			for _, k := range ks {
				for tr := 0; tr < 4; tr++ {
					ab := alphaBetas[i%len(alphaBetas)]
					cases = append(cases, gemmCase{tA: tr&1 != 0, tB: tr&2 != 0, m: m, n: n, k: k,
						alpha: ab[0], beta: ab[1], extra: [3]int{i % 3, (i / 3) % 3, (i / 9) % 2}})
					i++
				}
			}
		}
	}
	return cases
}

// largeGemmCases cross the cache block sizes (kc = 64 when B is read in
// place, 256, 512; mc = 112, 128, 240; nc = 1024, 2048) and the split across
// goroutines.
func largeGemmCases() []gemmCase {
	var cases []gemmCase
	add := func(m, n, k int) {
		for tr := 0; tr < 4; tr++ {
			ab := alphaBetas[len(cases)%len(alphaBetas)]
			cases = append(cases, gemmCase{tA: tr&1 != 0, tB: tr&2 != 0, m: m, n: n, k: k,
				alpha: ab[0], beta: ab[1], extra: [3]int{tr % 2, 1, tr % 3}})
		}
	}
	add(37, 41, 255)
	add(29, 33, 257)
	add(19, 17, 513)
	add(127, 9, 31)
	add(129, 9, 31)
	add(287, 18, 13)
	add(289, 18, 13)
	add(335, 5, 11)
	add(337, 35, 11)
	add(3, 1025, 5)
	add(5, 2049, 3)
	add(130, 150, 101) // split across goroutines by rows
	add(20, 400, 130)  // by columns
	add(61, 67, 271)   // odd primes across kc, split
	add(41, 37, 515)   // packed, a long depth (TestGemmCacheConfigs crosses each kc)
	add(111, 40, 20)
	add(113, 45, 20) // rows around earlier blockings' mc (TestGemmCacheConfigs crosses each)
	add(239, 20, 10)
	add(241, 21, 10)   // two row blocks, 126 + 115 rows
	add(30, 1030, 9)   // packed B across nc = 1024
	add(200, 40, 600)  // split by rows, B packed together, several depth blocks
	add(200, 30, 600)  // the same with A read in place
	add(900, 1030, 8)  // split by rows across nc
	add(16, 1030, 200) // x·Wᵀ shape: dot products of rows, split across goroutines
	return cases
}

// packingModes selects, for a test, whether small operands are read in place
// (the default) or packed like large ones, so that both code paths run on
// the small sizes that cross the tile widths.
var packingModes = []struct {
	name   string
	direct bool
}{{"small-in-place", true}, {"all-packed", false}}

func TestDgemmPaths(t *testing.T) {
	for _, path := range gemmPaths() {
		for _, mode := range packingModes {
			t.Run(path.name+"/"+mode.name, func(t *testing.T) {
				path.setup(t)
				setDuringTest(t, &useSmallDirect, mode.direct)
				rng := rand.New(rand.NewPCG(1, 2)) // Always the same seed for reproducible results.
				for _, tc := range smallGemmCases() {
					runGemmCase(t, rng, tc, Dgemm)
				}
				threadCounts := []int{1, 2, 3}
				if path.name == "generic" {
					threadCounts = threadCounts[:2] // the slow path: the split is the same code
				}
				for _, threads := range threadCounts {
					prev := SetThreads(threads)
					for _, tc := range largeGemmCases() {
						runGemmCase(t, rng, tc, Dgemm)
					}
					SetThreads(prev)
				}
			})
		}
	}
}

func TestSgemmPaths(t *testing.T) {
	for _, path := range gemmPaths() {
		for _, mode := range packingModes {
			t.Run(path.name+"/"+mode.name, func(t *testing.T) {
				path.setup(t)
				setDuringTest(t, &useSmallDirect, mode.direct)
				rng := rand.New(rand.NewPCG(3, 4))
				for _, tc := range smallGemmCases() {
					runGemmCase(t, rng, tc, Sgemm)
				}
				prev := SetThreads(2)
				defer SetThreads(prev)
				for _, tc := range largeGemmCases() {
					runGemmCase(t, rng, tc, Sgemm)
				}
			})
		}
	}
}

// TestGemmAliasing passes one slice as both A and B (A·Aᵀ and Aᵀ·A), which
// BLAS allows since both are read-only.
func TestGemmAliasing(t *testing.T) {
	for _, path := range gemmPaths() {
		for _, mode := range packingModes {
			t.Run(path.name+"/"+mode.name, func(t *testing.T) {
				path.setup(t)
				setDuringTest(t, &useSmallDirect, mode.direct)
				rng := rand.New(rand.NewPCG(5, 6))
				for _, mk := range [][2]int{{1, 1}, {5, 3}, {15, 17}, {33, 29}, {140, 60}} {
					m, k := mk[0], mk[1]
					// A·Aᵀ: A is m×k, B = A read transposed (n = m).
					runGemmCase(t, rng, gemmCase{tB: true, m: m, n: m, k: k, alpha: 1, beta: 0.5, extra: [3]int{1, 1, 0}, sameAB: true}, Dgemm)
					// Aᵀ·A: A stored k×m... here stored m×k, op(A) = Aᵀ is k×m.
					runGemmCase(t, rng, gemmCase{tA: true, m: k, n: k, k: m, alpha: -1, beta: 0, extra: [3]int{2, 2, 1}, sameAB: true}, Dgemm)
					runGemmCase(t, rng, gemmCase{tB: true, m: m, n: m, k: k, alpha: 1, beta: 1, sameAB: true}, Sgemm)
				}
			})
		}
	}
}

// TestGemmIEEE checks that NaN and Inf propagate as IEEE arithmetic says,
// and BLAS's special cases: beta == 0 discards NaN in C, alpha == 0 does not
// read A or B.
func TestGemmIEEE(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	for _, path := range gemmPaths() {
		t.Run(path.name, func(t *testing.T) {
			path.setup(t)
			for _, n := range []int{3, 20, 40} { // inside one tile and across tiles
				// A has NaN at (1, 0) and +Inf at (2, 1); B is all ones except B[1, 0] = 0.
				a := make([]float64, n*n)
				b := make([]float64, n*n)
				for i := range b {
					b[i] = 1
				}
				a[1*n+0] = nan
				a[2*n+1] = inf
				b[1*n+0] = 0
				c := make([]float64, n*n)
				Dgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
				for j := 0; j < n; j++ {
					if !math.IsNaN(c[1*n+j]) {
						t.Fatalf("n=%d: C[1,%d] = %v, want NaN from A[1,0] = NaN", n, j, c[1*n+j])
					}
				}
				if !math.IsNaN(c[2*n+0]) {
					t.Fatalf("n=%d: C[2,0] = %v, want NaN from Inf·0", n, c[2*n])
				}
				for j := 1; j < n; j++ {
					if !math.IsInf(c[2*n+j], 1) {
						t.Fatalf("n=%d: C[2,%d] = %v, want +Inf", n, j, c[2*n+j])
					}
				}
				if c[0] != 0 || n > 3 && c[n*n-1] != 0 {
					t.Fatalf("n=%d: finite rows changed: %v %v", n, c[0], c[n*n-1])
				}
				// beta == 0: NaN in C is overwritten.
				a2 := make([]float64, n*n)
				for i := range c {
					c[i] = nan
					a2[i] = 1
				}
				Dgemm(false, false, n, n, n, 2, a2, n, b, n, 0, c, n)
				for i, v := range c {
					if math.IsNaN(v) {
						t.Fatalf("n=%d: beta=0 kept NaN from C at %d", n, i)
					}
				}
				// alpha == 0: A and B not read, C = beta·C.
				for i := range c {
					c[i] = float64(i)
				}
				Dgemm(true, true, n, n, n, 0, a, n, b, n, -0.5, c, n)
				for i, v := range c {
					if v != -0.5*float64(i) {
						t.Fatalf("n=%d: alpha=0: C[%d] = %v, want %v", n, i, v, -0.5*float64(i))
					}
				}
				// beta == 1 keeps NaN in C.
				c[5%len(c)] = nan
				Dgemm(false, false, n, n, n, 1, a2, n, b, n, 1, c, n)
				if !math.IsNaN(c[5%len(c)]) {
					t.Fatalf("n=%d: beta=1 lost NaN in C", n)
				}
			}
			// float32 Inf overflow of a finite product.
			big := float32(1e30)
			a := []float32{big, big}
			c := []float32{0}
			Sgemm(false, true, 1, 1, 2, 1, a, 2, a, 2, 0, c, 1)
			if !math.IsInf(float64(c[0]), 1) {
				t.Fatalf("Sgemm overflow: got %v, want +Inf", c[0])
			}
		})
	}
}

// TestGemmBadArgs checks that each bad argument panics with an ArgError
// naming it and its value.
func TestGemmBadArgs(t *testing.T) {
	s := make([]float64, 100)
	type args struct {
		tA, tB                 bool
		m, n, k                int
		a                      []float64
		lda                    int
		b                      []float64
		ldb                    int
		c                      []float64
		ldc                    int
		wantArg, wantInMessage string
	}
	for _, tc := range []args{
		{m: -1, n: 2, k: 2, a: s, lda: 2, b: s, ldb: 2, c: s, ldc: 2, wantArg: "m", wantInMessage: "m = -1"},
		{m: 2, n: -3, k: 2, a: s, lda: 2, b: s, ldb: 3, c: s, ldc: 3, wantArg: "n", wantInMessage: "n = -3"},
		{m: 2, n: 2, k: -1, a: s, lda: 2, b: s, ldb: 2, c: s, ldc: 2, wantArg: "k", wantInMessage: "k = -1"},
		{m: 2, n: 2, k: 3, a: s, lda: 2, b: s, ldb: 2, c: s, ldc: 2, wantArg: "lda", wantInMessage: "lda = 2 < max(1, 3)"},
		{tA: true, m: 4, n: 2, k: 3, a: s, lda: 3, b: s, ldb: 2, c: s, ldc: 2, wantArg: "lda", wantInMessage: "lda = 3 < max(1, 4)"},
		{m: 2, n: 5, k: 3, a: s, lda: 3, b: s, ldb: 4, c: s, ldc: 5, wantArg: "ldb", wantInMessage: "ldb = 4 < max(1, 5)"},
		{tB: true, m: 2, n: 5, k: 3, a: s, lda: 3, b: s, ldb: 2, c: s, ldc: 5, wantArg: "ldb", wantInMessage: "ldb = 2 < max(1, 3)"},
		{m: 2, n: 5, k: 3, a: s, lda: 3, b: s, ldb: 5, c: s, ldc: 4, wantArg: "ldc", wantInMessage: "ldc = 4 < max(1, 5)"},
		{m: 0, n: 0, k: 0, a: nil, lda: 0, b: nil, ldb: 1, c: nil, ldc: 1, wantArg: "lda", wantInMessage: "lda = 0"},
		{m: 4, n: 5, k: 3, a: s[:10], lda: 3, b: s, ldb: 5, c: s, ldc: 5, wantArg: "a", wantInMessage: "len(a) = 10 < 12"},
		{m: 4, n: 5, k: 3, a: s, lda: 3, b: s[:14], ldb: 5, c: s, ldc: 5, wantArg: "b", wantInMessage: "len(b) = 14 < 15"},
		{tB: true, m: 4, n: 5, k: 3, a: s, lda: 3, b: s[:14], ldb: 3, c: s, ldc: 5, wantArg: "b", wantInMessage: "len(b) = 14 < 15"},
		{m: 4, n: 5, k: 3, a: s, lda: 3, b: s, ldb: 5, c: s[:20], ldc: 6, wantArg: "c", wantInMessage: "len(c) = 20 < 23"},
		{m: 4, n: 5, k: 0, a: nil, lda: 1, b: nil, ldb: 5, c: s[:19], ldc: 5, wantArg: "c", wantInMessage: "len(c) = 19 < 20"},
	} {
		for _, fn := range []string{"Dgemm", "Sgemm"} {
			err := catch(func() {
				if fn == "Dgemm" {
					Dgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1, tc.a, tc.lda, tc.b, tc.ldb, 0, tc.c, tc.ldc)
					return
				}
				f32 := func(x []float64) []float32 { return make([]float32, len(x)) }
				Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1, f32(tc.a), tc.lda, f32(tc.b), tc.ldb, 0, f32(tc.c), tc.ldc)
			})
			var ae ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("%s %+v: got %v, want an ArgError panic", fn, tc, err)
			}
			if ae.Func != fn || ae.Arg != tc.wantArg || !strings.Contains(ae.Error(), tc.wantInMessage) || !strings.HasPrefix(ae.Error(), "accel: ") {
				t.Fatalf("%s: got %q (arg %q), want arg %q and %q", fn, ae.Error(), ae.Arg, tc.wantArg, tc.wantInMessage)
			}
		}
	}
	// k == 0 with short A and B is fine: they are not read.
	c := []float64{1, 2}
	Dgemm(false, false, 1, 2, 0, 1, nil, 1, nil, 2, 3, c, 2)
	if c[0] != 3 || c[1] != 6 {
		t.Fatalf("k=0: C = %v, want [3 6]", c)
	}
}

// catch runs f and returns what it panicked with, as an error.
func catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
				return
			}
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

func TestSetThreads(t *testing.T) {
	prev := SetThreads(3)
	defer SetThreads(prev)
	if got := Threads(); got != 3 {
		t.Fatalf("Threads() = %d after SetThreads(3)", got)
	}
	if got := SetThreads(0); got != 3 {
		t.Fatalf("SetThreads(0) returned %d, want 3", got)
	}
	if got := Threads(); got < 1 {
		t.Fatalf("Threads() = %d after reset", got)
	}
}

// TestGemmConcurrent runs large products from several goroutines at once:
// one of them gets the worker goroutines, the others run alone, and all
// must agree with the reference (run with -race to check the buffer lists).
func TestGemmConcurrent(t *testing.T) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	const m, n, k = 150, 130, 100
	rng := rand.New(rand.NewPCG(13, 14))
	a, b := randSlice[float64](rng, m*k), randSlice[float64](rng, k*n)
	want := make([]float64, m*n)
	scale := gemmNaive(false, false, m, n, k, 1, a, k, b, n, 0, want, n)
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			c := make([]float64, m*n)
			for rep := 0; rep < 5; rep++ {
				Dgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
				for i := range c {
					if math.Abs(c[i]-want[i]) > 1e-13*float64(k)*scale[i] {
						errs <- fmt.Errorf("goroutine %d: C[%d] = %v, want %v", g, i, c[i], want[i])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
