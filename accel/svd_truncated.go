package accel

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// TruncatedOptions tunes TruncatedSVD. The zero value (or a nil pointer)
// selects the defaults: Oversample 10, PowerIters 2, Seed 0.
type TruncatedOptions struct {
	// Oversample is the number p of extra random directions sampled beyond
	// the rank k (the sketch has l = k + p columns, capped at min(m,n)).
	// Zero selects 10; a negative value selects none.
	Oversample int
	// PowerIters is the number q of subspace (power) iterations, each one a
	// product with Aᵀ and with A, re-orthonormalised. Zero selects 2; a
	// negative value selects none.
	PowerIters int
	// Seed seeds the Gaussian test matrix; the result is a deterministic
	// function of (A, k, options).
	Seed uint64
}

const (
	defaultOversample = 10
	defaultPowerIters = 2
	residualProbes    = 10 // probe vectors for the a-posteriori error bound
)

// TruncatedSVD returns the top k singular triplets of the m×n matrix a
// (U m×k, S k, VT k×n) by the randomized range finder with oversampling and
// subspace iterations of Halko, Martinsson & Tropp (2011, "Finding structure
// with randomness", Algorithms 4.4 and 5.1):
//
//	Ω: n×l Gaussian, l = k+p          Y = A·Ω, Q = orth(Y)               (m×l)
//	q times: Q = orth(A·orth(Aᵀ·Q))                                        (m×l)
//	B = Qᵀ·A (l×n) = Ũ·Σ·VT           U = Q·Ũ[:, :k], S = Σ[:k], VT = VT[:k, :]
//
// It also returns an accuracy estimate in SVD.Residual (see SVD). The result
// follows the sign convention of SVD. k must satisfy 1 ≤ k ≤ min(m,n), or
// TruncatedSVD panics with an SVDArgError. Errors are those of ThinSVD.
func TruncatedSVD(ctx context.Context, a mat.Matrix, k int, opts *TruncatedOptions) (SVD, error) {
	const op = "TruncatedSVD"
	m, n := a.Dims()
	p := min(m, n)
	if k < 1 || k > p {
		panic(SVDArgError{Op: op, M: m, N: n, Msg: fmt.Sprintf("rank k = %d out of range [1, %d]", k, p)})
	}
	var o TruncatedOptions
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Oversample == 0:
		o.Oversample = defaultOversample
	case o.Oversample < 0:
		o.Oversample = 0
	}
	switch {
	case o.PowerIters == 0:
		o.PowerIters = defaultPowerIters
	case o.PowerIters < 0:
		o.PowerIters = 0
	}
	if err := ctx.Err(); err != nil {
		return SVD{}, err
	}
	ad, ok := a.(*mat.Dense)
	if !ok {
		ad = mat.DenseCopyOf(a) // TruncatedSVD only reads A: a *mat.Dense is used in place
	}
	if err := checkFinite(op, ad); err != nil {
		return SVD{}, err
	}
	l := min(k+o.Oversample, p)
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))

	// Range finder: Q (m×l) with orthonormal columns spanning A·Ω.
	omega := gaussian(rng, n, l)
	q := mat.NewDense(m, l, nil)
	svdGemm(false, false, 1, ad, omega, 0, q) // Y = A·Ω
	if err := orthonormalize(ctx, q); err != nil {
		return SVD{}, err
	}
	z := mat.NewDense(n, l, nil)
	for it := 0; it < o.PowerIters; it++ {
		if err := ctx.Err(); err != nil {
			return SVD{}, err
		}
		svdGemm(true, false, 1, ad, q, 0, z) // Z = Aᵀ·Q
		if err := orthonormalize(ctx, z); err != nil {
			return SVD{}, err
		}
		svdGemm(false, false, 1, ad, z, 0, q) // Y = A·Z
		if err := orthonormalize(ctx, q); err != nil {
			return SVD{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return SVD{}, err
	}

	// Small SVD: B = Qᵀ·A (l×n) = Ũ·Σ·VT.
	bm := mat.NewDense(l, n, nil)
	svdGemm(true, false, 1, q, ad, 0, bm)
	small, err := svdFast(ctx, op, bm, true)
	if err != nil {
		return SVD{}, err
	}
	u := mat.NewDense(m, k, nil)
	svdGemm(false, false, 1, q, small.U.Slice(0, l, 0, k).(*mat.Dense), 0, u)
	vt := mat.DenseCopyOf(small.VT.Slice(0, k, 0, n))
	r := SVD{U: u, S: append([]float64(nil), small.S[:k]...), VT: vt}
	fixSigns(r.U, r.VT)

	// A-posteriori bound (Halko et al. 2011, eq. 4.3): for a Gaussian probe
	// ω, ‖E‖₂ ≤ 10·√(2/π)·max_i ‖E·ω_i‖ with probability ≥ 1 − 10^-probes.
	// E = A − U·diag(S)·VT.
	probes := min(residualProbes, n)
	w := gaussian(rng, n, probes)
	aw := mat.NewDense(m, probes, nil)
	svdGemm(false, false, 1, ad, w, 0, aw) // A·ω
	vw := mat.NewDense(k, probes, nil)
	svdGemm(false, false, 1, vt, w, 0, vw) // VT·ω
	for i := 0; i < k; i++ {
		row := vw.RawRowView(i)
		for j := range row {
			row[j] *= r.S[i]
		}
	}
	svdGemm(false, false, -1, u, vw, 1, aw) // A·ω − U·S·VT·ω
	worst := 0.0
	for j := 0; j < probes; j++ {
		worst = math.Max(worst, mat.Norm(aw.ColView(j), 2))
	}
	r.Residual = 10 * math.Sqrt(2/math.Pi) * worst
	return r, nil
}

// gaussian returns an r×c matrix of independent standard normal entries.
func gaussian(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// orthonormalize replaces the r×c matrix y (r ≥ c) by a matrix with
// orthonormal columns spanning the same space: CholeskyQR2 (Fukaya,
// Nakatsukasa et al. 2014), i.e. twice Y ← Y·R⁻¹ with RᵀR = YᵀY, all but
// c×c work on accel.Dgemm; when the Gram matrix is too ill-conditioned for
// that (a Cholesky pivot below 1e-10 of its diagonal entry), Householder QR.
func orthonormalize(ctx context.Context, y *mat.Dense) error {
	g := y.RawMatrix()
	r, c := g.Rows, g.Cols
	gram := make([]float64, c*c)
	tmp := make([]float64, r*c)
	for pass := 0; pass < 2; pass++ {
		Dgemm(true, false, c, c, r, 1, g.Data, g.Stride, g.Data, g.Stride, 0, gram, c)
		rinv, ok := cholInvUpper(gram, c)
		if !ok {
			return orthonormalizeHouseholder(ctx, g)
		}
		Dgemm(false, false, r, c, c, 1, g.Data, g.Stride, rinv, c, 0, tmp, c)
		for i := 0; i < r; i++ {
			copy(g.Data[i*g.Stride:i*g.Stride+c], tmp[i*c:i*c+c])
		}
	}
	return nil
}

// cholInvUpper factors the c×c symmetric positive definite g = RᵀR and
// returns R⁻¹ (upper triangular, row-major), or false when a pivot falls
// below 1e-10 of its diagonal entry of g (or is not positive).
func cholInvUpper(g []float64, c int) ([]float64, bool) {
	rr := make([]float64, c*c)
	for j := 0; j < c; j++ {
		// R[j][j] = sqrt(g[j][j] − Σ_{k<j} R[k][j]²); R[j][i] for i > j.
		d := g[j*c+j]
		for k := 0; k < j; k++ {
			d -= rr[k*c+j] * rr[k*c+j]
		}
		if !(d > 1e-10*g[j*c+j]) {
			return nil, false
		}
		d = math.Sqrt(d)
		rr[j*c+j] = d
		for i := j + 1; i < c; i++ {
			s := g[j*c+i]
			for k := 0; k < j; k++ {
				s -= rr[k*c+j] * rr[k*c+i]
			}
			rr[j*c+i] = s / d
		}
	}
	// Invert the upper triangular R column by column: R·X = I.
	x := make([]float64, c*c)
	for col := 0; col < c; col++ {
		for i := col; i >= 0; i-- {
			s := 0.0
			if i == col {
				s = 1
			}
			for k := i + 1; k <= col; k++ {
				s -= rr[i*c+k] * x[k*c+col]
			}
			x[i*c+col] = s / rr[i*c+i]
		}
	}
	return x, true
}

// orthonormalizeHouseholder replaces g (r×c, r ≥ c) by the Q factor of its
// thin Householder QR: A = Q·R by geqrfBlocked, then Q = Q·[I; 0].
func orthonormalizeHouseholder(ctx context.Context, g blas64.General) error {
	r, c := g.Rows, g.Cols
	tau := make([]float64, c)
	if err := geqrfBlocked(ctx, r, c, g.Data, g.Stride, tau); err != nil {
		return err
	}
	q := make([]float64, r*c)
	for i := 0; i < c; i++ {
		q[i*c+i] = 1
	}
	h := reflectors{n: r, k: c, a: g.Data, lda: g.Stride, tau: tau}
	if err := h.applyLeft(ctx, q, c, c, false); err != nil {
		return err
	}
	for i := 0; i < r; i++ {
		copy(g.Data[i*g.Stride:i*g.Stride+c], q[i*c:i*c+c])
	}
	return nil
}

// svdGemm computes c = alpha·op(a)·op(b) + beta·c for dense row-major
// matrices, op(x) = xᵀ when the flag is set, on accel's Dgemm.
func svdGemm(tA, tB bool, alpha float64, a, b *mat.Dense, beta float64, c *mat.Dense) {
	ra, rb, rc := a.RawMatrix(), b.RawMatrix(), c.RawMatrix()
	k := ra.Cols
	if tA {
		k = ra.Rows
	}
	Dgemm(tA, tB, rc.Rows, rc.Cols, k, alpha, ra.Data, ra.Stride, rb.Data, rb.Stride, beta, rc.Data, rc.Stride)
}
