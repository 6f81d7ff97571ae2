// Package mcomplete is low-rank matrix completion by robust alternating
// minimization: recover a rank-k matrix M (m×n) from a random subset Ω of
// its entries, with least-squares steps that may be solved only
// approximately.
//
// It is an algorithm, not an adapter: nothing here attaches to a model.
// gopeft ships it as a solver primitive and a lab for rank analysis (how
// many observed entries pin down a rank-k matrix), and registers it as
// "RobustAltMin" with Kind HookMethod and no file Format, the registry's
// way of listing a method that has no adapter to save (see init in
// register.go).
package mcomplete

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// LowRank is a rank-k matrix M = U·diag(S)·Vᵀ (m×n) with U (m×k) and V
// (n×k) orthonormal: a ground truth for Complete.
type LowRank struct {
	M *mat.Dense // (m×n)
	U *mat.Dense // (m×k), UᵀU = I
	V *mat.Dense // (n×k), VᵀV = I
	S []float64  // (k) singular values, descending
}

// Generate returns a random incoherent rank-k matrix (m×n): U and V are
// Gaussian matrices orthonormalized (so their row norms concentrate around
// √(k/m) and √(k/n), and the incoherence μ is O(log max(m, n)) with high
// probability, see Incoherence), and the singular values run evenly from
// cond down to 1 (all 1 when cond is 1), so cond is M's condition number.
// The result depends only on the arguments. It panics unless
// 1 ≤ k ≤ min(m, n) and cond ≥ 1.
func Generate(m, n, k int, cond float64, seed int64) *LowRank {
	if k < 1 || k > min(m, n) {
		panic(peft.ArgError{Op: "mcomplete.Generate", Msg: fmt.Sprintf("k = %d out of range for M %s: want 1 ≤ k ≤ %d", k, peft.ShapeOf(m, n), min(m, n))})
	}
	if !(cond >= 1) || math.IsInf(cond, 0) {
		panic(peft.ArgError{Op: "mcomplete.Generate", Msg: fmt.Sprintf("cond = %v; want a finite condition number ≥ 1", cond)})
	}
	rng := rand.New(rand.NewSource(seed))
	gauss := func(r, c int) *mat.Dense {
		d := make([]float64, r*c)
		for i := range d {
			d[i] = rng.NormFloat64()
		}
		return mat.NewDense(r, c, d)
	}
	u, err := orthonormalize(gauss(m, k))
	if err != nil {
		panic(err) // a Gaussian m×k matrix has rank k almost surely
	}
	v, err := orthonormalize(gauss(n, k))
	if err != nil {
		panic(err)
	}
	s := make([]float64, k)
	for i := range s {
		s[i] = cond
		if k > 1 {
			s[i] = cond - (cond-1)*float64(i)/float64(k-1)
		}
	}
	us := mat.DenseCopyOf(u) // U·diag(S) (m×k)
	for j := 0; j < k; j++ {
		for i := 0; i < m; i++ {
			us.Set(i, j, us.At(i, j)*s[j])
		}
	}
	var M mat.Dense
	M.Mul(us, v.T())
	return &LowRank{M: &M, U: u, V: v, S: s}
}

// Incoherence returns μ(U) = (m/k)·max_i ‖U_i‖² of an m×k matrix U with
// orthonormal columns (U_i its rows): 1 when every row has the same norm
// √(k/m), up to m/k when U's columns are coordinate vectors. The analyses
// of alternating minimization (Jain, Netrapalli and Sanghavi 2013; Gu et
// al. 2023) need both factors of M incoherent: sample complexity grows
// with μ.
func Incoherence(u mat.Matrix) float64 {
	m, k := u.Dims()
	var worst float64
	for i := 0; i < m; i++ {
		var s float64
		for j := 0; j < k; j++ {
			s += u.At(i, j) * u.At(i, j)
		}
		worst = math.Max(worst, s)
	}
	return float64(m) / float64(k) * worst
}

// Observed is the set Ω of observed entries of an m×n matrix: entry
// (I[t], J[t]) has value Val[t].
type Observed struct {
	M, N int
	I, J []int
	Val  []float64
}

// Observe returns the entries of x each kept independently with
// probability p (Bernoulli sampling), drawn from seed, in row-major order.
// It panics unless p is in (0, 1].
func Observe(x mat.Matrix, p float64, seed int64) *Observed {
	if !(p > 0 && p <= 1) {
		panic(peft.ArgError{Op: "mcomplete.Observe", Msg: fmt.Sprintf("p = %v outside (0, 1]", p)})
	}
	m, n := x.Dims()
	rng := rand.New(rand.NewSource(seed))
	o := &Observed{M: m, N: n}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			if rng.Float64() < p {
				o.I = append(o.I, i)
				o.J = append(o.J, j)
				o.Val = append(o.Val, x.At(i, j))
			}
		}
	}
	return o
}

// Rate returns the observed fraction p̂ = |Ω|/(m·n).
func (o *Observed) Rate() float64 { return float64(len(o.Val)) / float64(o.M*o.N) }

// Dense returns P_Ω(M)/scale (m×n): the observed entries divided by scale,
// zeros elsewhere.
func (o *Observed) Dense(scale float64) *mat.Dense {
	d := mat.NewDense(o.M, o.N, nil)
	for t, v := range o.Val {
		d.Set(o.I[t], o.J[t], v/scale)
	}
	return d
}

// check panics with the first inconsistency in o: a programmer error.
func (o *Observed) check(op string) {
	if o.M < 1 || o.N < 1 || len(o.I) != len(o.Val) || len(o.J) != len(o.Val) {
		panic(peft.ArgError{Op: op, Msg: fmt.Sprintf("Observed of %d×%d with %d rows, %d columns and %d values: want equal lengths and m, n ≥ 1", o.M, o.N, len(o.I), len(o.J), len(o.Val))})
	}
	for t := range o.Val {
		if o.I[t] < 0 || o.I[t] >= o.M || o.J[t] < 0 || o.J[t] >= o.N {
			panic(peft.ArgError{Op: op, Msg: fmt.Sprintf("entry %d at (%d, %d) outside the %d×%d matrix", t, o.I[t], o.J[t], o.M, o.N)})
		}
	}
}

// orthonormalize returns an orthonormal basis Q (r×c) of a's columns by
// modified Gram–Schmidt run twice ("twice is enough", Giraud et al. 2005),
// which keeps QᵀQ = I to rounding for the few columns used here. It is an
// error if a's columns are (numerically) dependent.
func orthonormalize(a *mat.Dense) (*mat.Dense, error) {
	r, c := a.Dims()
	q := mat.DenseCopyOf(a)
	col := make([]float64, r)
	for j := 0; j < c; j++ {
		mat.Col(col, j, q)
		n0 := norm(col)
		for pass := 0; pass < 2; pass++ {
			for i := 0; i < j; i++ {
				var d float64
				for t := 0; t < r; t++ {
					d += q.At(t, i) * col[t]
				}
				for t := 0; t < r; t++ {
					col[t] -= d * q.At(t, i)
				}
			}
		}
		nn := norm(col)
		if nn <= 1e-12*n0 || nn == 0 {
			return nil, fmt.Errorf("mcomplete: column %d of a %s factor is dependent on the ones before it (norm %.3g of %.3g left)", j, peft.ShapeOf(r, c), nn, n0)
		}
		for t := range col {
			col[t] /= nn
		}
		q.SetCol(j, col)
	}
	return q, nil
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// topK returns the top-k left singular vectors (m×k) of a.
func topK(ctx context.Context, a *mat.Dense, k int, seed uint64) (*mat.Dense, error) {
	m, n := a.Dims()
	var svd accel.SVD
	var err error
	if min(m, n) <= 256 {
		svd, err = accel.ThinSVD(ctx, a)
	} else {
		svd, err = accel.TruncatedSVD(ctx, a, k, &accel.TruncatedOptions{PowerIters: 4, Seed: seed})
	}
	if err != nil {
		return nil, err
	}
	return mat.DenseCopyOf(svd.U.Slice(0, m, 0, k)), nil
}
