package randlora_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/randlora"
	"gonum.org/v1/gonum/mat"
)

func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := randlora.Add(m, randlora.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(as), err
		},
		ZeroAtInit: true,
		AnyRank:    true, // r may exceed min(d, k): the bases are random, and then n = 1
	})
}

// The test model: three layers, with d > k, d < k and d > k again, so that
// both orientations of ΔW are used and the shared bases are sliced.
// a: W (8×5), b: W (3×8), c: W (6×3).
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 8, 3, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// randomize gives every Λ and Γ standard normal entries, as after some
// training.
func randomize(rng *rand.Rand, as []*randlora.RandLoRA) {
	for _, a := range as {
		for _, p := range a.Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
}

func maxAbs(m mat.Matrix) float64 { return mat.Norm(m, math.Inf(1)) }

func relDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return maxAbs(&d) / math.Max(maxAbs(b), 1e-300)
}

// sampleStd returns the sample standard deviation of m's entries.
func sampleStd(m *mat.Dense) float64 {
	data := m.RawMatrix().Data
	mean := 0.0
	for _, v := range data {
		mean += v
	}
	mean /= float64(len(data))
	ss := 0.0
	for _, v := range data {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss / float64(len(data)-1))
}

// TestInit checks the init: one pair of frozen bases A (r×m_max) and B̃
// (M_max×n_max·r) of unit sample spread shared by every layer, Λ = 0 (the
// output is the base model's exactly), Γ = 1/m, n = ⌈m/r⌉ bases per layer,
// and Σ n·(r + m) trained parameters, the bases not counted.
func TestInit(t *testing.T) {
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), 6, 5))
	for _, c := range []struct {
		r       int
		targets []string
		mMax    int // min(d_max, k_max)
		bigMax  int // max(d_max, k_max)
	}{
		{2, names, 8, 8},
		{3, []string{"a", "c"}, 5, 8}, // d_max 8, k_max 5
		{16, names, 8, 8},             // r above every min(d, k): n = 1
	} {
		m := newModel()
		before := mat.DenseCopyOf(m.Forward(x).Value)
		as, err := randlora.Add(m, randlora.Config{R: c.r, Targets: c.targets, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("r=%d: output at init differs from the base model's", c.r)
		}
		a, b := as[0].A, as[0].B
		nMax := randlora.NumBases(c.mMax, c.r)
		if ar, ac := a.Dims(); ar != c.r || ac != c.mMax {
			t.Errorf("r=%d: A is %s, want (%d×%d)", c.r, peft.ShapeOf(ar, ac), c.r, c.mMax)
		}
		if br, bc := b.Dims(); br != c.bigMax || bc != nMax*c.r {
			t.Errorf("r=%d: B is %s, want (%d×%d)", c.r, peft.ShapeOf(br, bc), c.bigMax, nMax*c.r)
		}
		for _, p := range []*peft.Tensor{a, b} {
			if sd := sampleStd(p.Value); math.Abs(sd-1) > 1e-12 {
				t.Errorf("r=%d: %s has sample std %v, want 1", c.r, p.Name, sd)
			}
			if p.Trainable || p.NeedsGrad() {
				t.Errorf("r=%d: the basis %s is trainable", c.r, p.Name)
			}
		}
		want := 0
		for i, v := range as {
			if v.A != a || v.B != b {
				t.Errorf("r=%d: layer %d does not share the first layer's bases", c.r, i)
			}
			d, k := v.Dims()
			mm := min(d, k)
			n := (mm + c.r - 1) / c.r
			if v.N != n || v.Rank() != c.r {
				t.Errorf("r=%d: W (%d×%d): n = %d, Rank() = %d; want %d, %d", c.r, d, k, v.N, v.Rank(), n, c.r)
			}
			if !mat.Equal(v.Lambda.Value, mat.NewDense(c.r, n, nil)) {
				t.Errorf("r=%d: Λ at init is not (%d×%d) zeros", c.r, c.r, n)
			}
			if gr, gc := v.Gamma.Dims(); gr != n || gc != mm {
				t.Errorf("r=%d: Γ is %s, want (%d×%d)", c.r, peft.ShapeOf(gr, gc), n, mm)
			}
			for _, e := range v.Gamma.Value.RawMatrix().Data {
				if e != 1/float64(mm) {
					t.Errorf("r=%d: Γ holds %v at init, want 1/m = %v", c.r, e, 1/float64(mm))
					break
				}
			}
			if v.Alpha != 20*float64(c.r) || v.Scaling() != 20 {
				t.Errorf("r=%d: α = %v, s = %v; want the default 20·r, 20", c.r, v.Alpha, v.Scaling())
			}
			want += n * (c.r + mm)
		}
		n, _, _ := peft.TrainableParams(m)
		if n != want {
			t.Errorf("r=%d: %d trainable parameters, want Σ n·(r + m) = %d", c.r, n, want)
		}
		for _, p := range m.Params() {
			if p == a || p == b {
				t.Errorf("r=%d: the frozen basis %s is among the model's parameters", c.r, p.Name)
			}
		}
		t.Logf("r=%d on %v: %d trained parameters", c.r, c.targets, n)
	}
}

// naiveDelta is the paper's ΔW = s·Σᵢ Bᵢ·Λᵢ·A·Γᵢ with Bᵢ[:, c] = B̃[:M,
// c·n + i] (M×r), Λᵢ = diag(Λ[:, i]), A = A[:, :m], Γᵢ = diag(Γ[i, :]),
// each term a product of matrices; transposed when d < k.
func naiveDelta(a *randlora.RandLoRA) *mat.Dense {
	d, k := a.Dims()
	m, big := min(d, k), max(d, k)
	r, n := a.R, a.N
	am := a.A.Value.Slice(0, r, 0, m)
	sum := mat.NewDense(big, m, nil)
	for i := 0; i < n; i++ {
		bi := mat.NewDense(big, r, nil)
		li := mat.NewDense(r, r, nil)
		for c := 0; c < r; c++ {
			for p := 0; p < big; p++ {
				bi.Set(p, c, a.B.Value.At(p, c*n+i))
			}
			li.Set(c, c, a.Lambda.Value.At(c, i))
		}
		gi := mat.NewDense(m, m, nil)
		for j := 0; j < m; j++ {
			gi.Set(j, j, a.Gamma.Value.At(i, j))
		}
		var t1, t2, t3 mat.Dense
		t1.Mul(bi, li)
		t2.Mul(&t1, am)
		t3.Mul(&t2, gi)
		sum.Add(sum, &t3)
	}
	sum.Scale(a.Scaling(), sum)
	if d >= k {
		return sum
	}
	return mat.DenseCopyOf(sum.T())
}

// TestDeltaNaive checks Delta, MergedWeight and the layer's output against
// the paper's sum, for several ranks and both orientations.
func TestDeltaNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, r := range []int{1, 2, 3, 8} {
		m := newModel()
		as, err := randlora.Add(m, randlora.Config{R: r, Alpha: 1.5 * float64(r), Targets: names, Seed: int64(r)})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, as)
		for i, a := range as {
			l := m.Mods[i]
			want := naiveDelta(a)
			if d := relDiff(a.Delta(), want); d > 1e-12 {
				t.Errorf("r=%d %s: Delta differs from Σᵢ Bᵢ·Λᵢ·A·Γᵢ by %.3g relative", r, l.Name, d)
			}
			var merged mat.Dense
			merged.Add(l.W.Value, want)
			if d := relDiff(a.MergedWeight(l.W.Value), &merged); d > 1e-12 {
				t.Errorf("r=%d %s: MergedWeight differs from W₀ + ΔW by %.3g relative", r, l.Name, d)
			}
			x := adaptertest.RandDense(rng, 4, widths[i])
			var h mat.Dense
			h.Mul(x, merged.T())
			for row := 0; row < 4; row++ {
				for j := 0; j < widths[i+1]; j++ {
					h.Set(row, j, h.At(row, j)+l.B.Value.At(0, j))
				}
			}
			if d := relDiff(l.Forward(peft.NewConst(x)).Value, &h); d > 1e-12 {
				t.Errorf("r=%d %s: output differs from x·(W₀ + ΔW)ᵀ + b by %.3g relative", r, l.Name, d)
			}
		}
	}
}

// rank returns the numerical rank of a: the singular values above
// σ_max·max(d, k)·ε, and the ratio σ_min/σ_max over min(d, k) values.
func rank(t *testing.T, a *mat.Dense) (int, float64) {
	t.Helper()
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDNone) {
		t.Fatal("SVD did not converge")
	}
	s := svd.Values(nil)
	d, k := a.Dims()
	tol := s[0] * float64(max(d, k)) * 0x1p-52
	n := 0
	for _, v := range s {
		if v > tol {
			n++
		}
	}
	return n, s[len(s)-1] / s[0]
}

// single returns a one-layer model with weight (d×k) and RandLoRA of rank r
// on it, with Λ and Γ standard normal.
func single(t *testing.T, d, k, r int, seed int64) *randlora.RandLoRA {
	t.Helper()
	m := adaptertest.NewChain(seed, []string{"fc"}, k, d)
	as, err := randlora.Add(m, randlora.Config{R: r, Targets: []string{"fc"}, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(seed+100)), as)
	return as[0]
}

var rankShapes = []struct{ d, k, r int }{
	{12, 8, 3},  // n = 3, n·r = 9 > m = 8
	{8, 12, 3},  // the transposed layout
	{10, 10, 5}, // n·r = m
	{9, 6, 2},
	{6, 9, 1}, // six rank-one bases
	{7, 7, 7}, // one base of full rank
	{16, 12, 4},
}

// TestZeroLambda: Λ = 0 gives ΔW = 0 exactly, whatever Γ.
func TestZeroLambda(t *testing.T) {
	for _, c := range rankShapes {
		a := single(t, c.d, c.k, c.r, 1)
		a.Lambda.Value.Zero()
		if dw := a.Delta(); maxAbs(dw) != 0 {
			t.Errorf("W (%d×%d) r=%d: Λ = 0 but max |ΔW| = %g", c.d, c.k, c.r, maxAbs(dw))
		}
	}
}

// TestFullRank: with random Λ and Γ, ΔW has full rank min(d, k) although
// each basis has rank r < min(d, k).
func TestFullRank(t *testing.T) {
	for _, c := range rankShapes {
		for seed := int64(1); seed <= 3; seed++ {
			a := single(t, c.d, c.k, c.r, seed)
			got, cond := rank(t, a.Delta())
			if want := min(c.d, c.k); got != want {
				t.Errorf("W (%d×%d) r=%d seed %d: rank ΔW = %d, want min(d, k) = %d", c.d, c.k, c.r, seed, got, want)
			}
			if seed == 1 {
				t.Logf("W (%d×%d) r=%d n=%d: rank ΔW = %d, σ_min/σ_max = %.3g", c.d, c.k, c.r, a.N, got, cond)
			}
		}
	}
}

// TestEqualGamma: when all rows of Γ are equal (the init, or any common
// vector), ΔW = (Σᵢ Bᵢ·Λᵢ)·A·Γ₁ has rank ≤ r: the full rank comes from the
// Γᵢ differing.
func TestEqualGamma(t *testing.T) {
	for _, c := range rankShapes {
		a := single(t, c.d, c.k, c.r, 1)
		m := min(c.d, c.k)
		rng := rand.New(rand.NewSource(2))
		common := adaptertest.RandDense(rng, 1, m).RawRowView(0)
		for _, g := range []struct {
			what string
			row  []float64
		}{{"random common Γᵢ", common}, {"Γ at init (1/m)", nil}} {
			for i := 0; i < a.N; i++ {
				for j := 0; j < m; j++ {
					v := 1 / float64(m)
					if g.row != nil {
						v = g.row[j]
					}
					a.Gamma.Value.Set(i, j, v)
				}
			}
			got, _ := rank(t, a.Delta())
			if got > c.r {
				t.Errorf("W (%d×%d) r=%d, %s: rank ΔW = %d, want ≤ r", c.d, c.k, c.r, g.what, got)
			}
			if g.row != nil {
				t.Logf("W (%d×%d) r=%d, %s: rank ΔW = %d (random Γ: %d)", c.d, c.k, c.r, g.what, got, m)
			}
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

// TestSharedAndFrozen: the layers share one A and one B̃ (a change to them
// is seen by every layer); training with peft.Train or an optimizer step
// handed the bases changes neither of them nor gives them a gradient,
// while Λ and Γ train.
func TestSharedAndFrozen(t *testing.T) {
	m := newModel()
	as, err := randlora.Add(m, randlora.Config{R: 2, Alpha: 2, Targets: names, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(10)), as)
	a, b := as[0].A, as[0].B
	deltas := make([]*mat.Dense, len(as))
	for i, v := range as {
		deltas[i] = v.Delta()
	}
	a0, b0 := a.Value.At(0, 0), b.Value.At(0, 0)
	a.Value.Set(0, 0, a0+1)
	b.Value.Set(0, 0, b0+1)
	for i, v := range as {
		if mat.Equal(v.Delta(), deltas[i]) {
			t.Errorf("%s: ΔW did not change with the shared A and B", names[i])
		}
	}
	a.Value.Set(0, 0, a0)
	b.Value.Set(0, 0, b0)

	aWant, bWant := mat.DenseCopyOf(a.Value), mat.DenseCopyOf(b.Value)
	params := make([]*mat.Dense, 0, 2*len(as))
	for _, v := range as {
		params = append(params, mat.DenseCopyOf(v.Lambda.Value), mat.DenseCopyOf(v.Gamma.Value))
	}
	checkFrozen := func(when string) {
		t.Helper()
		if !mat.Equal(a.Value, aWant) || !mat.Equal(b.Value, bWant) {
			t.Errorf("%s: the shared A or B changed", when)
		}
		if a.Grad != nil || b.Grad != nil {
			t.Errorf("%s: the shared A or B got a gradient", when)
		}
		for i, v := range as {
			if mat.Equal(v.Lambda.Value, params[2*i]) || mat.Equal(v.Gamma.Value, params[2*i+1]) {
				t.Errorf("%s: %s: Λ or Γ did not train", when, names[i])
			}
			params[2*i], params[2*i+1] = mat.DenseCopyOf(v.Lambda.Value), mat.DenseCopyOf(v.Gamma.Value)
		}
	}
	rng := rand.New(rand.NewSource(11))
	data := regression{adaptertest.RandDense(rng, 32, widths[0]), adaptertest.RandDense(rng, 32, widths[len(widths)-1])}
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 5, BatchSize: 8, LR: 1e-2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	checkFrozen("after peft.Train")
	for _, p := range m.Params() {
		p.ZeroGrad()
	}
	m.Loss(data.Sample(rand.New(rand.NewSource(12)), 8)).Backward()
	peft.NewAdamW(0).Step(append(peft.TrainableOf(m), a, b), 1e-2)
	checkFrozen("after an optimizer step")
}

// TestDropoutOnAdapterInputOnly: dropout acts on the adapter's input, never
// on the base layer's, and only in training.
func TestDropoutOnAdapterInputOnly(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	m := adaptertest.NewChain(1, []string{"fc"}, 6, 4)
	x := peft.NewConst(adaptertest.RandDense(rng, 5, 6))
	base := mat.DenseCopyOf(m.Forward(x).Value)
	as, err := randlora.Add(m, randlora.Config{R: 2, Dropout: 0.5, Targets: []string{"fc"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	m.SetTraining(true)
	if !mat.Equal(m.Forward(x).Value, base) {
		t.Error("with Λ = 0, the training output differs from the base: dropout reached the base layer")
	}
	randomize(rng, as)
	m.SetTraining(false)
	eval := mat.DenseCopyOf(m.Forward(x).Value)
	if !mat.Equal(m.Forward(x).Value, eval) {
		t.Error("evaluation output is not deterministic")
	}
	m.SetTraining(true)
	if mat.EqualApprox(m.Forward(x).Value, eval, 1e-9) {
		t.Error("dropout changed nothing in training")
	}
}

// TestSparseBases: the sparse bases are ternary, {−c, 0, c} with c the
// scale that gives unit spread, with the zero fraction PEFT's
// probabilities give: 2/3 for SparseBasis, 1 − 1/√m_max for
// VerySparseBasis.
func TestSparseBases(t *testing.T) {
	for _, c := range []struct {
		kind     randlora.Basis
		wantZero float64
	}{{randlora.SparseBasis, 2.0 / 3}, {randlora.VerySparseBasis, 1 - 1/math.Sqrt(36)}} {
		a, b := randlora.NewBases(rand.New(rand.NewSource(1)), 4, 48, 36, c.kind)
		for _, p := range []*peft.Tensor{a, b} {
			vals := map[float64]int{}
			data := p.Value.RawMatrix().Data
			for _, v := range data {
				vals[math.Abs(v)]++
			}
			if len(vals) != 2 || vals[0] == 0 {
				t.Errorf("%v: %s takes the absolute values %v, want 0 and one scale", c.kind, p.Name, vals)
			}
			zero := float64(vals[0]) / float64(len(data))
			sigma := math.Sqrt(c.wantZero * (1 - c.wantZero) / float64(len(data))) // of the zero fraction
			if math.Abs(zero-c.wantZero) > 4*sigma {
				t.Errorf("%v: %s is %.3f zeros, want %.3f ± %.3f", c.kind, p.Name, zero, c.wantZero, 4*sigma)
			}
			if sd := sampleStd(p.Value); math.Abs(sd-1) > 1e-12 {
				t.Errorf("%v: %s has sample std %v, want 1", c.kind, p.Name, sd)
			}
			t.Logf("%v: %s %v is %.3f zeros", c.kind, p.Name, shapeOf(p), zero)
		}
	}
	// A tiny sparse draw would often be all zeros: it is drawn again.
	for seed := int64(0); seed < 20; seed++ {
		a, b := randlora.NewBases(rand.New(rand.NewSource(seed)), 1, 1, 1, randlora.SparseBasis)
		if a.Value.At(0, 0) == 0 || b.Value.At(0, 0) == 0 || math.IsNaN(a.Value.At(0, 0)) {
			t.Errorf("seed %d: 1×1 sparse bases %v, %v", seed, a.Value.At(0, 0), b.Value.At(0, 0))
		}
	}
}

func shapeOf(p *peft.Tensor) string { r, c := p.Dims(); return peft.ShapeOf(r, c) }

// TestBadConfig: invalid settings are errors naming the module, the field
// and the value, and attach nothing.
func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  randlora.Config
		want []string
	}{
		{randlora.Config{R: -1, Targets: []string{"b"}}, []string{"RandLoRA", "b", "r = -1"}},
		{randlora.Config{R: 2, Alpha: -1.5, Targets: []string{"b"}}, []string{"b", "randlora_alpha", "-1.5"}},
		{randlora.Config{R: 2, Alpha: math.Inf(1), Targets: []string{"b"}}, []string{"b", "randlora_alpha", "+Inf"}},
		{randlora.Config{R: 2, Dropout: 1, Targets: []string{"c"}}, []string{"c", "randlora_dropout", "1"}},
		{randlora.Config{R: 2, Dropout: math.NaN(), Targets: []string{"a"}}, []string{"a", "randlora_dropout", "NaN"}},
		{randlora.Config{R: 2, Basis: 7, Targets: []string{"a"}}, []string{"a", "basis", "Basis(7)"}},
		{randlora.Config{R: 2, Targets: []string{"nope"}}, []string{"nope", `"a", "b", "c"`}},
	} {
		m := newModel()
		_, err := randlora.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	// New refuses bases that do not fit the rank or are too small.
	rng := rand.New(rand.NewSource(1))
	a, b := randlora.NewBases(rng, 2, 6, 4, randlora.DenseBasis) // A (2×4), B (6×4): m_max 4, M_max 6, n_max 2
	for _, c := range []struct {
		d, k, r int
		want    []string
	}{
		{6, 5, 2, []string{"fc", "too small", "m_max ≥ 5"}},
		{7, 4, 2, []string{"fc", "too small", "M_max ≥ 7"}},
		{6, 4, 3, []string{"fc", "do not fit rank r = 3"}},
	} {
		_, err := randlora.New("fc", "default", c.d, c.k, a, b, randlora.Config{R: c.r}, rng)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("New for W (%d×%d), r = %d on A (2×4), B (6×4): %v", c.d, c.k, c.r, e)
		}
	}
}

// saved returns a model with a trained-looking RandLoRA adapter (r = 3,
// α = 7.5, dropout 0.1, sparse bases, seed 7) and the directory it was
// saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*randlora.RandLoRA, string) {
	t.Helper()
	m := newModel()
	as, err := randlora.Add(m, randlora.Config{R: 3, Alpha: 7.5, Dropout: 0.1, Basis: randlora.SparseBasis, Targets: names, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(14)), as)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, as, dir
}

// TestFile checks the saved layout (tensor names and shapes, every
// RandLoraConfig field with the value PEFT would write) and that a loaded
// adapter gives the same output, with its layers sharing one frozen pair of
// bases again, a pair of their own for each load.
func TestFile(t *testing.T) {
	m, as, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	// m_max = min(8, 8) = 8, n_max = ⌈8/3⌉ = 3; a: m 5, n 2; b: m 3, n 1; c: m 3, n 1.
	want := map[string][]int{
		"base_model.randlora_A": {3, 1, 8}, "base_model.randlora_B": {8, 3, 3}, // PEFT's [r, 1, m_max], [M_max, n_max, r]
		"base_model.model.a.randlora_lambda": {3, 2}, "base_model.model.a.randlora_gamma": {2, 5},
		"base_model.model.b.randlora_lambda": {3, 1}, "base_model.model.b.randlora_gamma": {1, 3},
		"base_model.model.c.randlora_lambda": {3, 1}, "base_model.model.c.randlora_gamma": {1, 3},
	}
	got := map[string][]int{}
	for _, n := range f.Names() {
		got[n] = f.Shape(n)
	}
	f.Close()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v,\nwant %v", got, want)
	}
	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	wantCfg := map[string]any{
		"peft_type": "RANDLORA", "r": 3.0, "randlora_alpha": 7.5, "randlora_dropout": 0.1,
		"target_modules": []any{"a", "b", "c"}, "projection_prng_key": 7.0, "save_projection": true,
		"sparse": true, "very_sparse": false, "fan_in_fan_out": false, "bias": "none", "modules_to_save": nil,
		"init_weights": true, "layers_to_transform": nil, "layers_pattern": nil,
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}

	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(15)), 6, 5))
	y := m.Forward(x).Value
	var first *peft.Tensor
	for load := 0; load < 2; load++ {
		fresh := newModel()
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(fresh.Forward(x).Value, y) {
			t.Errorf("load %d: output differs from the saved model's", load)
		}
		var ls []*randlora.RandLoRA
		for _, l := range fresh.Mods {
			ls = append(ls, l.ActiveAdapter().(*randlora.RandLoRA))
		}
		for i, v := range ls {
			if v.A != ls[0].A || v.B != ls[0].B {
				t.Errorf("load %d: %s does not share the first layer's bases", load, names[i])
			}
			if v.A.Trainable || !v.Lambda.Trainable || !v.Gamma.Trainable {
				t.Errorf("load %d: %s: A trainable %v, Λ %v, Γ %v; want false, true, true", load, names[i], v.A.Trainable, v.Lambda.Trainable, v.Gamma.Trainable)
			}
			if v.Alpha != 7.5 || v.Dropout != 0.1 || v.Basis != randlora.SparseBasis || v.Seed != 7 || v.Rank() != 3 || v.N != as[i].N {
				t.Errorf("load %d: %s: α %g, dropout %g, basis %v, seed %d, r %d, n %d; want 7.5, 0.1, sparse, 7, 3, %d",
					load, names[i], v.Alpha, v.Dropout, v.Basis, v.Seed, v.Rank(), v.N, as[i].N)
			}
		}
		if !mat.Equal(ls[0].A.Value, as[0].A.Value) || !mat.Equal(ls[0].B.Value, as[0].B.Value) {
			t.Errorf("load %d: the bases differ from the saved ones", load)
		}
		if load == 0 {
			first = ls[0].A
		} else if ls[0].A == first {
			t.Error("two loads share one A: a model's bases would change with another's")
		}
	}
}

// TestLoadPerModuleCopies: PEFT's files also hold every layer's copy of the
// shared bases, of the same 3-D shapes; gopeft loads them when they equal
// the shared ones.
func TestLoadPerModuleCopies(t *testing.T) {
	m, _, orig := saved(t)
	dir := adaptertest.CopyAdapter(t, orig)
	adaptertest.RewriteAdapter(t, dir, func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
		for _, n := range names {
			for _, b := range []string{"randlora_A", "randlora_B"} {
				ts["base_model.model."+n+"."+b] = ts["base_model."+b]
				shapes["base_model.model."+n+"."+b] = shapes["base_model."+b]
			}
		}
	})
	fresh := newModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(16)), 4, 5))
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("output differs from the saved model's")
	}
}

// TestLoadRefuses: a file without the bases (PEFT's save_projection false),
// bases or scalings that do not fit, a per-module copy that differs from the
// shared bases and options gopeft does not implement are errors naming what
// is wrong, and attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	// set replaces tensor name by m, stored with shape.
	set := func(name string, m func(ts map[string]*mat.Dense) *mat.Dense, shape ...int) adaptertest.Edit {
		return func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts[name], shapes[name] = m(ts), shape
		}
	}
	slice := func(name string, r, c int) func(ts map[string]*mat.Dense) *mat.Dense {
		return func(ts map[string]*mat.Dense) *mat.Dense { return mat.DenseCopyOf(ts[name].Slice(0, r, 0, c)) }
	}
	same := func(name string) func(ts map[string]*mat.Dense) *mat.Dense {
		return func(ts map[string]*mat.Dense) *mat.Dense { return ts[name] }
	}
	const sa, sb = "base_model.randlora_A", "base_model.randlora_B" // [3 1 8], [8 3 3]
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "save_projection false", Edit: func(cfg map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			cfg["save_projection"] = false
			ts[sa], ts[sb] = nil, nil
		}, Want: []string{"save_projection", "projection_prng_key"}},
		{What: "no randlora_A", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts[sa] = nil
		}, Want: []string{sa, "missing", "[3 1 *]", "save_projection"}},
		{What: "no randlora_B", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts[sb] = nil
		}, Want: []string{sb, "missing", "[* * 3]"}},
		{What: "randlora_A of another rank", Edit: set(sa, slice(sa, 2, 8), 2, 1, 8), Want: []string{sa, "[2 1 8]", "[3 1 *]", "r = 3"}},
		{What: "randlora_B of another rank", Edit: set(sb, same(sb), 8, 9, 1), Want: []string{sb, "[8 9 1]", "[* * 3]", "r = 3"}},
		{What: "randlora_A 2-D, gopeft's old layout", Edit: set(sa, same(sa), 3, 8), Want: []string{sa, "[3 8]", "[3 1 *]"}},
		{What: "randlora_B 2-D, gopeft's old layout", Edit: set(sb, same(sb), 8, 9), Want: []string{sb, "[8 9]", "[* * 3]"}},
		{What: "randlora_A with a middle dimension", Edit: set(sa, same(sa), 3, 2, 4), Want: []string{sa, "[3 2 4]", "[3 1 *]"}},
		{What: "r missing", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg, "r")
		}, Want: []string{`"r"`, "missing", "r = 32"}},
		{What: "randlora_A too narrow", Edit: set(sa, slice(sa, 3, 4), 3, 1, 4), Want: []string{"[3 1 4]", "a", "(8×5)", "m_max ≥ 5"}},
		{What: "randlora_B too short", Edit: set(sb, slice(sb, 7, 9), 7, 3, 3), Want: []string{"[7 3 3]", "M_max ≥ 8"}},
		{What: "randlora_B with too few bases", Edit: set(sb, slice(sb, 8, 3), 8, 1, 3), Want: []string{"[8 1 3]", "a", "n_max ≥ 2"}},
		{What: "Λ of another shape", Edit: set("base_model.model.a.randlora_lambda", func(map[string]*mat.Dense) *mat.Dense {
			return mat.NewDense(3, 1, []float64{1, 2, 3})
		}, 3, 1), Want: []string{"randlora_lambda", "[3 1]", "(3×2)", "(8×5)"}},
		{What: "Γ of another shape", Edit: set("base_model.model.c.randlora_gamma", func(map[string]*mat.Dense) *mat.Dense {
			return mat.NewDense(1, 2, []float64{1, 2})
		}, 1, 2), Want: []string{"randlora_gamma", "[1 2]", "(1×3)"}},
		{What: "a per-module copy differs", Edit: set("base_model.model.b.randlora_B", func(ts map[string]*mat.Dense) *mat.Dense {
			cp := mat.DenseCopyOf(ts[sb])
			cp.Set(0, 0, cp.At(0, 0)+1)
			return cp
		}, 8, 3, 3), Want: []string{"base_model.model.b.randlora_B", "differs"}},
		{What: "a per-module copy of another shape", Edit: set("base_model.model.b.randlora_A", same(sa), 3, 8),
			Want: []string{"base_model.model.b.randlora_A", "[3 8]", "[3 1 8]"}},
		{What: "bias all", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["bias"] = "all"
		}, Want: []string{"bias", "all"}},
		{What: "fan_in_fan_out", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["fan_in_fan_out"] = true
		}, Want: []string{"fan_in_fan_out"}},
		{What: "negative alpha", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["randlora_alpha"] = -3
		}, Want: []string{"randlora_alpha", "-3"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["lora_alpha"] = 8
		}, Want: []string{"lora_alpha", "RandLoRA"}},
	})
}

// TestSaveRefusesTwoPairs: one adapter name on layers of two Add calls has
// two pairs of bases, which PEFT's file cannot hold.
func TestSaveRefusesTwoPairs(t *testing.T) {
	m := newModel()
	for _, target := range []string{"a", "b"} {
		if _, err := randlora.Add(m, randlora.Config{R: 2, Targets: []string{target}, Seed: 1}); err != nil {
			t.Fatal(err)
		}
	}
	err := peft.SaveAdapter(filepath.Join(t.TempDir(), "x"), m, "")
	if e := adaptertest.ErrorMentions(err, "different RandLoRA bases", "a", "b"); e != nil {
		t.Error(e)
	}
}

// TestTorchCrossCheck saves an adapter and has testdata/randlora_torch.py
// recompute, with PyTorch in float64 after HuggingFace PEFT's RandLoRA layer
// (its 3-D bases, UniqueBaseGrad's product, the flattenings and the
// orientation test of get_scaled_bases), each layer's output and ΔW from the
// saved files; they must equal gopeft's to 1e-12. It is skipped where
// /usr/bin/python3 cannot import torch and numpy (Debian's python3-torch).
func TestTorchCrossCheck(t *testing.T) {
	m, as, adir := saved(t)
	root := filepath.Dir(adir)
	xs, res := adaptertest.RunTorch(t, m, "testdata/randlora_torch.py", root, 16, 5)
	if len(res.Outputs) != len(names) || len(res.Deltas) != len(names) {
		t.Fatalf("torch computed %d outputs and %d deltas, want %d", len(res.Outputs), len(res.Deltas), len(names))
	}
	for i, l := range m.Mods {
		d, k := l.W.Dims()
		got := l.Forward(peft.NewConst(xs[l.Name])).Value
		diff := relDiff(got, adaptertest.FromHexes(t, res.Outputs[l.Name], 5, d))
		ddiff := relDiff(as[i].Delta(), adaptertest.FromHexes(t, res.Deltas[l.Name], d, k))
		if diff > 1e-12 || ddiff > 1e-12 {
			t.Errorf("%s: gopeft's output and ΔW differ from torch's by %.3g and %.3g relative", l.Name, diff, ddiff)
		}
		t.Logf("%s W %s: output %.3g, ΔW %.3g relative to torch", l.Name, peft.ShapeOf(d, k), diff, ddiff)
	}
}
