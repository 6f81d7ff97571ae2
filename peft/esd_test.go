package peft

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// pareto draws n samples of density (α−1)/xmin·(x/xmin)^(−α) by inverse
// transform.
func pareto(rng *rand.Rand, n int, alpha, xmin float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = xmin * math.Pow(1-rng.Float64(), -1/(alpha-1))
	}
	return x
}

func TestFitPowerLawKnownAlpha(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	for _, alpha := range []float64{2.0, 3.5} {
		x := pareto(rng, 1500, alpha, 1)
		p, err := FitPowerLawXMin(x, 1)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(p.Alpha-alpha) > 3*p.Sigma || p.NTail != 1500 {
			t.Errorf("α=%v, xmin known: α̂ = %.4f ± %.4f over %d", alpha, p.Alpha, p.Sigma, p.NTail)
		}
		// A uniform bulk below xmin = 1 must be cut off by the KS scan.
		bulk := make([]float64, 800)
		for i := range bulk {
			bulk[i] = 0.05 + 0.9*rng.Float64()
		}
		q, err := FitPowerLaw(ctx, append(bulk, x...))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(q.Alpha-alpha) > 4*q.Sigma || q.XMin < 0.95 || q.XMin > 3 {
			t.Errorf("α=%v with bulk: α̂ = %.4f ± %.4f, xmin = %.3f (want in [0.95, 3]: above the bulk), n_tail = %d, KS %.4f", alpha, q.Alpha, q.Sigma, q.XMin, q.NTail, q.KS)
		}
		t.Logf("α=%v: α̂ = %.4f ± %.4f, xmin %.3f, tail %d, KS %.4f", alpha, q.Alpha, q.Sigma, q.XMin, q.NTail, q.KS)
	}
	// The fitted density integrates to 1 over the tail.
	p := PowerLaw{Alpha: 2.5, XMin: 2}
	var sum float64
	for x, h := 2.0, 1e-3; x < 2e4; x += h {
		sum += p.Density(x+h/2) * h
		h = x * 1e-3
	}
	if math.Abs(sum-1) > 2e-3 {
		t.Errorf("∫ PowerLaw.Density = %v, want 1", sum)
	}
}

func TestFitPowerLawBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := FitPowerLaw(ctx, []float64{1, 2, math.NaN(), 4, 5, 6}); err == nil || !strings.Contains(err.Error(), "value 2 is NaN") {
		t.Errorf("NaN: %v", err)
	}
	if _, err := FitPowerLaw(ctx, []float64{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "3 positive values") {
		t.Errorf("too few: %v", err)
	}
	if _, err := FitPowerLaw(ctx, []float64{2, 2, 2, 2, 2, 2}); err == nil {
		t.Error("all equal values: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := FitPowerLaw(cctx, pareto(rand.New(rand.NewPCG(1, 1)), 100, 3, 1)); err == nil {
		t.Error("cancelled context: no error")
	}
}

func TestMarchenkoPasturLaw(t *testing.T) {
	for _, q := range []float64{1.5, 4} {
		mp, err := NewMarchenkoPastur(q, 0.7)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := mp.Edges()
		if w := 0.7 * math.Pow(1-1/math.Sqrt(q), 2); math.Abs(lo-w) > 1e-15 {
			t.Errorf("λ− = %v, want %v", lo, w)
		}
		// Mass 1 and mean σ² (midpoint rule with a substitution that tames
		// the square-root ends: λ = lo + (hi−lo)(1−cos u)/2).
		var mass, mean float64
		const n = 20000
		for i := 0; i < n; i++ {
			u := math.Pi * (float64(i) + 0.5) / n
			l := lo + (hi-lo)*(1-math.Cos(u))/2
			dl := (hi - lo) * math.Sin(u) / 2 * math.Pi / n
			mass += mp.Density(l) * dl
			mean += l * mp.Density(l) * dl
		}
		if math.Abs(mass-1) > 1e-6 || math.Abs(mean-0.7) > 1e-6 {
			t.Errorf("Q=%v: mass %v (want 1), mean %v (want 0.7)", q, mass, mean)
		}
	}
	for _, c := range []struct{ q, v float64 }{{0.5, 1}, {2, 0}, {math.NaN(), 1}, {2, math.Inf(1)}} {
		if _, err := NewMarchenkoPastur(c.q, c.v); err == nil {
			t.Errorf("NewMarchenkoPastur(%v, %v): no error", c.q, c.v)
		}
	}
}

// A Gaussian matrix's ESD follows Marchenko–Pastur: its eigenvalues lie in
// the bulk (up to finite-size fluctuation) and its empirical CDF is close
// to the law's.
func TestESDOfRandomMatrixIsMarchenkoPastur(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, m, sd = 400, 100, 0.3
	w := mat.NewDense(m, n, nil) // wide: ESD must use N = 400, M = 100
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			w.Set(i, j, sd*rng.NormFloat64())
		}
	}
	e, err := NewESD(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if e.N != n || e.M != m || len(e.Lambda) != m {
		t.Fatalf("ESD shape N=%d M=%d len=%d", e.N, e.M, len(e.Lambda))
	}
	mp, err := e.MarchenkoPastur()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(mp.Variance-sd*sd) > 0.05*sd*sd || mp.Q != 4 {
		t.Errorf("MP fit: variance %v (want ≈ %v), Q %v", mp.Variance, sd*sd, mp.Q)
	}
	lo, hi := mp.Edges()
	if e.Lambda[0] > hi*1.1 || e.Lambda[m-1] < lo*0.9 {
		t.Errorf("eigenvalues [%v, %v] outside the bulk [%v, %v]", e.Lambda[m-1], e.Lambda[0], lo, hi)
	}
	// KS distance between the eigenvalues' CDF and MP's CDF (integrated
	// numerically).
	l := append([]float64(nil), e.Lambda...)
	sort.Float64s(l)
	var ks float64
	for i, x := range l {
		var cdf float64
		const steps = 4000
		for k := 0; k < steps; k++ {
			u := math.Pi * (float64(k) + 0.5) / steps
			y := lo + (hi-lo)*(1-math.Cos(u))/2
			if y > x {
				break
			}
			cdf += mp.Density(y) * (hi - lo) * math.Sin(u) / 2 * math.Pi / steps
		}
		ks = max(ks, math.Abs(cdf-float64(i)/m), math.Abs(cdf-float64(i+1)/m))
	}
	if ks > 0.08 {
		t.Errorf("KS distance to Marchenko–Pastur = %.3f, want < 0.08", ks)
	}
	// Histogram: densities integrate to 1 on linear bins, counts sum to M.
	h, err := e.Histogram(20, false)
	if err != nil {
		t.Fatal(err)
	}
	var mass float64
	total := 0
	for i, c := range h.Counts {
		total += c
		mass += h.Density[i] * (h.Edges[i+1] - h.Edges[i])
	}
	if total != m || math.Abs(mass-1) > 1e-12 || h.Edges[0] != e.Lambda[m-1] || h.Edges[20] != e.Lambda[0] {
		t.Errorf("histogram: %d counted, mass %v, edges [%v, %v]", total, mass, h.Edges[0], h.Edges[20])
	}
}

func TestHistogramLogBins(t *testing.T) {
	h, err := HistogramOf([]float64{0, 1, 10, 100, 1000, 1000}, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{1, 10, 100, 1000}
	for i, w := range want {
		if math.Abs(h.Edges[i]-w) > 1e-9*w {
			t.Errorf("edge %d = %v, want %v", i, h.Edges[i], w)
		}
	}
	if h.Excluded != 1 || h.Counts[0] != 1 || h.Counts[1] != 1 || h.Counts[2] != 3 {
		t.Errorf("counts %v excluded %d", h.Counts, h.Excluded)
	}
	if _, err := HistogramOf([]float64{0, -1}, 3, true); err == nil {
		t.Error("no positive values on log bins: no error")
	}
	if _, err := HistogramOf([]float64{1, math.Inf(-1)}, 3, false); err == nil || !strings.Contains(err.Error(), "value 1 is -Inf") {
		t.Errorf("Inf: %v", err)
	}
	sp, _ := SpectrumOf([]float64{1, 2})
	if _, err := sp.ESD(); err == nil || !strings.Contains(err.Error(), "shape is unknown") {
		t.Errorf("ESD without shape: %v", err)
	}
}

func TestMarchenkoPasturCDFAndSpikes(t *testing.T) {
	mp, _ := NewMarchenkoPastur(2, 1.5)
	lo, hi := mp.Edges()
	if mp.CDF(lo) != 0 || mp.CDF(hi) != 1 || math.Abs(mp.CDF(hi*(1-1e-12))-1) > 1e-5 {
		t.Errorf("CDF at the edges: %v %v %v", mp.CDF(lo), mp.CDF(hi), mp.CDF(hi*(1-1e-12)))
	}
	for _, p := range []float64{0.1, 0.5, 0.9} {
		if got := mp.CDF(mp.Quantile(p)); math.Abs(got-p) > 1e-6 {
			t.Errorf("CDF(Quantile(%v)) = %v", p, got)
		}
	}
	// Noise of variance 1 plus five strong spikes: the fitted bulk keeps
	// σ² ≈ 1 (the mean square would be far larger) and the spikes lie
	// above λ+.
	rng := rand.New(rand.NewPCG(11, 12))
	const n, m = 300, 100
	w := mat.NewDense(n, m, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			w.Set(i, j, rng.NormFloat64())
		}
	}
	spikes := orthonormal(rng, n, 5)
	dirs := orthonormal(rng, m, 5)
	for k := 0; k < 5; k++ {
		for i := 0; i < n; i++ {
			for j := 0; j < m; j++ {
				w.Set(i, j, w.At(i, j)+200*spikes.At(i, k)*dirs.At(j, k))
			}
		}
	}
	e, err := NewESD(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	fit, err := e.MarchenkoPastur()
	if err != nil {
		t.Fatal(err)
	}
	var mean float64
	for _, v := range e.Lambda {
		mean += v / m
	}
	if math.Abs(fit.Variance-1) > 0.08 || mean < 2 {
		t.Errorf("bulk variance %v (want ≈ 1), mean eigenvalue %v (want ≫ 1)", fit.Variance, mean)
	}
	_, edge := fit.Edges()
	for k := 0; k < 5; k++ {
		if e.Lambda[k] < 10*edge {
			t.Errorf("spike %d: λ = %v not far above λ+ = %v", k, e.Lambda[k], edge)
		}
	}
	if e.Lambda[5] > 1.2*edge {
		t.Errorf("largest bulk eigenvalue %v above λ+ = %v", e.Lambda[5], edge)
	}
}
