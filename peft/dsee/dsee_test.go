package dsee_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"slices"
	"sort"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/dsee"
	"gonum.org/v1/gonum/mat"
)

// suiteCase is the conformance case of DSEE with N = 5 entries per layer
// (the suite's layers are (4×5) and (3×4)), Ω picked by sel, pruned at
// ratio p after Add if p > 0.
func suiteCase(sel dsee.Selection, p float64) adaptertest.Case {
	return adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ds, err := dsee.Add(m, dsee.Config{R: o.R, Alpha: o.Alpha, N: 5, Selection: sel, Targets: o.Targets, Seed: o.Seed})
			if err == nil && p > 0 {
				err = dsee.Prune(m, p)
			}
			return adaptertest.Adapters(ds), err
		},
		ZeroAtInit: p == 0, // pruning zeroes ⌊p·d·k⌋ entries of W₀ + ΔW
	}
}

func TestSuite(t *testing.T) { adaptertest.Run(t, suiteCase(dsee.Decomposition, 0)) }

func TestSuiteMagnitude(t *testing.T) { adaptertest.Run(t, suiteCase(dsee.Magnitude, 0)) }

// TestSuitePruned runs the suite on adapters pruned at p = 0.3 right after
// Add: the gradients then flow through the mask, merging gives
// M ⊙ (W₀ + ΔW), and a saved mask loads back.
func TestSuitePruned(t *testing.T) { adaptertest.Run(t, suiteCase(dsee.Magnitude, 0.3)) }

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("dsee")
	if !ok || m.Format == nil || m.Format.PEFTType != "GOPEFT_DSEE" || m.Kind != peft.AdapterMethod {
		t.Fatalf("LookupMethod(dsee) = %v, %v", m, ok)
	}
	t.Log(m)
}

// The test model: two layers, a: W (5×6) and b: W (4×5).
var (
	names  = []string{"a", "b"}
	widths = []int{6, 5, 4}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// topNRef returns the flat indices of the n largest |w|, increasing, by
// sorting all of them: the test's reference for the support.
func topNRef(w mat.Matrix, n int) []int {
	d, k := w.Dims()
	type entry struct {
		f int
		v float64
	}
	es := make([]entry, 0, d*k)
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			es = append(es, entry{i*k + j, math.Abs(w.At(i, j))})
		}
	}
	sort.Slice(es, func(a, b int) bool {
		if es[a].v != es[b].v {
			return es[a].v > es[b].v
		}
		return es[a].f < es[b].f
	})
	out := make([]int, n)
	for t := range out {
		out[t] = es[t].f
	}
	sort.Ints(out)
	return out
}

// offSupport returns the largest |entry| of s (d×k) outside omega.
func offSupport(s *mat.Dense, omega []int) float64 {
	on := map[int]bool{}
	for _, f := range omega {
		on[f] = true
	}
	worst := 0.0
	for f, v := range s.RawMatrix().Data {
		if !on[f] {
			worst = math.Max(worst, math.Abs(v))
		}
	}
	return worst
}

// TestInit checks ΔW = 0 at init (the output is the base model's bit for
// bit), the shapes, the r·(d+k) + N trained numbers, and that Ω is the top
// N of |W₀| (Magnitude) or of the S of W₀'s split (Decomposition).
func TestInit(t *testing.T) {
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), 7, 6))
	for _, sel := range []dsee.Selection{dsee.Decomposition, dsee.Magnitude} {
		m := newModel()
		before := mat.DenseCopyOf(m.Forward(x).Value)
		w0 := []*mat.Dense{mat.DenseCopyOf(m.Mods[0].W.Value), mat.DenseCopyOf(m.Mods[1].W.Value)}
		ds, err := dsee.Add(m, dsee.Config{R: 2, N: 7, Selection: sel, Targets: names, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("%v: output at init differs from the base model's", sel)
		}
		want := 0
		for i, a := range ds {
			d, k := widths[i+1], widths[i]
			want += 2*(d+k) + 7
			if ad, ak := a.Dims(); ad != d || ak != k {
				t.Errorf("%v: %s: Dims %d×%d, want %d×%d", sel, names[i], ad, ak, d, k)
			}
			if adaptertest.MaxAbs(a.Delta()) != 0 || adaptertest.MaxAbs(a.S2.Value) != 0 || adaptertest.MaxAbs(a.B.Value) != 0 {
				t.Errorf("%v: %s: ΔW, s₂ or B nonzero at init", sel, names[i])
			}
			if adaptertest.MaxAbs(a.A.Value) == 0 || adaptertest.MaxAbs(a.A.Value) > 1/math.Sqrt(float64(k)) {
				t.Errorf("%v: %s: max|A| = %g, want in (0, 1/√k]", sel, names[i], adaptertest.MaxAbs(a.A.Value))
			}
			if a.Selection != sel || a.N() != 7 || a.Rank() != 2 || a.Scaling() != 1 {
				t.Errorf("%v: %s: selection %v, N %d, r %d, s %g", sel, names[i], a.Selection, a.N(), a.Rank(), a.Scaling())
			}
			ref := w0[i]
			if sel == dsee.Decomposition {
				_, s, err := dsee.Decompose(context.Background(), w0[i], dsee.DecompConfig{})
				if err != nil {
					t.Fatal(err)
				}
				ref = s
			}
			if got, want := a.Support(), topNRef(ref, 7); !slices.Equal(got, want) {
				t.Errorf("%v: %s: Ω = %v, want the top 7 of |%s| = %v", sel, names[i], got, map[bool]string{true: "S", false: "W₀"}[sel == dsee.Decomposition], want)
			}
		}
		if n, _, _ := peft.TrainableParams(m); n != want {
			t.Errorf("%v: %d trainable parameters, want Σ r·(d+k) + N = %d", sel, n, want)
		}
	}
}

// regression is a Dataset of fixed inputs and targets.
type regression struct{ x, y *mat.Dense }

func (d regression) Sample(rng *rand.Rand, size int) peft.Batch {
	n, k := d.x.Dims()
	_, o := d.y.Dims()
	bx, by := mat.NewDense(size, k, nil), mat.NewDense(size, o, nil)
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		bx.SetRow(i, d.x.RawRowView(j))
		by.SetRow(i, d.y.RawRowView(j))
	}
	return peft.Batch{X: bx, Y: by}
}

func (d regression) EvalBatches() []peft.Batch { return nil }

func newRegression(seed int64) regression {
	rng := rand.New(rand.NewSource(seed))
	return regression{adaptertest.RandDense(rng, 32, widths[0]), adaptertest.RandDense(rng, 32, widths[len(widths)-1])}
}

// TestSupportFixed trains with AdamW (weight decay on) and with SGD with
// momentum and weight decay, and checks that S₂ stays on Ω: Ω is the same,
// S₂ and ΔW − s·B·A are exactly 0 off Ω, and s₂ did train.
func TestSupportFixed(t *testing.T) {
	for _, opt := range []struct {
		name string
		o    peft.Optimizer
	}{{"AdamW", peft.NewAdamW(0.1)}, {"SGD", &peft.SGD{Momentum: 0.9, WeightDecay: 0.1}}} {
		m := newModel()
		ds, err := dsee.Add(m, dsee.Config{R: 2, N: 6, Selection: dsee.Magnitude, Targets: names, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		omega := [][]int{ds[0].Support(), ds[1].Support()}
		if _, err := peft.Train(context.Background(), m, newRegression(6), peft.TrainConfig{Steps: 200, BatchSize: 8, LR: 1e-2, Seed: 1, Optimizer: opt.o}); err != nil {
			t.Fatal(err)
		}
		for i, a := range ds {
			if !slices.Equal(a.Support(), omega[i]) {
				t.Errorf("%s: %s: Ω moved from %v to %v", opt.name, names[i], omega[i], a.Support())
			}
			if c := a.S2.Value.RawMatrix().Cols; c != 6 {
				t.Errorf("%s: %s: s₂ has %d values, want N = 6", opt.name, names[i], c)
			}
			s2 := a.Sparse()
			if v := offSupport(s2, omega[i]); v != 0 {
				t.Errorf("%s: %s: S₂ has an entry of %g off Ω", opt.name, names[i], v)
			}
			var lowRank, sparse mat.Dense
			lowRank.Mul(a.B.Value, a.A.Value)
			lowRank.Scale(a.Scaling(), &lowRank)
			sparse.Sub(a.Delta(), &lowRank) // s·S₂
			if v := offSupport(&sparse, omega[i]); v > 1e-15 {
				t.Errorf("%s: %s: ΔW − s·B·A has an entry of %g off Ω", opt.name, names[i], v)
			}
			nonzero := 0
			for _, v := range a.S2.Value.RawRowView(0) {
				if v != 0 {
					nonzero++
				}
			}
			if nonzero != 6 {
				t.Errorf("%s: %s: %d of s₂'s 6 values trained", opt.name, names[i], nonzero)
			}
			t.Logf("%s: %s: Ω %v; max|S₂| off Ω = %g, on Ω = %.3g", opt.name, names[i], omega[i], offSupport(s2, omega[i]), adaptertest.MaxAbs(s2))
		}
	}
}

// TestSparseGradient checks the scatter's backward against the dense
// gradient: the gradient of a loss with respect to s₂ is s times the
// gradient with respect to the merged weight W = W₀ + ΔW, gathered at Ω.
func TestSparseGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	m := adaptertest.NewChain(1, []string{"fc"}, 5, 7)
	ds, err := dsee.Add(m, dsee.Config{R: 2, Alpha: 3, N: 9, Selection: dsee.Magnitude, Targets: []string{"fc"}, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	a := ds[0]
	for _, p := range a.Params() {
		r, c := p.Dims()
		p.Value.Copy(adaptertest.RandDense(rng, r, c))
	}
	x := peft.NewConst(adaptertest.RandDense(rng, 4, 5))
	wts := peft.NewConst(adaptertest.RandDense(rng, 4, 7))
	peft.SumAll(peft.Mul(m.Forward(x), wts)).Backward()

	// The same loss through a dense trainable W holding W₀ + ΔW.
	l := m.Mods[0]
	w := peft.NewParam("W", a.MergedWeight(l.W.Value))
	peft.SumAll(peft.Mul(peft.Affine(x, w, l.B), wts)).Backward()
	gw := w.Grad.RawMatrix().Data
	for t2, f := range a.Support() {
		want := a.Scaling() * gw[f]
		if got := a.S2.Grad.At(0, t2); math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
			t.Errorf("∂L/∂s₂[%d] = %g, want s·(∂L/∂W)[Ω[%d] = %d] = %g", t2, got, t2, f, want)
		}
	}
}

// planted returns W = L* + S* (12×10): L* of rank 2 with entries up to
// about 3, and S* of 6 spikes of ±1.5 at the increasing flat indices it
// also returns, so that some entries of L* are larger than the spikes.
func planted() (*mat.Dense, []int) {
	rng := rand.New(rand.NewSource(11))
	u, v := adaptertest.RandDense(rng, 12, 2), adaptertest.RandDense(rng, 2, 10)
	w := mat.NewDense(12, 10, nil)
	w.Mul(u, v)
	spikes := rng.Perm(120)[:6]
	sort.Ints(spikes)
	raw := w.RawMatrix().Data
	for t, f := range spikes {
		raw[f] += 1.5 * float64(1-2*(t%2))
	}
	return w, spikes
}

// TestDecompose checks the split's invariants, |W − L − S| < τ entrywise
// and rank L ≤ ρ, and that on a low-rank-plus-spikes W the Decomposition
// selection finds the spikes where the Magnitude selection does not.
func TestDecompose(t *testing.T) {
	w, spikes := planted()
	ctx := context.Background()
	for _, dc := range []dsee.DecompConfig{{}, {Rank: 2, Threshold: 0.5}, {Rank: 3, Step: 1, Rounds: 4, Threshold: 0.2}} {
		l, s, err := dsee.Decompose(ctx, w, dc)
		if err != nil {
			t.Fatal(err)
		}
		var rest mat.Dense
		rest.Sub(w, l)
		rest.Sub(&rest, s)
		tau := dc.Threshold
		if tau == 0 {
			tau = dsee.DefaultThreshold
		}
		if v := adaptertest.MaxAbs(&rest); v >= tau {
			t.Errorf("%+v: max|W − L − S| = %g, want < τ = %g", dc, v, tau)
		}
		rho := dc.Rank
		if rho == 0 {
			rho = 9 // min(100·5, min(12, 10) − 1)
		}
		var svd mat.SVD
		svd.Factorize(l, mat.SVDNone)
		sv := svd.Values(nil)
		if sv[rho] > 1e-10*sv[0] {
			t.Errorf("%+v: σ_%d(L) = %g, want rank L ≤ %d", dc, rho+1, sv[rho], rho)
		}
	}
	got, err := dsee.SelectSupport(ctx, w, 6, dsee.Decomposition, dsee.DecompConfig{Rank: 2, Threshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, spikes) {
		t.Errorf("Decomposition picks %v, want the planted spikes %v", got, spikes)
	}
	mag, err := dsee.SelectSupport(ctx, w, 6, dsee.Magnitude, dsee.DecompConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(mag, spikes) {
		t.Errorf("Magnitude also picks the spikes %v: the planted W does not tell the selections apart", spikes)
	}
	if !slices.Equal(mag, topNRef(w, 6)) {
		t.Errorf("Magnitude picks %v, want the top 6 of |W| %v", mag, topNRef(w, 6))
	}
	t.Logf("spikes %v; Decomposition %v; Magnitude %v", spikes, got, mag)
}

// TestCancel: a cancelled context stops the split and attaches nothing.
func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := newModel()
	_, err := dsee.AddContext(ctx, m, dsee.Config{R: 2, N: 4, Targets: names})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("AddContext with a cancelled context: %v, want context.Canceled", err)
	}
	for _, l := range m.Mods {
		if len(l.Adapters) != 0 {
			t.Errorf("%s kept an adapter", l.Name)
		}
	}
}

// countZeros returns the number of exact zeros of w.
func countZeros(w *mat.Dense) int {
	n := 0
	for _, v := range w.RawMatrix().Data {
		if v == 0 {
			n++
		}
	}
	return n
}

// TestPrune checks the second stage: the merged weight has exactly
// ⌊p·d·k⌋ zeros, at the smallest |W₀ + ΔW|; it keeps them through further
// training; the output is x·(merged)ᵀ + b; disabling gives the unpruned base;
// and Prune refuses what it cannot do.
func TestPrune(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	m := newModel()
	ds, err := dsee.Add(m, dsee.Config{R: 2, N: 6, Targets: names, Seed: 13})
	if err != nil {
		t.Fatal(err)
	}
	data := newRegression(14)
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 50, BatchSize: 8, LR: 1e-2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	x := peft.NewConst(adaptertest.RandDense(rng, 5, 6))
	xs := []*mat.Dense{adaptertest.RandDense(rng, 5, 6), adaptertest.RandDense(rng, 5, 5)} // inputs of a and b
	m.SetTraining(false)
	peft.DisableAdapters(m)
	base := mat.DenseCopyOf(m.Forward(x).Value)
	peft.EnableAdapters(m)
	const p = 0.45
	before := make([]*mat.Dense, len(ds))
	for i, a := range ds {
		before[i] = a.MergedWeight(m.Mods[i].W.Value)
	}
	if err := dsee.Prune(m, p); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for i, a := range ds {
			l := m.Mods[i]
			d, k := a.Dims()
			want := int(math.Floor(p * float64(d*k)))
			merged := a.MergedWeight(l.W.Value)
			if z := countZeros(merged); z != want {
				t.Errorf("%s: %s: merged weight has %d zeros, want ⌊p·d·k⌋ = %d", when, l.Name, z, want)
			}
			mask, ratio := a.Mask()
			if ratio != p || countZeros(mask) != want {
				t.Errorf("%s: %s: mask with %d zeros at ratio %g", when, l.Name, countZeros(mask), ratio)
			}
			var h mat.Dense
			h.Mul(xs[i], merged.T())
			for r := 0; r < 5; r++ {
				for j := 0; j < d; j++ {
					h.Set(r, j, h.At(r, j)+l.B.Value.At(0, j))
				}
			}
			if v := adaptertest.RelDiffMax(l.Forward(peft.NewConst(xs[i])).Value, &h); v > 1e-12 {
				t.Errorf("%s: %s: output differs from x·(M ⊙ (W₀ + ΔW))ᵀ + b by %.3g", when, l.Name, v)
			}
		}
	}
	check("after Prune")
	// The pruned entries are the smallest of W₀ + ΔW.
	for i, a := range ds {
		mask, _ := a.Mask()
		keptMin, prunedMax := math.Inf(1), 0.0
		for f, v := range before[i].RawMatrix().Data {
			if mask.RawMatrix().Data[f] == 1 {
				keptMin = math.Min(keptMin, math.Abs(v))
			} else {
				prunedMax = math.Max(prunedMax, math.Abs(v))
			}
		}
		if prunedMax > keptMin {
			t.Errorf("%s: pruned an entry of magnitude %g but kept one of %g", names[i], prunedMax, keptMin)
		}
	}
	m.SetTraining(true)
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 50, BatchSize: 8, LR: 1e-2, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	m.SetTraining(false)
	check("after training the pruned adapters")
	peft.DisableAdapters(m)
	if !mat.Equal(m.Forward(x).Value, base) {
		t.Error("disabled pruned adapters: output differs from the unpruned base model's")
	}
	peft.EnableAdapters(m)

	if err := adaptertest.ErrorMentions(dsee.Prune(m, 0.5), "a", "already pruned", "0.45"); err != nil {
		t.Errorf("pruning twice: %v", err)
	}
	fresh := newModel()
	if err := adaptertest.ErrorMentions(dsee.Prune(fresh, 0.5), "no module", "DSEE"); err != nil {
		t.Errorf("pruning a model without DSEE: %v", err)
	}
	for _, p := range []float64{-0.1, 1, math.NaN()} {
		fresh := newModel()
		ads, err := dsee.Add(fresh, dsee.Config{R: 1, N: 3, Selection: dsee.Magnitude, Targets: names})
		if err != nil {
			t.Fatal(err)
		}
		if err := adaptertest.ErrorMentions(dsee.Prune(fresh, p), "a", "prune ratio", "[0, 1)"); err != nil {
			t.Errorf("p = %v: %v", p, err)
		}
		if mask, _ := ads[0].Mask(); mask != nil {
			t.Errorf("p = %v: a failed Prune left a mask", p)
		}
	}
	merged := newModel()
	if _, err := dsee.Add(merged, dsee.Config{R: 1, N: 3, Selection: dsee.Magnitude, Targets: names}); err != nil {
		t.Fatal(err)
	}
	if err := peft.MergeAdapters(merged); err != nil {
		t.Fatal(err)
	}
	if err := adaptertest.ErrorMentions(dsee.Prune(merged, 0.5), "a", "merged", "unmerge"); err != nil {
		t.Errorf("pruning a merged adapter: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("Prune with a W₀ of the wrong shape did not panic")
			} else if _, ok := r.(peft.ShapeError); !ok {
				t.Errorf("Prune with a W₀ of the wrong shape panicked with %v, want a ShapeError", r)
			}
		}()
		ds, _ := dsee.Add(newModel(), dsee.Config{R: 1, N: 3, Selection: dsee.Magnitude, Targets: names})
		ds[0].Prune(mat.NewDense(4, 6, nil), 0.5)
	}()
}

// TestBadConfig: each bad setting is an error naming the module, the field
// and the value, and leaves no adapter behind.
func TestBadConfig(t *testing.T) {
	base := dsee.Config{R: 2, N: 4, Targets: []string{"b"}}
	with := func(f func(*dsee.Config)) dsee.Config { c := base; f(&c); return c }
	for _, c := range []struct {
		what string
		cfg  dsee.Config
		want []string
	}{
		{"rank 0", with(func(c *dsee.Config) { c.R = 0 }), []string{"b", "rank r = 0"}},
		{"rank above min(d, k)", with(func(c *dsee.Config) { c.R = 5 }), []string{"b", "rank r = 5", "min(d, k) = 4"}},
		{"negative alpha", with(func(c *dsee.Config) { c.Alpha = -1.5 }), []string{"b", "alpha = -1.5"}},
		{"dropout 1", with(func(c *dsee.Config) { c.Dropout = 1 }), []string{"b", "dropout = 1"}},
		{"negative N", with(func(c *dsee.Config) { c.N = -3 }), []string{"b", "N = -3"}},
		{"N above d·k", with(func(c *dsee.Config) { c.N = 21 }), []string{"b", "N = 21", "d·k = 20"}},
		{"default N above d·k", with(func(c *dsee.Config) { c.N = 0 }), []string{"b", "N = 64", "default", "d·k = 20"}},
		{"unknown selection", with(func(c *dsee.Config) { c.Selection = 7 }), []string{"b", "Selection = Selection(7)"}},
		{"decomposition rank too high", with(func(c *dsee.Config) { c.Decomp.Rank = 4 }), []string{"b", "Decomp.Rank = 4", "min(d, k) − 1 = 3"}},
		{"negative rounds", with(func(c *dsee.Config) { c.Decomp.Rounds = -1 }), []string{"b", "Decomp.Rounds = -1"}},
		{"negative step", with(func(c *dsee.Config) { c.Decomp.Step = -2 }), []string{"b", "Decomp.Step = -2"}},
		{"NaN threshold", with(func(c *dsee.Config) { c.Decomp.Threshold = math.NaN() }), []string{"b", "Decomp.Threshold = NaN"}},
		{"unknown target", with(func(c *dsee.Config) { c.Targets = []string{"zz"} }), []string{"zz"}},
	} {
		m := newModel()
		_, err := dsee.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%s: %v", c.what, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%s: %s kept an adapter", c.what, l.Name)
			}
		}
	}
	// New refuses a support that is not one.
	rng := rand.New(rand.NewSource(1))
	for _, c := range []struct {
		omega []int
		want  string
	}{{nil, "empty"}, {[]int{3, 3}, "Ω[1] = 3"}, {[]int{5, 2}, "Ω[1] = 2"}, {[]int{0, 20}, "Ω[1] = 20"}, {[]int{-1}, "Ω[0] = -1"}} {
		if _, err := dsee.New("fc", "default", 4, 5, c.omega, dsee.Config{R: 2}, rng); adaptertest.ErrorMentions(err, "fc", c.want) != nil {
			t.Errorf("New with Ω = %v: error %v, want one naming fc and %q", c.omega, err, c.want)
		}
	}
	// SelectSupport and Decompose check their arguments too.
	if _, err := dsee.SelectSupport(context.Background(), mat.NewDense(2, 3, nil), 7, dsee.Magnitude, dsee.DecompConfig{}); adaptertest.ErrorMentions(err, "N = 7", "d·k = 6") != nil {
		t.Errorf("SelectSupport with N = 7 on (2×3): %v", err)
	}
	if _, _, err := dsee.Decompose(context.Background(), mat.NewDense(2, 3, nil), dsee.DecompConfig{Rank: 2}); adaptertest.ErrorMentions(err, "Decomp.Rank = 2") != nil {
		t.Errorf("Decompose with rank 2 on (2×3): %v", err)
	}
}
