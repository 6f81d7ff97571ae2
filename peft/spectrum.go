package peft

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/accel"
	"gonum.org/v1/gonum/mat"
)

// This file is the single place where the numbers behind a singular-value
// spectrum chart are computed: cumulative energy, effective, stable and
// numerical rank, and the elbow. viz draws them and never recomputes them.

// Spectrum holds the singular values σ₁ ≥ σ₂ ≥ … ≥ σₙ ≥ 0 of a matrix
// (a weight W, an update ΔW, a gradient G).
type Spectrum struct {
	Name string    // label for charts ("W", "ΔW", "blocks.0.attn.q"); may be ""
	S    []float64 // singular values, descending, all finite and ≥ 0
	// Rows and Cols are the shape of the matrix the values came from (0 when
	// unknown, as for SpectrumOf). NumericalRank's default tolerance and
	// the ESD's Marchenko–Pastur comparison use them.
	Rows, Cols int
}

// NewSpectrum returns the singular values of a (m×n), descending.
// It returns an error when a is empty or holds NaN or ±Inf, or when ctx is
// cancelled.
func NewSpectrum(ctx context.Context, a mat.Matrix) (*Spectrum, error) {
	m, n := a.Dims()
	if m == 0 || n == 0 {
		return nil, fmt.Errorf("peft: NewSpectrum: matrix is empty (%d×%d)", m, n)
	}
	if err := checkFiniteMatrix("NewSpectrum", "matrix", a); err != nil {
		return nil, err
	}
	s, err := singularValues(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("peft: NewSpectrum %s: %w", ShapeOf(m, n), err)
	}
	for i := range s { // clamp tiny negative round-off
		if s[i] < 0 {
			s[i] = 0
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	return &Spectrum{S: s, Rows: m, Cols: n}, nil
}

// SpectrumOf wraps singular values computed elsewhere. They are copied and
// sorted descending. It returns an error when s is empty or holds NaN, ±Inf
// or a negative value (a singular value is never negative).
func SpectrumOf(s []float64) (*Spectrum, error) {
	if len(s) == 0 {
		return nil, fmt.Errorf("peft: SpectrumOf: no singular values (empty slice)")
	}
	for i, v := range s {
		switch {
		case math.IsNaN(v):
			return nil, fmt.Errorf("peft: SpectrumOf: singular value %d is NaN", i)
		case math.IsInf(v, 0):
			return nil, fmt.Errorf("peft: SpectrumOf: singular value %d is %v", i, v)
		case v < 0:
			return nil, fmt.Errorf("peft: SpectrumOf: singular value %d is negative (%g)", i, v)
		}
	}
	c := append([]float64(nil), s...)
	sort.Sort(sort.Reverse(sort.Float64Slice(c)))
	return &Spectrum{S: c}, nil
}

// Len returns the number of singular values.
func (s *Spectrum) Len() int { return len(s.S) }

// Energy returns the cumulative energy e_k = Σ_{i≤k} σ_i² / Σ_i σ_i² for
// k = 1…n (e[k-1] is the share of ‖A‖²_F kept by the best rank-k
// approximation; e[n-1] = 1). For the zero matrix every e_k is 0.
func (s *Spectrum) Energy() []float64 {
	e := make([]float64, len(s.S))
	var total float64
	for _, v := range s.S {
		total += v * v
	}
	if total == 0 {
		return e
	}
	var acc float64
	for i, v := range s.S {
		acc += v * v
		e[i] = acc / total
	}
	e[len(e)-1] = 1 // exact, whatever the rounding
	return e
}

// RankForEnergy returns the smallest k such that the best rank-k
// approximation keeps at least the fraction f of the energy, f in (0, 1]
// (0.9 for 90 %). It returns 0 for the zero matrix. A fraction outside
// (0, 1] panics with an ArgError.
func (s *Spectrum) RankForEnergy(f float64) int {
	if !(f > 0 && f <= 1) {
		panic(ArgError{Op: "Spectrum.RankForEnergy", Msg: fmt.Sprintf("energy fraction %v is outside (0, 1]", f)})
	}
	e := s.Energy()
	if len(e) == 0 || e[len(e)-1] == 0 {
		return 0
	}
	const slack = 1e-12 // so that f = 0.5 of an exactly half-split spectrum is rank 1
	for k, v := range e {
		if v >= f-slack {
			return k + 1
		}
	}
	return len(e)
}

// EffectiveRank returns the entropy effective rank of Roy & Vetterli
// (2007, "The effective rank: a measure of effective dimensionality"):
//
//	p_i = σ_i / Σ_j σ_j,   erank = exp(−Σ_i p_i·ln p_i)   (0·ln 0 = 0)
//
// It lies in [1, rank(A)]: k equal nonzero values give exactly k. It is 0 for
// the zero matrix.
func (s *Spectrum) EffectiveRank() float64 {
	var l1 float64
	for _, v := range s.S {
		l1 += v
	}
	if l1 == 0 {
		return 0
	}
	var h float64
	for _, v := range s.S {
		if v > 0 {
			p := v / l1
			h -= p * math.Log(p)
		}
	}
	return math.Exp(h)
}

// StableRank returns ‖A‖²_F / ‖A‖²₂ = Σσ_i² / σ₁², in [1, rank(A)]; 0 for the
// zero matrix.
func (s *Spectrum) StableRank() float64 {
	if len(s.S) == 0 || s.S[0] == 0 {
		return 0
	}
	var f2 float64
	for _, v := range s.S {
		f2 += v * v
	}
	return f2 / (s.S[0] * s.S[0])
}

// NumericalRank returns the number of singular values greater than tol.
// With tol ≤ 0 it uses LAPACK's default max(m, n)·ε·σ₁ (ε = 2⁻⁵², m×n the
// matrix's shape, or n = len(S) when the shape is unknown).
func (s *Spectrum) NumericalRank(tol float64) int {
	if len(s.S) == 0 {
		return 0
	}
	if tol <= 0 || math.IsNaN(tol) {
		d := max(s.Rows, s.Cols, len(s.S))
		tol = float64(d) * 0x1p-52 * s.S[0]
	}
	k := 0
	for _, v := range s.S {
		if v > tol {
			k++
		}
	}
	return k
}

// Elbow returns the elbow of the spectrum by the rule of maximum distance
// to the chord ("kneedle"): the points (x_i, y_i) = (i/(n−1),
// (σ_i − σ_n)/(σ₁ − σ_n)), i = 0…n−1, are the curve normalized to the unit
// square, and the elbow is the index i (0-based) of the point farthest from
// the straight line through the first and the last point. That index is
// also the number of singular values before the bend: for a spectrum that
// is flat at rank r and then drops to a flat tail, Elbow returns r.
//
// It returns 0 when the curve has no bend: fewer than 3 values, all equal,
// or all on the chord.
func (s *Spectrum) Elbow() int {
	n := len(s.S)
	if n < 3 {
		return 0
	}
	hi, lo := s.S[0], s.S[n-1]
	if hi == lo {
		return 0
	}
	// The chord goes from (0, 1) to (1, 0): the distance of (x, y) to it is
	// |x + y − 1| / √2. Ties go to the first (smallest) index.
	best, at := 0.0, 0
	for i, v := range s.S {
		x := float64(i) / float64(n-1)
		y := (v - lo) / (hi - lo)
		d := math.Abs(x+y-1) / math.Sqrt2
		if d > best+1e-12 {
			best, at = d, i
		}
	}
	return at
}

// checkFiniteMatrix returns an error naming the first NaN or ±Inf entry of a.
func checkFiniteMatrix(op, name string, a mat.Matrix) error {
	m, n := a.Dims()
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			if v := a.At(i, j); math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("peft: %s: %s %s has %v at (%d, %d)", op, name, ShapeOf(m, n), v, i, j)
			}
		}
	}
	return nil
}

// singularValues returns the singular values of a, descending: the one
// place that takes the SVD for spectra (accel's, cancellable).
func singularValues(ctx context.Context, a mat.Matrix) ([]float64, error) {
	return accel.SingularValues(ctx, a)
}
