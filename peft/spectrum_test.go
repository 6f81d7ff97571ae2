package peft

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// orthonormal returns an n×k matrix with orthonormal columns (QR of a seeded
// Gaussian matrix).
func orthonormal(rng *rand.Rand, n, k int) *mat.Dense {
	g := mat.NewDense(n, k, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(g)
	var q mat.Dense
	qr.QTo(&q)
	out := mat.NewDense(n, k, nil)
	out.Copy(q.Slice(0, n, 0, k))
	return out
}

// withSpectrum returns U·diag(s)·Vᵀ (m×n) for random orthonormal U, V.
func withSpectrum(rng *rand.Rand, m, n int, s []float64) *mat.Dense {
	k := len(s)
	u, v := orthonormal(rng, m, k), orthonormal(rng, n, k)
	var us mat.Dense
	us.Scale(1, u)
	for j := 0; j < k; j++ {
		for i := 0; i < m; i++ {
			us.Set(i, j, us.At(i, j)*s[j])
		}
	}
	var a mat.Dense
	a.Mul(&us, v.T())
	return &a
}

func TestNewSpectrumRecoversValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2)) // Always the same seed for reproducible results.
	want := []float64{9, 5, 2, 1, 0.5}
	a := withSpectrum(rng, 12, 7, want)
	s, err := NewSpectrum(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if s.Rows != 12 || s.Cols != 7 || len(s.S) != 7 {
		t.Fatalf("shape %d×%d, %d values", s.Rows, s.Cols, len(s.S))
	}
	for i, w := range want {
		if math.Abs(s.S[i]-w) > 1e-12*9 {
			t.Errorf("σ_%d = %.15g, want %g", i+1, s.S[i], w)
		}
	}
	if got := s.NumericalRank(0); got != 5 {
		t.Errorf("NumericalRank(default) = %d, want 5 (σ_6, σ_7 are round-off)", got)
	}
	if got := s.NumericalRank(0.75); got != 4 {
		t.Errorf("NumericalRank(0.75) = %d, want 4", got)
	}
}

func TestSpectrumBadInput(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		err  func() error
		want string
	}{
		{"empty slice", func() error { _, err := SpectrumOf(nil); return err }, "empty"},
		{"NaN", func() error { _, err := SpectrumOf([]float64{1, math.NaN()}); return err }, "singular value 1 is NaN"},
		{"Inf", func() error { _, err := SpectrumOf([]float64{math.Inf(1)}); return err }, "singular value 0 is +Inf"},
		{"negative", func() error { _, err := SpectrumOf([]float64{1, -2}); return err }, "negative"},
		{"empty matrix", func() error { _, err := NewSpectrum(ctx, &mat.Dense{}); return err }, "empty"},
		{"NaN matrix", func() error {
			_, err := NewSpectrum(ctx, mat.NewDense(2, 2, []float64{1, 2, math.NaN(), 4}))
			return err
		}, "NaN at (1, 0)"},
	}
	for _, c := range cases {
		err := c.err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewSpectrum(cctx, mat.NewDense(2, 2, []float64{1, 2, 3, 4})); err == nil {
		t.Error("NewSpectrum with a cancelled context: no error")
	}
}

func TestEnergyAndRanks(t *testing.T) {
	// σ = (3, 2, 1, 0): σ² = 9, 4, 1, 0, total 14.
	s, err := SpectrumOf([]float64{1, 3, 0, 2}) // sorted by SpectrumOf
	if err != nil {
		t.Fatal(err)
	}
	e := s.Energy()
	want := []float64{9.0 / 14, 13.0 / 14, 1, 1}
	for i := range want {
		if math.Abs(e[i]-want[i]) > 1e-15 {
			t.Errorf("Energy[%d] = %v, want %v", i, e[i], want[i])
		}
	}
	for _, c := range []struct {
		f float64
		k int
	}{{0.5, 1}, {9.0 / 14, 1}, {0.9, 2}, {0.95, 3}, {1, 3}} {
		if got := s.RankForEnergy(c.f); got != c.k {
			t.Errorf("RankForEnergy(%v) = %d, want %d", c.f, got, c.k)
		}
	}
	if got, want := s.StableRank(), 14.0/9; math.Abs(got-want) > 1e-15 {
		t.Errorf("StableRank = %v, want %v", got, want)
	}
	// Effective rank: p = (1/2, 1/3, 1/6).
	h := -(0.5*math.Log(0.5) + math.Log(1.0/3)/3 + math.Log(1.0/6)/6)
	if got := s.EffectiveRank(); math.Abs(got-math.Exp(h)) > 1e-14 {
		t.Errorf("EffectiveRank = %v, want %v", got, math.Exp(h))
	}
	if got := s.NumericalRank(0); got != 3 {
		t.Errorf("NumericalRank = %d, want 3", got)
	}
	// k equal values: effective rank and stable rank are exactly k.
	flat, _ := SpectrumOf([]float64{2, 2, 2, 2, 2, 0, 0})
	if got := flat.EffectiveRank(); math.Abs(got-5) > 1e-12 {
		t.Errorf("EffectiveRank of 5 equal values = %v", got)
	}
	if got := flat.StableRank(); math.Abs(got-5) > 1e-12 {
		t.Errorf("StableRank of 5 equal values = %v", got)
	}
	zero, _ := SpectrumOf([]float64{0, 0})
	if zero.EffectiveRank() != 0 || zero.StableRank() != 0 || zero.RankForEnergy(0.9) != 0 || zero.NumericalRank(0) != 0 {
		t.Error("zero spectrum: ranks not all 0")
	}
	if err := Maybe(func() { s.RankForEnergy(1.5) }); err == nil || !strings.Contains(err.Error(), "outside (0, 1]") {
		t.Errorf("RankForEnergy(1.5): %v", err)
	}
}

func TestElbow(t *testing.T) {
	// A flat head of rank r and a flat tail: the elbow is r.
	for _, r := range []int{1, 3, 10} {
		s := make([]float64, 40)
		for i := range s {
			s[i] = 0.1
			if i < r {
				s[i] = 5
			}
		}
		sp, _ := SpectrumOf(s)
		if got := sp.Elbow(); got != r {
			t.Errorf("step at %d: Elbow = %d", r, got)
		}
	}
	// σ_i = 1/(i+1) on 0…n−1: the curve y = (1/(i+1) − 1/n)/(1 − 1/n) is
	// convex; maximize |x + y − 1| in closed form: with t = i+1, the
	// distance is largest where d/dt [t/(n−1) + (1/t)/(1−1/n)] = 0, i.e.
	// t = √((n−1)·n/(n−1)) = √n. Compare with the discrete argmax.
	n := 101
	s := make([]float64, n)
	best, at := -1.0, 0
	for i := range s {
		s[i] = 1 / float64(i+1)
	}
	for i := range s {
		x := float64(i) / float64(n-1)
		y := (s[i] - s[n-1]) / (s[0] - s[n-1])
		if d := math.Abs(x + y - 1); d > best {
			best, at = d, i
		}
	}
	sp, _ := SpectrumOf(s)
	if got := sp.Elbow(); got != at || math.Abs(float64(got+1)-math.Sqrt(float64(n))) > 1 {
		t.Errorf("1/i spectrum: Elbow = %d, brute force %d, continuous optimum t = √n − 1 = %.2f", got, at, math.Sqrt(float64(n))-1)
	}
	// No bend: a straight line, equal values, too few values.
	line := make([]float64, 20)
	for i := range line {
		line[i] = float64(20 - i)
	}
	for _, v := range [][]float64{line, {3, 3, 3, 3}, {5, 1}} {
		sp, _ := SpectrumOf(v)
		if got := sp.Elbow(); got != 0 {
			t.Errorf("Elbow(%v) = %d, want 0", v, got)
		}
	}
}
