package ckpt

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// orthonormal returns an m×k matrix with orthonormal columns (the Q of a
// Gaussian matrix).
func orthonormal(rng *rand.Rand, m, k int) *mat.Dense {
	var qr mat.QR
	qr.Factorize(randDense(rng, m, k))
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, m, 0, k))
}

// withSpectrum returns U·diag(s)·Vᵀ for orthonormal U (m×k), V (n×k).
func withSpectrum(u, v *mat.Dense, s []float64) *mat.Dense {
	m, k := u.Dims()
	us := mat.DenseCopyOf(u)
	for j := range k {
		for i := range m {
			us.Set(i, j, us.At(i, j)*s[j])
		}
	}
	var w mat.Dense
	w.Mul(us, v.T())
	return &w
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if !(math.Abs(got-want) <= tol) {
		t.Errorf("%s = %.12g, want %.12g (±%g)", what, got, want, tol)
	}
}

func TestLayerStatsOrthogonal(t *testing.T) {
	// Every singular value of an orthogonal matrix is 1: stable and
	// effective rank are n, ‖Q‖_F = √n, ‖Q‖₂ = 1.
	const n = 64
	q := orthonormal(rand.New(rand.NewPCG(1, 1)), n, n)
	s, err := layerStats(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "stable rank", s.StableRank, n, 1e-9)
	near(t, "effective rank", s.EffectiveRank, n, 1e-9)
	near(t, "‖Q‖_F", s.Frobenius, 8, 1e-12)
	near(t, "‖Q‖₂", s.Spectral, 1, 1e-12)
	if s.NumericalRank != n {
		t.Errorf("numerical rank %d, want %d", s.NumericalRank, n)
	}
}

func TestLayerStatsEqualSingularValues(t *testing.T) {
	// A rank-k matrix with k equal singular values c: effective rank and
	// stable rank k, numerical rank k, ‖W‖_F = c√k.
	rng := rand.New(rand.NewPCG(2, 2))
	for _, k := range []int{1, 3, 7} {
		w := withSpectrum(orthonormal(rng, 40, k), orthonormal(rng, 30, k), slices7(k, 2.5))
		s, err := layerStats(context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "effective rank", s.EffectiveRank, float64(k), 1e-9)
		near(t, "stable rank", s.StableRank, float64(k), 1e-9)
		near(t, "‖W‖_F", s.Frobenius, 2.5*math.Sqrt(float64(k)), 1e-12)
		if s.NumericalRank != k {
			t.Errorf("k=%d: numerical rank %d", k, s.NumericalRank)
		}
	}
}

func slices7(k int, c float64) []float64 {
	s := make([]float64, k)
	for i := range s {
		s[i] = c
	}
	return s
}

func TestLayerStatsMPOutliers(t *testing.T) {
	// A Gaussian bulk of variance 1/n plus 3 spikes far above its edge
	// (σ = 6, 8, 10 against a bulk edge √(λ+·N) ≈ 1 + √(m/n) = 1.7): the
	// MP fit must find exactly the 3 spikes, and the ESD of a Gaussian
	// matrix has a steep tail (large α) next to that of a matrix with
	// Pareto entries (P(|x| > t) ~ t^−1.5), whose ESD tail is heavy
	// (Martin & Mahoney: α ≈ 1 + μ/2 = 1.75 for μ < 2).
	rng := rand.New(rand.NewPCG(3, 3))
	const m, n = 200, 400
	g := randDense(rng, m, n)
	g.Scale(1/math.Sqrt(n), g)
	var w mat.Dense
	w.Add(g, withSpectrum(orthonormal(rng, m, 3), orthonormal(rng, n, 3), []float64{10, 8, 6}))
	s, err := layerStats(context.Background(), &w)
	if err != nil {
		t.Fatal(err)
	}
	if s.MPOutliers != 3 {
		t.Errorf("%d MP outliers, want 3 (λ+ = %g)", s.MPOutliers, s.MPEdge)
	}
	gs, err := layerStats(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if gs.MPOutliers > 1 {
		t.Errorf("pure Gaussian: %d MP outliers, want ≤ 1", gs.MPOutliers)
	}
	p := mat.NewDense(m, n, nil)
	for i := range m {
		for j := range n {
			x := math.Pow(1-rng.Float64(), -1/1.5)
			if rng.IntN(2) == 0 {
				x = -x
			}
			p.Set(i, j, x)
		}
	}
	ps, err := layerStats(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("α: Gaussian %.2f, Pareto(1.5) %.2f (tail %d)", gs.Alpha, ps.Alpha, ps.NTail)
	if !(ps.Alpha < 2.5 && gs.Alpha > 3) {
		t.Errorf("α: Pareto(1.5) entries %.2f, want < 2.5; Gaussian %.2f, want > 3", ps.Alpha, gs.Alpha)
	}
}

func TestLayerStatsNonFinite(t *testing.T) {
	w := mat.NewDense(3, 3, []float64{1, 2, 3, 4, math.NaN(), 6, 7, 8, 9})
	s, err := layerStats(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Err, "NaN") {
		t.Errorf("Err = %q, want it to name the NaN", s.Err)
	}
}

// sparseLowRank returns ΔW (m×n) = B·A with B nonzero on rows [0, rr)
// and A nonzero on columns [0, cc): nonzero exactly on that block, rank r.
// The factors' entries lie in [1, 2], so every entry of the block is ≥ r.
func sparseLowRank(rng *rand.Rand, m, n, r, rr, cc int) *mat.Dense {
	b := mat.NewDense(m, r, nil)
	for i := range rr {
		for l := range r {
			b.Set(i, l, 1+rng.Float64())
		}
	}
	a := mat.NewDense(r, n, nil)
	for l := range r {
		for j := range cc {
			a.Set(l, j, 1+rng.Float64())
		}
	}
	var d mat.Dense
	d.Mul(b, a)
	return &d
}

func TestUpdateStatsKnown(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const m, n = 60, 50
	w1 := randDense(rng, m, n)
	dw := sparseLowRank(rng, m, n, 3, 20, 10)
	dw.Scale(0.01, dw)
	var w2 mat.Dense
	w2.Add(w1, dw)
	s, err := updateStats(context.Background(), mat.DenseCopyOf(w1), mat.DenseCopyOf(&w2), Options{TopK: 4, Rtol: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "sparsity", s.Sparsity, 1-200.0/3000, 0)
	near(t, "sparsity(tol)", s.SparsityTol, 1-200.0/3000, 0)
	if s.Rank != 3 {
		t.Errorf("rank of ΔW = %d, want 3", s.Rank)
	}
	near(t, "rank fraction", s.RankFrac, 3.0/50, 0)
	near(t, "‖W₁‖_F", s.NormW1, mat.Norm(w1, 2), 1e-12)
	near(t, "‖ΔW‖_F", s.NormDelta, mat.Norm(dw, 2), 1e-9)

	// Changes of 1e-9 relative to W₁ elsewhere count as changes exactly
	// but not within Rtol = 1e-6.
	var w3 mat.Dense
	w3.CloneFrom(&w2)
	for j := range 30 {
		i := 30 + j%30
		w3.Set(i, j, w3.At(i, j)*(1+1e-9))
	}
	s, err = updateStats(context.Background(), mat.DenseCopyOf(w1), &w3, Options{TopK: 4, Rtol: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "sparsity", s.Sparsity, 1-230.0/3000, 0)
	near(t, "sparsity(tol)", s.SparsityTol, 1-200.0/3000, 0)
	// Atol alone: |ΔW| ≤ 1 holds everywhere.
	s, _ = updateStats(context.Background(), mat.DenseCopyOf(w1), mat.DenseCopyOf(&w2), Options{TopK: 4, Atol: 1})
	near(t, "sparsity(atol 1)", s.SparsityTol, 1, 0)
}

func TestUpdateStatsSubspace(t *testing.T) {
	// W₁ = U·diag(s)·Vᵀ with s = 10, 9, 8, 7, then 2, 1.9, …. W₂ keeps the
	// top-4 singular directions and changes only the small ones: φ₄ = 1 on
	// both sides. W₃ replaces the top-4 left vectors by directions
	// orthogonal to every column of U: φ₄ left = 0, right = 1.
	rng := rand.New(rand.NewPCG(5, 5))
	const m, n, p = 40, 30, 30
	full := orthonormal(rng, m, m)
	u := mat.DenseCopyOf(full.Slice(0, m, 0, p))
	v := orthonormal(rng, n, p)
	s := make([]float64, p)
	for i := range s {
		if i < 4 {
			s[i] = float64(10 - i)
		} else {
			s[i] = 2 - 0.05*float64(i)
		}
	}
	w1 := withSpectrum(u, v, s)
	s2 := append([]float64(nil), s...)
	for i := 4; i < p; i++ {
		s2[i] *= 0.5
	}
	w2 := withSpectrum(u, v, s2)
	st, err := updateStats(context.Background(), mat.DenseCopyOf(w1), w2, Options{TopK: 4, Rtol: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "φ₄ left (same top)", st.SimLeft, 1, 1e-8)
	near(t, "φ₄ right (same top)", st.SimRight, 1, 1e-8)
	if st.Rank != p-4 {
		t.Errorf("rank of ΔW = %d, want %d", st.Rank, p-4)
	}

	u3 := mat.DenseCopyOf(u)
	for j := range 4 {
		u3.Slice(0, m, j, j+1).(*mat.Dense).Copy(full.Slice(0, m, p+j, p+j+1))
	}
	w3 := withSpectrum(u3, v, s)
	st, err = updateStats(context.Background(), mat.DenseCopyOf(w1), w3, Options{TopK: 4, Rtol: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "φ₄ left (new top)", st.SimLeft, 0, 1e-8)
	near(t, "φ₄ right (new top)", st.SimRight, 1, 1e-8)
}

// TestCompareGenerated runs the whole pipeline on a generated sharded F64
// pair, whose update is known: nonzero on ⌈m/2⌉ rows × ⌈n/4⌉ columns, of
// rank 3.
func TestCompareGenerated(t *testing.T) {
	dir := t.TempDir()
	cfg := GenConfig{Layers: 2, Hidden: 48, FFN: 96, DType: "F64", Shards: 2, Seed: 11}
	p1, p2, err := GeneratePair(filepath.Join(dir, "base"), filepath.Join(dir, "tuned"), cfg, UpdateConfig{Rank: 3, RowFrac: 0.5, ColFrac: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	var calls []Progress
	r, err := Compare(context.Background(), p1, p2, &Options{TopK: 8, Progress: func(p Progress) { calls = append(calls, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Layers) != 14 || len(r.Skipped) != 4 {
		t.Fatalf("%d layers and %d skipped, want 14 and 4 (the norms)", len(r.Layers), len(r.Skipped))
	}
	for _, l := range r.Layers {
		nz := math.Ceil(float64(l.Rows)/2) * math.Ceil(float64(l.Cols)/4)
		want := 1 - nz/float64(l.Rows*l.Cols)
		if l.Sparsity != want || l.Rank != 3 || l.Err != "" {
			t.Errorf("%s: sparsity %v rank %d (%s), want %v and 3", l.Name, l.Sparsity, l.Rank, l.Err, want)
		}
	}
	if len(calls) != 15 || calls[14].Done != 14 || calls[14].Bytes != calls[14].TotalBytes || calls[3].Done != 3 {
		t.Errorf("progress calls %+v", calls)
	}
	if r.Layers[0].Name != "model.layers.0.mlp.down_proj.weight" || r.Layers[13].Name != "model.layers.1.self_attn.v_proj.weight" {
		t.Errorf("order: first %s, last %s", r.Layers[0].Name, r.Layers[13].Name)
	}

	// A checkpoint against itself: nothing changed, φ = 1.
	r, err = Compare(context.Background(), p1, p1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range r.Layers {
		if l.Sparsity != 1 || l.Rank != 0 || math.Abs(l.SimLeft-1) > 1e-12 || math.Abs(l.SimRight-1) > 1e-12 {
			t.Errorf("%s against itself: sparsity %v rank %d φ %v %v", l.Name, l.Sparsity, l.Rank, l.SimLeft, l.SimRight)
		}
	}
}

func TestAnalyzeGenerated(t *testing.T) {
	p, err := Generate(t.TempDir(), GenConfig{Layers: 1, Hidden: 64, FFN: 128, DType: "BF16", Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Analyze(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Layers) != 7 {
		t.Fatalf("%d layers, want 7", len(r.Layers))
	}
	for _, l := range r.Layers {
		// 8 spikes of strength 4…18 stand above the bulk.
		if l.MPOutliers < 8 || math.IsNaN(l.Alpha) || l.Err != "" {
			t.Errorf("%s: %d MP outliers, α %v, err %q; want ≥ 8 and a fitted α", l.Name, l.MPOutliers, l.Alpha, l.Err)
		}
	}

	// The outputs: CSV has a header and a row per layer, with the metric
	// names Values takes.
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 || recs[0][0] != "name" || recs[1][0] != r.Layers[0].Name {
		t.Errorf("CSV: %d records, header %v", len(recs), recs[0])
	}
	names, alpha, err := r.Values("alpha")
	if err != nil || len(alpha) != 7 || alpha[2] != r.Layers[2].Alpha || names[2] != r.Layers[2].Name {
		t.Errorf("Values(alpha) = %v, %v, %v", names, alpha, err)
	}
	if _, _, err := r.Values("beta"); err == nil || !strings.Contains(err.Error(), "mp_outliers") {
		t.Errorf("Values(beta): %v, want an error listing the metrics", err)
	}
	tr, err := r.RankTrace("mp_outliers")
	if err != nil || len(tr.Ranks) != 7 || tr.Ranks[1][0] != r.Layers[1].MPOutliers {
		t.Errorf("RankTrace: %+v, %v", tr, err)
	}
	for _, s := range []string{r.Text(), r.Markdown()} {
		if !strings.Contains(s, r.Layers[6].Name) || !strings.Contains(s, "input_layernorm") {
			t.Errorf("table lacks a layer or the skipped norms:\n%s", s)
		}
	}
}

func TestAnalyzeNaNGoesOn(t *testing.T) {
	p := filepath.Join(t.TempDir(), "model.safetensors")
	a := mat.NewDense(2, 2, []float64{1, math.NaN(), 3, 4})
	b := randDense(rand.New(rand.NewPCG(6, 6)), 8, 6)
	if err := peft.WriteSafetensors(p, map[string]*mat.Dense{"a": a, "b": b}, "F32", nil); err != nil {
		t.Fatal(err)
	}
	r, err := Analyze(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Layers) != 2 || r.Layers[0].Err == "" || r.Layers[1].Err != "" {
		t.Errorf("rows %+v: want a's error and b analysed", r.Layers)
	}
}

func TestAnalyzeCancel(t *testing.T) {
	p, err := Generate(t.TempDir(), GenConfig{Layers: 1, Hidden: 32, FFN: 64, DType: "F32"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last := -1
	_, err = Analyze(ctx, p, &Options{Progress: func(p Progress) {
		last = p.Done
		if p.Done == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || last != 2 {
		t.Errorf("Analyze cancelled at tensor 2: err %v, last progress %d", err, last)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{{TopK: -1}, {Atol: -1}, {Rtol: math.NaN()}} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	for _, g := range []GenConfig{{DType: "I8"}, {TailIndex: 1.5}, {Layers: -1}} {
		if _, err := Generate(t.TempDir(), g); err == nil {
			t.Errorf("%+v: no error", g)
		}
	}
}
