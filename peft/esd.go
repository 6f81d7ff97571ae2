package peft

import (
	"context"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// This file computes what an empirical-spectral-density chart shows, in the
// manner of heavy-tailed self-regularization analyses (Martin & Mahoney,
// 2021, "Implicit self-regularization in deep neural networks", JMLR 22):
// the eigenvalues of a weight's correlation matrix, their histogram, a
// power-law fit of their tail and the Marchenko–Pastur law of a random
// matrix of the same shape.

// ESD is the empirical spectral density of a weight W (m×n). With
// N = max(m, n) and M = min(m, n), Lambda holds the M eigenvalues of the
// correlation matrix X = W̃ᵀW̃ / N (M×M), where W̃ is W arranged N×M
// (W or Wᵀ): λ_i = σ_i² / N. (The other N−M eigenvalues of the larger
// Gram matrix are zero and left out.)
type ESD struct {
	Name   string
	Lambda []float64 // descending, ≥ 0
	N, M   int       // N ≥ M: the larger and the smaller dimension of W
}

// NewESD returns the ESD of w. It returns an error when w is empty or not
// finite, or when ctx is cancelled.
func NewESD(ctx context.Context, w mat.Matrix) (*ESD, error) {
	s, err := NewSpectrum(ctx, w)
	if err != nil {
		return nil, err
	}
	return s.ESD()
}

// ESD returns the eigenvalues σ_i²/N of the spectrum's correlation matrix.
// It needs the matrix's shape: a Spectrum from SpectrumOf must have Rows and
// Cols set, with len(S) = min(Rows, Cols).
func (s *Spectrum) ESD() (*ESD, error) {
	if s.Rows <= 0 || s.Cols <= 0 {
		return nil, fmt.Errorf("peft: Spectrum(%q).ESD: the matrix shape is unknown (Rows=%d, Cols=%d); set Rows and Cols", s.Name, s.Rows, s.Cols)
	}
	n, m := max(s.Rows, s.Cols), min(s.Rows, s.Cols)
	if len(s.S) != m {
		return nil, fmt.Errorf("peft: Spectrum(%q).ESD: %d singular values for a %d×%d matrix, want %d", s.Name, len(s.S), s.Rows, s.Cols, m)
	}
	e := &ESD{Name: s.Name, Lambda: make([]float64, m), N: n, M: m}
	for i, v := range s.S {
		e.Lambda[i] = v * v / float64(n)
	}
	return e, nil
}

// Histogram is a density histogram: bin i covers [Edges[i], Edges[i+1]),
// the last bin is closed, and Density[i] = Counts[i] / (total · width_i),
// where total counts every value, so that Σ Density·width is the share of
// values that fell in the bins.
type Histogram struct {
	Edges    []float64 // len(Counts)+1, ascending
	Counts   []int
	Density  []float64
	Excluded int // values left out: ≤ 0 with logarithmic bins
}

// Histogram bins the eigenvalues in bins bins, spaced evenly in λ or, with
// logBins, evenly in log λ (what a log-log chart needs; λ ≤ 0 is then left
// out and counted in Excluded). bins ≤ 0 panics with an ArgError. It
// returns an error when no eigenvalue is left to bin.
func (e *ESD) Histogram(bins int, logBins bool) (*Histogram, error) {
	return HistogramOf(e.Lambda, bins, logBins)
}

// HistogramOf bins x as ESD.Histogram does.
func HistogramOf(x []float64, bins int, logBins bool) (*Histogram, error) {
	if bins <= 0 {
		panic(ArgError{Op: "Histogram", Msg: fmt.Sprintf("bins = %d, want ≥ 1", bins)})
	}
	h := &Histogram{Counts: make([]int, bins), Density: make([]float64, bins)}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("peft: Histogram: value %d is %v", i, v)
		}
		if logBins && v <= 0 {
			h.Excluded++
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if len(x)-h.Excluded == 0 {
		return nil, fmt.Errorf("peft: Histogram: no values to bin (%d given, %d excluded as ≤ 0 on log bins)", len(x), h.Excluded)
	}
	tr, inv := func(v float64) float64 { return v }, func(v float64) float64 { return v }
	if logBins {
		tr, inv = math.Log, math.Exp
	}
	a, b := tr(lo), tr(hi)
	if a == b { // all values equal: one bin of unit width around them
		a, b = a-0.5, b+0.5
	}
	h.Edges = make([]float64, bins+1)
	for i := range h.Edges {
		h.Edges[i] = inv(a + (b-a)*float64(i)/float64(bins))
	}
	for _, v := range x {
		if logBins && v <= 0 {
			continue
		}
		k := int((tr(v) - a) / (b - a) * float64(bins))
		k = min(max(k, 0), bins-1)
		h.Counts[k]++
	}
	for i, c := range h.Counts {
		h.Density[i] = float64(c) / (float64(len(x)) * (h.Edges[i+1] - h.Edges[i]))
	}
	return h, nil
}

// PowerLaw is a power law p(x) ∝ x^(−α) for x ≥ XMin fitted to the tail of a
// sample by maximum likelihood (Clauset, Shalizi & Newman, 2009, "Power-law
// distributions in empirical data", SIAM Review 51(4), eq. 3.1 and §3.3):
//
//	α̂ = 1 + n_tail / Σ_{x_i ≥ xmin} ln(x_i / xmin),   σ(α̂) = (α̂ − 1)/√n_tail
//
// with xmin chosen among the sample's values to minimize the
// Kolmogorov–Smirnov distance between the tail's empirical CDF and the
// fitted CDF 1 − (x/xmin)^(1−α).
type PowerLaw struct {
	Alpha float64 // exponent α of the density
	XMin  float64 // lower bound of the tail
	NTail int     // number of sample values ≥ XMin
	Sigma float64 // standard error of α̂
	KS    float64 // Kolmogorov–Smirnov distance of the fit on the tail
}

// Density returns the fitted density of the tail at x ≥ XMin, normalized
// over the tail: (α−1)/xmin · (x/xmin)^(−α). It is 0 below XMin.
func (p PowerLaw) Density(x float64) float64 {
	if x < p.XMin {
		return 0
	}
	return (p.Alpha - 1) / p.XMin * math.Pow(x/p.XMin, -p.Alpha)
}

// minTail is the smallest tail a power law is fitted to.
const minTail = 5

// FitPowerLaw fits the eigenvalues' tail (see PowerLaw).
func (e *ESD) FitPowerLaw(ctx context.Context) (PowerLaw, error) {
	p, err := FitPowerLaw(ctx, e.Lambda)
	if err != nil {
		return p, fmt.Errorf("ESD(%q): %w", e.Name, err)
	}
	return p, nil
}

// FitPowerLaw fits a power law to the tail of x (see PowerLaw), scanning
// every candidate xmin that leaves at least 5 values in the tail. Values
// ≤ 0 are ignored. It returns an error when x holds NaN or ±Inf, when fewer
// than 5 positive values remain, or when ctx is cancelled.
func FitPowerLaw(ctx context.Context, x []float64) (PowerLaw, error) {
	xs, err := positiveSorted(x)
	if err != nil {
		return PowerLaw{}, err
	}
	n := len(xs)
	// suffix[i] = Σ_{j≥i} ln x_j, so each candidate's α̂ costs O(1).
	suffix := make([]float64, n+1)
	for i := n - 1; i >= 0; i-- {
		suffix[i] = suffix[i+1] + math.Log(xs[i])
	}
	best := PowerLaw{KS: math.Inf(1)}
	for i := 0; i+minTail <= n; i++ {
		if i > 0 && xs[i] == xs[i-1] {
			continue // same xmin as before
		}
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return PowerLaw{}, err
			}
		}
		p, ok := fitTail(xs[i:], suffix[i])
		if ok && p.KS < best.KS {
			best = p
		}
	}
	if math.IsInf(best.KS, 1) {
		return PowerLaw{}, fmt.Errorf("peft: FitPowerLaw: no tail of ≥ %d distinct-enough values to fit", minTail)
	}
	return best, nil
}

// FitPowerLawXMin fits α for the tail x ≥ xmin, with xmin given.
func FitPowerLawXMin(x []float64, xmin float64) (PowerLaw, error) {
	if !(xmin > 0) || math.IsInf(xmin, 0) {
		return PowerLaw{}, fmt.Errorf("peft: FitPowerLawXMin: xmin = %v, want a finite value > 0", xmin)
	}
	xs, err := positiveSorted(x)
	if err != nil {
		return PowerLaw{}, err
	}
	i := sort.SearchFloat64s(xs, xmin)
	tail := xs[i:]
	var sum float64
	for _, v := range tail {
		sum += math.Log(v)
	}
	p, ok := fitTailAt(tail, sum, xmin)
	if !ok {
		return PowerLaw{}, fmt.Errorf("peft: FitPowerLawXMin: %d values ≥ xmin = %g, want ≥ %d not all equal to xmin", len(tail), xmin, minTail)
	}
	return p, nil
}

func positiveSorted(x []float64) ([]float64, error) {
	xs := make([]float64, 0, len(x))
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("peft: FitPowerLaw: value %d is %v", i, v)
		}
		if v > 0 {
			xs = append(xs, v)
		}
	}
	if len(xs) < minTail {
		return nil, fmt.Errorf("peft: FitPowerLaw: %d positive values, want ≥ %d", len(xs), minTail)
	}
	sort.Float64s(xs)
	return xs, nil
}

// fitTail fits the ascending tail whose smallest value is xmin; sumLog is
// Σ ln tail.
func fitTail(tail []float64, sumLog float64) (PowerLaw, bool) {
	return fitTailAt(tail, sumLog, tail[0])
}

func fitTailAt(tail []float64, sumLog, xmin float64) (PowerLaw, bool) {
	k := len(tail)
	if k < minTail {
		return PowerLaw{}, false
	}
	l := sumLog - float64(k)*math.Log(xmin) // Σ ln(x_i/xmin)
	if !(l > 0) {
		return PowerLaw{}, false
	}
	alpha := 1 + float64(k)/l
	// KS distance between the empirical CDF of the tail and 1 − (x/xmin)^(1−α).
	var d float64
	for i, v := range tail {
		f := 1 - math.Pow(v/xmin, 1-alpha)
		d = max(d, math.Abs(float64(i+1)/float64(k)-f), math.Abs(float64(i)/float64(k)-f))
	}
	return PowerLaw{Alpha: alpha, XMin: xmin, NTail: k, Sigma: (alpha - 1) / math.Sqrt(float64(k)), KS: d}, true
}

// MarchenkoPastur is the limit law of the eigenvalues of X = GᵀG/N for an
// N×M matrix G of independent entries with mean 0 and variance Variance
// (σ²), as N, M → ∞ with Q = N/M ≥ 1 fixed (Marchenko & Pastur, 1967):
//
//	λ± = σ²·(1 ± 1/√Q)²
//	ρ(λ) = Q / (2π σ² λ) · √((λ+ − λ)(λ − λ−))   for λ− ≤ λ ≤ λ+, else 0
//
// Its mean is σ². Eigenvalues of a trained weight far above λ+ are the
// correlations that training put there.
type MarchenkoPastur struct {
	Q        float64 // aspect ratio N/M ≥ 1
	Variance float64 // σ² of the entries
}

// NewMarchenkoPastur returns the law for aspect ratio q ≥ 1 and entry
// variance > 0, or an error naming the bad parameter.
func NewMarchenkoPastur(q, variance float64) (MarchenkoPastur, error) {
	if !(q >= 1) || math.IsInf(q, 0) {
		return MarchenkoPastur{}, fmt.Errorf("peft: MarchenkoPastur: aspect ratio Q = %v, want a finite value ≥ 1", q)
	}
	if !(variance > 0) || math.IsInf(variance, 0) {
		return MarchenkoPastur{}, fmt.Errorf("peft: MarchenkoPastur: variance = %v, want a finite value > 0", variance)
	}
	return MarchenkoPastur{Q: q, Variance: variance}, nil
}

// Edges returns the bulk's edges λ− and λ+.
func (mp MarchenkoPastur) Edges() (lo, hi float64) {
	r := 1 / math.Sqrt(mp.Q)
	return mp.Variance * (1 - r) * (1 - r), mp.Variance * (1 + r) * (1 + r)
}

// Density returns ρ(λ).
func (mp MarchenkoPastur) Density(lambda float64) float64 {
	lo, hi := mp.Edges()
	if lambda <= lo || lambda >= hi || lambda <= 0 {
		return 0
	}
	return mp.Q / (2 * math.Pi * mp.Variance * lambda) * math.Sqrt((hi-lambda)*(lambda-lo))
}

// MarchenkoPastur returns the law of a random matrix of the ESD's shape
// (Q = N/M) whose bulk matches W's: the entry variance σ² is chosen so that
// the law's median equals the median eigenvalue,
//
//	σ² = median(λ) / m_Q,   m_Q the median of the law for σ² = 1,
//
// which a few large eigenvalues (the spikes training adds) do not move, as
// they move the mean ‖W‖²_F/(N·M). When the median eigenvalue is 0 (W of
// rank below M/2) it falls back to the mean. It returns an error for the
// zero matrix.
func (e *ESD) MarchenkoPastur() (MarchenkoPastur, error) {
	q := float64(e.N) / float64(e.M)
	l := append([]float64(nil), e.Lambda...)
	sort.Float64s(l)
	var med float64
	if n := len(l); n > 0 {
		med = l[n/2]
		if n%2 == 0 {
			med = (l[n/2-1] + l[n/2]) / 2
		}
	}
	variance := 0.0
	if med > 0 && q >= 1 {
		unit, err := NewMarchenkoPastur(q, 1)
		if err != nil {
			return unit, fmt.Errorf("ESD(%q): %w", e.Name, err)
		}
		variance = med / unit.Quantile(0.5)
	} else {
		for _, v := range l {
			variance += v
		}
		if len(l) > 0 {
			variance /= float64(len(l))
		}
	}
	mp, err := NewMarchenkoPastur(q, variance)
	if err != nil {
		return mp, fmt.Errorf("ESD(%q): %w", e.Name, err)
	}
	return mp, nil
}

// CDF returns P(λ ≤ x) under the law, by Gauss–Chebyshev-like quadrature
// on the substitution λ = λ− + (λ+ − λ−)(1 − cos u)/2, which removes the
// square-root ends (abs. error below 1e-6).
func (mp MarchenkoPastur) CDF(x float64) float64 {
	lo, hi := mp.Edges()
	switch {
	case x <= lo:
		return 0
	case x >= hi:
		return 1
	}
	umax := math.Acos(1 - 2*(x-lo)/(hi-lo)) // u at which λ = x
	const n = 4000
	h := umax / n
	var sum float64
	for i := 0; i < n; i++ {
		u := (float64(i) + 0.5) * h
		l := lo + (hi-lo)*(1-math.Cos(u))/2
		sum += mp.Density(l) * (hi - lo) * math.Sin(u) / 2 * h
	}
	return min(sum, 1)
}

// Quantile returns the x with CDF(x) = p, p in (0, 1), by bisection.
func (mp MarchenkoPastur) Quantile(p float64) float64 {
	lo, hi := mp.Edges()
	a, b := lo, hi
	for i := 0; i < 60 && b-a > 1e-12*hi; i++ {
		m := (a + b) / 2
		if mp.CDF(m) < p {
			a = m
		} else {
			b = m
		}
	}
	return (a + b) / 2
}
