package accel

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/lapack/gonum"
	"gonum.org/v1/gonum/mat"
)

// bidiag is a test bidiagonal: d (n), e (n−1+sqre), and its singular values
// when they are known in closed form (descending), else nil.
type bidiag struct {
	name  string
	d, e  []float64
	known []float64
}

// bidiagCases returns the test bidiagonals of order n (n ≥ 8).
func bidiagCases(n int) []bidiag {
	// Always the same seed for reproducible results.
	rng := rand.New(rand.NewPCG(uint64(n), 3))
	randn := func(k int) []float64 {
		x := make([]float64, k)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		return x
	}
	var cs []bidiag
	cs = append(cs, bidiag{name: "random", d: randn(n), e: randn(n - 1)})

	// Diagonal: σ = |d| sorted.
	d := randn(n)
	known := make([]float64, n)
	for i, x := range d {
		known[i] = math.Abs(x)
	}
	cs = append(cs, bidiag{name: "diagonal", d: d, e: make([]float64, n-1), known: desc(known)})

	// Repeated values (every z deflates or pairs up): diagonal 1,1,…,2,2,…,3,…
	d = make([]float64, n)
	for i := range d {
		d[i] = float64(1 + i%3)
	}
	cs = append(cs, bidiag{name: "repeated", d: d, e: make([]float64, n-1), known: desc(slices.Clone(d))})

	// All ones: σ_k = 2·cos(kπ/(2n+1)), k = 1…n (BBᵀ is tridiag(1, 2, 1)
	// with a last diagonal entry 1).
	d, e := make([]float64, n), make([]float64, n-1)
	known = make([]float64, n)
	for i := range d {
		d[i] = 1
		if i < n-1 {
			e[i] = 1
		}
		known[i] = 2 * math.Cos(float64(i+1)*math.Pi/float64(2*n+1))
	}
	cs = append(cs, bidiag{name: "ones", d: d, e: e, known: known})

	// Graded over 12 decades, off-diagonals following.
	d, e = make([]float64, n), make([]float64, n-1)
	for i := range d {
		d[i] = math.Pow(10, -12*float64(i)/float64(n-1))
		if i < n-1 {
			e[i] = 0.5 * d[i] * (1 + rng.Float64())
		}
	}
	cs = append(cs, bidiag{name: "graded", d: d, e: e})

	// Clustered: d = 1 with tiny couplings, values within ~1e-10 of each other.
	d, e = make([]float64, n), make([]float64, n-1)
	for i := range d {
		d[i] = 1 + 1e-12*float64(i%5)
		if i < n-1 {
			e[i] = 1e-10 * rng.Float64()
		}
	}
	cs = append(cs, bidiag{name: "clustered", d: d, e: e})

	// Zeros on both diagonals, including at the split rows.
	d, e = randn(n), randn(n-1)
	for i := 0; i < n; i += 7 {
		d[i] = 0
	}
	for i := 3; i < n-1; i += 5 {
		e[i] = 0
	}
	d[n/2], e[n/2] = 0, 0
	cs = append(cs, bidiag{name: "zeros", d: d, e: e})

	// Tiny entries mixed with O(1) ones.
	d, e = randn(n), randn(n-1)
	for i := 1; i < n; i += 4 {
		d[i] *= 1e-200
	}
	for i := 2; i < n-1; i += 3 {
		e[i] *= 1e-18
	}
	cs = append(cs, bidiag{name: "tiny", d: d, e: e})

	// Wilkinson-like: d_i = |n/2 − i|, e = 1, close pairs of values.
	d, e = make([]float64, n), make([]float64, n-1)
	for i := range d {
		d[i] = math.Abs(float64(n/2 - i))
		if i < n-1 {
			e[i] = 1
		}
	}
	cs = append(cs, bidiag{name: "wilkinson", d: d, e: e})

	// Zero matrix.
	cs = append(cs, bidiag{name: "zero", d: make([]float64, n), e: make([]float64, n-1), known: make([]float64, n)})
	return cs
}

func desc(x []float64) []float64 {
	slices.Sort(x)
	slices.Reverse(x)
	return x
}

// bidiagResidual returns ‖B − U·[diag(s) 0]·Vᵀ‖_F / ‖B‖_F (‖B − …‖_F when
// B = 0) for the n×(n+sqre) bidiagonal (d, e), U n×n, V nc×nc row-major
// with column j pairing with s[j].
func bidiagResidual(d, e, s, u, v []float64, sqre int) float64 {
	n := len(d)
	nc := n + sqre
	var num, den float64
	for i := 0; i < n; i++ {
		for j := 0; j < nc; j++ {
			b := 0.0
			switch j {
			case i:
				b = d[i]
			case i + 1:
				b = e[i]
			}
			sum := 0.0
			for l := 0; l < n; l++ {
				sum += u[i*n+l] * s[l] * v[j*nc+l]
			}
			num += (b - sum) * (b - sum)
			den += b * b
		}
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// orthoErr returns max|XᵀX − I| for the k×k row-major x.
func orthoErr(x []float64, k int) float64 {
	worst := 0.0
	for a := 0; a < k; a++ {
		for b := a; b < k; b++ {
			sum := 0.0
			for r := 0; r < k; r++ {
				sum += x[r*k+a] * x[r*k+b]
			}
			if a == b {
				sum--
			}
			worst = math.Max(worst, math.Abs(sum))
		}
	}
	return worst
}

// TestBdsdc checks the divide-and-conquer bidiagonal SVD on the cases of
// bidiagCases at sizes just above one leaf (33) to several levels (400):
// B = U·Σ·Vᵀ to 1e-13·‖B‖, U and V orthogonal to 1e-15·n, σ equal to the
// QR iteration's and dqds's within 2e-14·σ₁, and the closed form's (when
// known) within 1e-14·σ₁.
func TestBdsdc(t *testing.T) {
	for _, n := range []int{33, 65, 130, 257, 400} {
		for _, c := range bidiagCases(n) {
			t.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(t *testing.T) {
				s := slices.Clone(c.d)
				u := make([]float64, n*n)
				vt := make([]float64, n*n)
				if err := bdsdcVectors(context.Background(), n, s, slices.Clone(c.e), u, n, vt, n); err != nil {
					t.Fatal(err)
				}
				v := make([]float64, n*n)
				for i := 0; i < n; i++ {
					for j := 0; j < n; j++ {
						v[i*n+j] = vt[j*n+i]
					}
				}
				if r := bidiagResidual(c.d, c.e, s, u, v, 0); r > 1e-13 {
					t.Errorf("‖B − UΣVᵀ‖_F/‖B‖_F = %.3g", r)
				}
				if o := orthoErr(u, n); o > 1e-15*float64(n) {
					t.Errorf("max|UᵀU − I| = %.3g", o)
				}
				if o := orthoErr(v, n); o > 1e-15*float64(n) {
					t.Errorf("max|VᵀV − I| = %.3g", o)
				}
				for i := 1; i < n; i++ {
					if s[i] > s[i-1] || s[i] < 0 {
						t.Fatalf("σ not non-negative descending at %d: %g, %g", i, s[i-1], s[i])
					}
				}
				// Against the QR iteration.
				q := slices.Clone(c.d)
				if err := bdsqrVectors(context.Background(), n, q, slices.Clone(c.e), make([]float64, n*n), n, make([]float64, n*n), n); err != nil {
					t.Fatal(err)
				}
				// And against dqds (dlasq1), which has high relative accuracy:
				// on the clustered cases the QR iteration is 1e-14·σ₁ off it and
				// D&C, whose leaves are QR iterations, up to 1.1e-14.
				r := slices.Clone(c.d)
				var impl gonum.Implementation
				if info := impl.Dlasq1(n, r, append(slices.Clone(c.e), 0), make([]float64, 4*n)); info != 0 {
					t.Fatalf("dlasq1: info = %d", info)
				}
				scale := math.Max(q[0], math.SmallestNonzeroFloat64)
				wq, wr := 0.0, 0.0
				for i := range q {
					wq = math.Max(wq, math.Abs(s[i]-q[i])/scale)
					wr = math.Max(wr, math.Abs(s[i]-r[i])/scale)
				}
				if wq > 2e-14 {
					t.Errorf("max|σ(D&C) − σ(QR)|/σ₁ = %.3g", wq)
				}
				if wr > 2e-14 {
					t.Errorf("max|σ(D&C) − σ(dqds)|/σ₁ = %.3g", wr)
				}
				if c.known != nil {
					for i, k := range c.known {
						if math.Abs(s[i]-k) > 1e-14*math.Max(c.known[0], 1e-300) {
							t.Errorf("σ[%d] = %.17g, want %.17g", i, s[i], k)
							break
						}
					}
				}
			})
		}
	}
}

// TestBdsdcRect checks dcSolve on n×(n+1) bidiagonals (the upper halves of
// every split), where the extra column's null vector is part of V.
func TestBdsdcRect(t *testing.T) {
	for _, n := range []int{5, 32, 33, 100, 201} {
		for _, c := range bidiagCases(max(n, 8)) {
			d := c.d[:n]
			e := append(slices.Clone(c.e[:n-1]), 0.75)
			if c.name == "zero" {
				e[n-1] = 0
			}
			t.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(t *testing.T) {
				nd, err := dcSolve(context.Background(), d, e, 1, 2)
				if err != nil {
					t.Fatal(err)
				}
				if r := bidiagResidual(d, e, nd.s, nd.u, nd.v, 1); r > 1e-13 {
					t.Errorf("‖B − U[Σ 0]Vᵀ‖_F/‖B‖_F = %.3g", r)
				}
				if o := orthoErr(nd.u, n); o > 1e-15*float64(n+1) {
					t.Errorf("max|UᵀU − I| = %.3g", o)
				}
				if o := orthoErr(nd.v, n+1); o > 1e-15*float64(n+1) {
					t.Errorf("max|VᵀV − I| = %.3g", o)
				}
			})
		}
	}
}

// TestBdsdcThinSVD runs the whole thin SVD with the divide-and-conquer
// solver on random, ill-conditioned and rank-deficient matrices, square,
// tall (QR first) and wide, at sizes around the crossover, and checks
// A = U·Σ·Vᵀ, orthonormality and σ against the QR path.
func TestBdsdcThinSVD(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	gauss := func(m, n int) *mat.Dense {
		a := mat.NewDense(m, n, nil)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				a.Set(i, j, rng.NormFloat64())
			}
		}
		return a
	}
	// spectrum builds U·diag(s)·Vᵀ from the orthonormal factors of
	// Gaussian matrices.
	spectrum := func(m, n int, s []float64) *mat.Dense {
		var qu, qv mat.QR
		qu.Factorize(gauss(m, len(s)))
		qv.Factorize(gauss(n, len(s)))
		var u, v mat.Dense
		qu.QTo(&u)
		qv.QTo(&v)
		us := mat.DenseCopyOf(u.Slice(0, m, 0, len(s)))
		for j, x := range s {
			for i := 0; i < m; i++ {
				us.Set(i, j, us.At(i, j)*x)
			}
		}
		var a mat.Dense
		a.Mul(us, v.Slice(0, n, 0, len(s)).T())
		return &a
	}
	graded := func(m, n int) *mat.Dense {
		s := make([]float64, min(m, n))
		for i := range s {
			s[i] = math.Pow(10, -14*float64(i)/float64(len(s)-1))
		}
		return spectrum(m, n, s)
	}
	rankDef := func(m, n, r int) *mat.Dense {
		var a mat.Dense
		a.Mul(gauss(m, r), gauss(r, n))
		return &a
	}
	clustered := func(m, n int) *mat.Dense {
		s := make([]float64, min(m, n))
		for i := range s {
			s[i] = 1 + 1e-10*float64(i%3)
			if i%2 == 0 {
				s[i] = 2
			}
		}
		return spectrum(m, n, s)
	}
	cases := []struct {
		name string
		a    *mat.Dense
	}{
		{"random/150x150", gauss(150, 150)},
		{"random/300x300", gauss(300, 300)},
		{"random/520x300", gauss(520, 300)}, // tall: QR first
		{"random/260x330", gauss(260, 330)}, // wide
		{"graded/300x300", graded(300, 300)},
		{"graded/400x260", graded(400, 260)},
		{"rank20/300x300", rankDef(300, 300, 20)},
		{"rank150/350x310", rankDef(350, 310, 150)},
		{"clustered/280x280", clustered(280, 280)},
	}
	old := bdsdcCross
	t.Cleanup(func() { bdsdcCross = old })
	for _, c := range cases {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/threads=%d", c.name, threads), func(t *testing.T) {
				oldT := SetThreads(threads)
				defer SetThreads(oldT)
				bdsdcCross = 1
				dc, err := svdFast(context.Background(), "test", mat.DenseCopyOf(c.a), true)
				if err != nil {
					t.Fatal(err)
				}
				bdsdcCross = math.MaxInt
				qr, err := svdFast(context.Background(), "test", mat.DenseCopyOf(c.a), true)
				if err != nil {
					t.Fatal(err)
				}
				var us, rec mat.Dense
				us.Mul(dc.U, mat.NewDiagDense(len(dc.S), dc.S))
				rec.Mul(&us, dc.VT)
				rec.Sub(&rec, c.a)
				if r := mat.Norm(&rec, 2) / mat.Norm(c.a, 2); r > 1e-13 {
					t.Errorf("‖A − UΣVᵀ‖₂/‖A‖₂ = %.3g", r)
				}
				p := len(dc.S)
				if o := orthoCols(dc.U); o > 1e-15*float64(p) {
					t.Errorf("max|UᵀU − I| = %.3g", o)
				}
				if o := orthoCols(dc.VT.T()); o > 1e-15*float64(p) {
					t.Errorf("max|VVᵀ − I| = %.3g", o)
				}
				worst := 0.0
				for i := range dc.S {
					worst = math.Max(worst, math.Abs(dc.S[i]-qr.S[i])/qr.S[0])
				}
				if worst > 1e-14 {
					t.Errorf("max|σ(D&C) − σ(QR)|/σ₁ = %.3g", worst)
				}
			})
		}
	}
}

// orthoCols returns max|QᵀQ − I|.
func orthoCols(q mat.Matrix) float64 {
	var g mat.Dense
	g.Mul(q.T(), q)
	r, _ := g.Dims()
	worst := 0.0
	for i := 0; i < r; i++ {
		for j := 0; j < r; j++ {
			x := g.At(i, j)
			if i == j {
				x--
			}
			worst = math.Max(worst, math.Abs(x))
		}
	}
	return worst
}
