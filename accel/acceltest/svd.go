// Package acceltest holds conformance suites shared by the implementations in
// accel, in the manner of gonum's lapack/testlapack: each suite is a function
// taking a *testing.T, a value with one method, and a tolerance.
package acceltest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// ThinSVDer computes a thin SVD A = U·diag(S)·VT of an m×n matrix, p =
// min(m,n): U m×p, S p, VT p×n. For p = 0 it may return empty matrices.
type ThinSVDer interface {
	ThinSVD(ctx context.Context, a mat.Matrix) (u *mat.Dense, s []float64, vt *mat.Dense, err error)
}

// SingularValueser computes the singular values of a matrix, descending.
type SingularValueser interface {
	SingularValues(ctx context.Context, a mat.Matrix) ([]float64, error)
}

// TruncatedSVDer computes the top k singular triplets of a matrix
// (U m×k, S k, VT k×n) together with an upper bound on ‖A − U·diag(S)·VT‖₂.
type TruncatedSVDer interface {
	TruncatedSVD(ctx context.Context, a mat.Matrix, k int) (u *mat.Dense, s []float64, vt *mat.Dense, bound float64, err error)
}

// SVDCase is one test matrix of the suites.
type SVDCase struct {
	Name string
	A    mat.Matrix
}

// SVDCases returns the matrices of the conformance suite, built from a fixed
// seed: random well-conditioned, rank-deficient, graded (σ from 1 to 1e-12),
// clustered, tall, wide, 1×n, n×1, empty (0×0, 0×n, m×0), all zeros and
// identical columns, at sizes on both sides of common block widths.
func SVDCases() []SVDCase {
	// Always the same seed for reproducible results.
	rng := rand.New(rand.NewPCG(1, 2))
	var cs []SVDCase
	add := func(name string, a mat.Matrix) {
		r, c := a.Dims()
		cs = append(cs, SVDCase{Name: fmt.Sprintf("%s/%dx%d", name, r, c), A: a})
	}
	for _, sz := range [][2]int{{1, 1}, {2, 2}, {3, 2}, {2, 3}, {5, 5}, {17, 17}, {31, 33}, {64, 64}, {65, 65}, {97, 61}, {61, 97}, {130, 129}, {200, 200}} {
		add("random", Gaussian(rng, sz[0], sz[1]))
	}
	for _, sz := range [][2]int{{400, 37}, {37, 400}, {300, 150}, {150, 300}} {
		add("tall-wide", Gaussian(rng, sz[0], sz[1]))
	}
	for _, n := range []int{1, 2, 7, 100} {
		add("row", Gaussian(rng, 1, n))
		add("col", Gaussian(rng, n, 1))
	}
	for _, sz := range [][3]int{{40, 40, 13}, {90, 70, 20}, {70, 90, 1}, {150, 150, 75}} {
		add(fmt.Sprintf("rank%d", sz[2]), LowRank(rng, sz[0], sz[1], sz[2]))
	}
	for _, sz := range [][2]int{{50, 50}, {120, 80}, {80, 120}, {180, 180}} {
		p := min(sz[0], sz[1])
		s := make([]float64, p)
		for i := range s {
			s[i] = math.Pow(10, -12*float64(i)/float64(p-1))
		}
		add("graded", WithSpectrum(rng, sz[0], sz[1], s))
	}
	{
		// Clusters: σ ∈ {3, 2 ± 1e-10·i, 1e-9}, many repeated.
		p := 90
		s := make([]float64, p)
		for i := range s {
			switch {
			case i < 10:
				s[i] = 3
			case i < 70:
				s[i] = 2 + 1e-10*float64(i)
			default:
				s[i] = 1e-9
			}
		}
		add("clustered", WithSpectrum(rng, 100, 90, s))
	}
	add("zeros", mat.NewDense(20, 15, nil))
	add("zeros", mat.NewDense(1, 1, nil))
	id := mat.NewDense(33, 33, nil)
	for i := 0; i < 33; i++ {
		id.Set(i, i, 1)
	}
	add("identity", id)
	{
		m, n := 60, 25
		v := Gaussian(rng, m, 1)
		a := mat.NewDense(m, n, nil)
		for j := 0; j < n; j++ {
			a.Slice(0, m, j, j+1).(*mat.Dense).Copy(v)
		}
		add("identical-columns", a)
	}
	{
		// Tiny and huge scales must not underflow or overflow.
		a := Gaussian(rng, 30, 20)
		a.Scale(1e-300, a)
		add("tiny", a)
		b := Gaussian(rng, 30, 20)
		b.Scale(1e300, b)
		add("huge", b)
	}
	add("empty", Empty{R: 0, C: 0})
	add("empty", Empty{R: 0, C: 5})
	add("empty", Empty{R: 5, C: 0})
	return cs
}

// SVDTest runs impl over SVDCases and checks, for each A (m×n, p = min(m,n)):
//
//	shapes                  U m×p, S p, VT p×n
//	reconstruction          ‖A − U·diag(S)·VT‖_F ≤ tol·‖A‖_F
//	orthogonality           max|UᵀU − I| ≤ tol and max|VT·VTᵀ − I| ≤ tol
//	values                  S non-negative, descending, and |S_i − σ_i| ≤ tol·σ_1
//	                        where σ are gonum's mat.SVD values
//	sign convention         the first entry of largest magnitude of each column of U is ≥ 0
//
// The matrices are at most 400×400, so LAPACK-class backward errors are
// about p·ε ≤ 1e-13; tol = 1e-12 is the intended tolerance.
func SVDTest(t *testing.T, impl ThinSVDer, tol float64) {
	t.Helper()
	for _, c := range SVDCases() {
		t.Run(c.Name, func(t *testing.T) {
			m, n := c.A.Dims()
			p := min(m, n)
			u, s, vt, err := impl.ThinSVD(context.Background(), c.A)
			if err != nil {
				t.Fatalf("ThinSVD: %v", err)
			}
			if len(s) != p {
				t.Fatalf("len(S) = %d, want %d", len(s), p)
			}
			if p == 0 {
				return
			}
			if r, cc := u.Dims(); r != m || cc != p {
				t.Fatalf("U is %d×%d, want %d×%d", r, cc, m, p)
			}
			if r, cc := vt.Dims(); r != p || cc != n {
				t.Fatalf("VT is %d×%d, want %d×%d", r, cc, p, n)
			}
			CheckValues(t, c.A, s, tol)
			if e := Reconstruction(c.A, u, s, vt); e > tol {
				t.Errorf("‖A − UΣVᵀ‖_F/‖A‖_F = %.3g > %.3g", e, tol)
			}
			if e := OrthoCols(u); e > tol {
				t.Errorf("max|UᵀU − I| = %.3g > %.3g", e, tol)
			}
			if e := OrthoCols(vt.T()); e > tol {
				t.Errorf("max|VVᵀ − I| = %.3g > %.3g", e, tol)
			}
			CheckSigns(t, u)
		})
	}
}

// SingularValuesTest checks impl's values on SVDCases against gonum's, as
// SVDTest does (non-negative, descending, |S_i − σ_i| ≤ tol·σ_1), and, when
// ref is not nil, against ref's thin SVD values with the same bound.
func SingularValuesTest(t *testing.T, impl SingularValueser, ref ThinSVDer, tol float64) {
	t.Helper()
	for _, c := range SVDCases() {
		t.Run(c.Name, func(t *testing.T) {
			m, n := c.A.Dims()
			p := min(m, n)
			s, err := impl.SingularValues(context.Background(), c.A)
			if err != nil {
				t.Fatalf("SingularValues: %v", err)
			}
			if len(s) != p {
				t.Fatalf("len(S) = %d, want %d", len(s), p)
			}
			if p == 0 {
				return
			}
			CheckValues(t, c.A, s, tol)
			if ref == nil {
				return
			}
			_, rs, _, err := ref.ThinSVD(context.Background(), c.A)
			if err != nil {
				t.Fatalf("reference ThinSVD: %v", err)
			}
			for i := range s {
				if d := math.Abs(s[i] - rs[i]); d > tol*rs[0] {
					t.Errorf("S[%d] = %.17g, ThinSVD's %.17g: |diff| = %.3g > tol·σ₁", i, s[i], rs[i], d)
				}
			}
		})
	}
}

// TruncatedCase is a matrix with a known, decaying spectrum for the
// truncated suite.
type TruncatedCase struct {
	Name  string
	A     *mat.Dense
	Sigma []float64 // the exact singular values of A, descending
	K     int
}

// TruncatedCases returns matrices with decaying spectra (geometric 0.9^i and
// 0.5^i, polynomial 1/(i+1)², and a gap after k) and the rank k to ask for.
func TruncatedCases() []TruncatedCase {
	rng := rand.New(rand.NewPCG(3, 4))
	var cs []TruncatedCase
	add := func(name string, m, n, k int, f func(i int) float64) {
		p := min(m, n)
		s := make([]float64, p)
		for i := range s {
			s[i] = f(i)
		}
		cs = append(cs, TruncatedCase{Name: fmt.Sprintf("%s/%dx%d/k=%d", name, m, n, k), A: WithSpectrum(rng, m, n, s), Sigma: s, K: k})
	}
	add("geom0.5", 300, 120, 10, func(i int) float64 { return math.Pow(0.5, float64(i)) })
	add("geom0.9", 200, 250, 16, func(i int) float64 { return math.Pow(0.9, float64(i)) })
	add("poly2", 256, 128, 8, func(i int) float64 { return 1 / float64((i+1)*(i+1)) })
	add("gap", 150, 150, 5, func(i int) float64 {
		if i < 5 {
			return 10 - float64(i)
		}
		return 1e-3 / float64(i)
	})
	add("full-rank-k", 40, 30, 30, func(i int) float64 { return 1 / float64(i+1) })
	return cs
}

// TruncatedTest runs impl over TruncatedCases and checks: shapes (U m×k,
// S k, VT k×n); orthonormal columns of U and rows of VT (max|·−I| ≤ tol);
// S descending and non-negative, with σ_i − bound ≤ S_i ≤ σ_i(1 + tol) (the
// bound is the method's stated a-posteriori bound); the bound itself at least
// the true ‖A − U·diag(S)·VT‖₂; and each relative error |S_i − σ_i|/σ_i at
// most relTol.
func TruncatedTest(t *testing.T, impl TruncatedSVDer, tol, relTol float64) {
	t.Helper()
	for _, c := range TruncatedCases() {
		t.Run(c.Name, func(t *testing.T) {
			m, n := c.A.Dims()
			u, s, vt, bound, err := impl.TruncatedSVD(context.Background(), c.A, c.K)
			if err != nil {
				t.Fatalf("TruncatedSVD: %v", err)
			}
			if len(s) != c.K {
				t.Fatalf("len(S) = %d, want %d", len(s), c.K)
			}
			if r, cc := u.Dims(); r != m || cc != c.K {
				t.Fatalf("U is %d×%d, want %d×%d", r, cc, m, c.K)
			}
			if r, cc := vt.Dims(); r != c.K || cc != n {
				t.Fatalf("VT is %d×%d, want %d×%d", r, cc, c.K, n)
			}
			if e := OrthoCols(u); e > tol {
				t.Errorf("max|UᵀU − I| = %.3g > %.3g", e, tol)
			}
			if e := OrthoCols(vt.T()); e > tol {
				t.Errorf("max|VVᵀ − I| = %.3g > %.3g", e, tol)
			}
			for i := range s {
				if s[i] < 0 || (i > 0 && s[i] > s[i-1]) {
					t.Fatalf("S not non-negative descending at %d: %v", i, s)
				}
				if s[i] > c.Sigma[i]*(1+tol) || s[i] < c.Sigma[i]-bound {
					t.Errorf("S[%d] = %.17g outside [σ−bound, σ(1+tol)] = [%.17g, %.17g]", i, s[i], c.Sigma[i]-bound, c.Sigma[i]*(1+tol))
				}
				if rel := math.Abs(s[i]-c.Sigma[i]) / c.Sigma[i]; rel > relTol {
					t.Errorf("relative error of S[%d] = %.3g > %.3g", i, rel, relTol)
				}
			}
			// The true spectral norm of the residual.
			res := mat.DenseCopyOf(c.A)
			us := mat.DenseCopyOf(u)
			for j := 0; j < c.K; j++ {
				for i := 0; i < m; i++ {
					us.Set(i, j, us.At(i, j)*s[j])
				}
			}
			var usv mat.Dense
			usv.Mul(us, vt)
			res.Sub(res, &usv)
			truth := spectralNorm(res)
			if truth > bound*(1+1e-12) {
				t.Errorf("stated bound %.3g below the true ‖A − UΣVᵀ‖₂ = %.3g", bound, truth)
			}
			if truth < c.Sigma[min(c.K, len(c.Sigma)-1)]*(1-1e-8) && c.K < len(c.Sigma) {
				t.Errorf("‖A − UΣVᵀ‖₂ = %.3g below σ_{k+1} = %.3g: impossible", truth, c.Sigma[c.K])
			}
			CheckSigns(t, u)
		})
	}
}

// spectralNorm returns ‖a‖₂, the largest singular value (gonum's SVD).
func spectralNorm(a mat.Matrix) float64 {
	var f mat.SVD
	if !f.Factorize(a, mat.SVDNone) {
		panic("acceltest: gonum's SVD did not converge")
	}
	return f.Values(nil)[0]
}

// CheckValues checks that s is non-negative and descending and within
// tol·σ₁ of gonum's singular values of a.
func CheckValues(t *testing.T, a mat.Matrix, s []float64, tol float64) {
	t.Helper()
	for i, v := range s {
		if !(v >= 0) {
			t.Fatalf("S[%d] = %v is not non-negative", i, v)
		}
		if i > 0 && v > s[i-1] {
			t.Fatalf("S not descending: S[%d] = %v > S[%d] = %v", i, v, i-1, s[i-1])
		}
	}
	var f mat.SVD
	if !f.Factorize(a, mat.SVDNone) {
		t.Fatalf("gonum's SVD did not converge")
	}
	want := f.Values(nil)
	for i := range want {
		if d := math.Abs(s[i] - want[i]); d > tol*want[0] {
			t.Errorf("S[%d] = %.17g, gonum's %.17g: |diff| = %.3g > tol·σ₁ = %.3g", i, s[i], want[i], d, tol*want[0])
		}
	}
}

// CheckSigns checks the sign convention: the first entry of largest
// magnitude of each column of u is non-negative.
func CheckSigns(t *testing.T, u mat.Matrix) {
	t.Helper()
	m, p := u.Dims()
	for j := 0; j < p; j++ {
		best, big := 0.0, -1.0
		for i := 0; i < m; i++ {
			if x := u.At(i, j); math.Abs(x) > big {
				big, best = math.Abs(x), x
			}
		}
		if best < 0 {
			t.Errorf("column %d of U: entry of largest magnitude %v is negative", j, best)
			return
		}
	}
}

// Reconstruction returns ‖A − U·diag(S)·VT‖_F / ‖A‖_F (or the absolute
// error when A = 0).
func Reconstruction(a mat.Matrix, u *mat.Dense, s []float64, vt *mat.Dense) float64 {
	m, _ := a.Dims()
	us := mat.DenseCopyOf(u)
	for j := range s {
		for i := 0; i < m; i++ {
			us.Set(i, j, us.At(i, j)*s[j])
		}
	}
	var r mat.Dense
	r.Mul(us, vt)
	r.Sub(a, &r)
	// Scale-safe norms (the suite has 1e±300 matrices).
	na := mat.Norm(a, 2)
	if na == 0 {
		return mat.Norm(&r, 2)
	}
	return mat.Norm(&r, 2) / na
}

// OrthoCols returns max|QᵀQ − I| for the columns of q.
func OrthoCols(q mat.Matrix) float64 {
	_, c := q.Dims()
	var g mat.Dense
	g.Mul(q.T(), q)
	worst := 0.0
	for i := 0; i < c; i++ {
		for j := 0; j < c; j++ {
			want := 0.0
			if i == j {
				want = 1
			}
			worst = math.Max(worst, math.Abs(g.At(i, j)-want))
		}
	}
	return worst
}

// Gaussian returns an r×c matrix of standard normal entries.
func Gaussian(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// LowRank returns an m×n matrix of rank r, the product of Gaussians m×r and r×n.
func LowRank(rng *rand.Rand, m, n, r int) *mat.Dense {
	var a mat.Dense
	a.Mul(Gaussian(rng, m, r), Gaussian(rng, r, n))
	return &a
}

// WithSpectrum returns Q₁·diag(s)·Q₂ᵀ (m×n) for random orthonormal Q₁ (m×p)
// and Q₂ (n×p), p = len(s) = min(m,n).
func WithSpectrum(rng *rand.Rand, m, n int, s []float64) *mat.Dense {
	p := len(s)
	q1 := randomOrthonormal(rng, m, p)
	q2 := randomOrthonormal(rng, n, p)
	for j := 0; j < p; j++ {
		for i := 0; i < m; i++ {
			q1.Set(i, j, q1.At(i, j)*s[j])
		}
	}
	var a mat.Dense
	a.Mul(q1, q2.T())
	return &a
}

// randomOrthonormal returns an r×c matrix (r ≥ c) with orthonormal columns,
// the Q factor of a Gaussian matrix.
func randomOrthonormal(rng *rand.Rand, r, c int) *mat.Dense {
	var qr mat.QR
	qr.Factorize(Gaussian(rng, r, c))
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, r, 0, c))
}

// Empty is a matrix with R rows and C columns where R or C is 0, which
// mat.Dense cannot represent.
type Empty struct{ R, C int }

// Dims returns the dimensions.
func (e Empty) Dims() (int, int) { return e.R, e.C }

// At panics: an empty matrix has no entries.
func (e Empty) At(i, j int) float64 { panic("acceltest: At on an empty matrix") }

// T returns the transpose.
func (e Empty) T() mat.Matrix { return Empty{R: e.C, C: e.R} }

var _ mat.Matrix = Empty{}
