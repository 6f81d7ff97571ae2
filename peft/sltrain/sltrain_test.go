package sltrain_test

import (
	"context"
	"math"
	"math/rand"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/sltrain"
	"gonum.org/v1/gonum/mat"
)

// suiteCase is the conformance case of SLTrain with δ = 0.3 (the suite's
// layers, (4×5) and (3×4), get 6 and 3 entries).
//
// As the paper's method (KeepBase false) SLTrain replaces W₀: its output at
// init is x·Sᵀ + b, not the base model's, so ZeroAtInit is false; the suite
// still checks that disabling the adapters gives the base model exactly,
// that merging writes s·B·A + S into W and unmerging restores W₀ bit for
// bit. With KeepBase the update is added to W₀ and is zero at init.
func suiteCase(keepBase bool) adaptertest.Case {
	return adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := sltrain.Add(m, sltrain.Config{R: o.R, Alpha: o.Alpha, Delta: 0.3, KeepBase: keepBase, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(as), err
		},
		ZeroAtInit: keepBase,
	}
}

func TestSuite(t *testing.T) { adaptertest.Run(t, suiteCase(false)) }

func TestSuiteKeepBase(t *testing.T) { adaptertest.Run(t, suiteCase(true)) }

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("sltrain")
	if !ok || m.Format == nil || m.Format.PEFTType != "GOPEFT_SLTRAIN" || m.Kind != peft.AdapterMethod {
		t.Fatalf("LookupMethod(sltrain) = %v, %v", m, ok)
	}
	t.Log(m)
}

// The test model: two layers, a: W (12×10) and b: W (5×12).
var (
	names  = []string{"a", "b"}
	widths = []int{10, 12, 5}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// offSupport returns the largest |entry| of s outside omega.
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

// affineRef returns x·wᵀ + b.
func affineRef(x, w, b *mat.Dense) *mat.Dense {
	var h mat.Dense
	h.Mul(x, w.T())
	n, d := h.Dims()
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			h.Set(i, j, h.At(i, j)+b.At(0, j))
		}
	}
	return &h
}

// TestInit checks the paper's init, nnz(S) = ⌊δ·d·k⌋ on a valid support,
// A and S's values within ±1/√k, B = 0, so that the output is x·Sᵀ + b
// (and with KeepBase, S = 0 and the base model's output exactly), and
// r·(d+k) + ⌊δ·d·k⌋ trained numbers per layer.
func TestInit(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, keep := range []bool{false, true} {
		m := newModel()
		x := adaptertest.RandDense(rng, 4, 10)
		base := mat.DenseCopyOf(m.Forward(peft.NewConst(x)).Value)
		as, err := sltrain.Add(m, sltrain.Config{R: 3, Delta: 0.25, KeepBase: keep, Targets: names, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for i, a := range as {
			d, k := widths[i+1], widths[i]
			n := int(math.Floor(0.25 * float64(d*k)))
			want += 3*(d+k) + n
			omega := a.Support()
			if len(omega) != n || a.N() != n || a.S.Value.RawMatrix().Cols != n {
				t.Errorf("keep=%v %s: |Ω| = %d, N() = %d, %d values; want ⌊δ·d·k⌋ = %d", keep, names[i], len(omega), a.N(), a.S.Value.RawMatrix().Cols, n)
			}
			if !slices.IsSorted(omega) || len(slices.Compact(slices.Clone(omega))) != len(omega) || omega[0] < 0 || omega[len(omega)-1] >= d*k {
				t.Errorf("keep=%v %s: Ω = %v is not a support of (%d×%d)", keep, names[i], omega, d, k)
			}
			bound := 1 / math.Sqrt(float64(k))
			if v := adaptertest.MaxAbs(a.A.Value); v == 0 || v > bound {
				t.Errorf("keep=%v %s: max|A| = %g, want in (0, %g]", keep, names[i], v, bound)
			}
			if adaptertest.MaxAbs(a.B.Value) != 0 {
				t.Errorf("keep=%v %s: B ≠ 0 at init", keep, names[i])
			}
			v := adaptertest.MaxAbs(a.S.Value)
			if keep && v != 0 {
				t.Errorf("keep=%v %s: S ≠ 0 at init", keep, names[i])
			}
			if !keep && (v == 0 || v > bound || offSupport(a.Sparse(), omega) != 0) {
				t.Errorf("keep=%v %s: max|S| = %g (off Ω %g), want in (0, %g] and 0 off Ω", keep, names[i], v, offSupport(a.Sparse(), omega), bound)
			}
			if !keep {
				xi := adaptertest.RandDense(rng, 4, k)
				want := affineRef(xi, a.Sparse(), m.Mods[i].B.Value)
				if d := adaptertest.RelDiffMax(m.Mods[i].Forward(peft.NewConst(xi)).Value, want); d > 1e-14 {
					t.Errorf("keep=%v %s: output at init differs from x·Sᵀ + b by %.3g", keep, names[i], d)
				}
			}
		}
		if got := m.Forward(peft.NewConst(x)).Value; keep != mat.Equal(got, base) {
			t.Errorf("keep=%v: output at init equals the base model's: %v", keep, !keep)
		}
		if n, _, _ := peft.TrainableParams(m); n != want {
			t.Errorf("keep=%v: %d trainable parameters, want Σ r·(d+k) + ⌊δ·d·k⌋ = %d", keep, n, want)
		}
	}
}

// TestRandomSupport checks that Ω is drawn uniformly: over 4000 draws of 6
// of the 20 entries of a (4×5), each entry is picked with frequency 0.3
// (within 4.5 standard deviations), and a seed gives one Ω.
func TestRandomSupport(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	const draws = 4000
	count := make([]int, 20)
	for n := 0; n < draws; n++ {
		omega := sltrain.RandomSupport(rng, 4, 5, 0.3)
		if len(omega) != 6 || !slices.IsSorted(omega) || len(slices.Compact(slices.Clone(omega))) != 6 {
			t.Fatalf("RandomSupport(4, 5, 0.3) = %v: want 6 distinct increasing indices", omega)
		}
		for _, f := range omega {
			count[f]++
		}
	}
	p := 0.3
	sd := math.Sqrt(draws * p * (1 - p))
	for f, c := range count {
		if math.Abs(float64(c)-draws*p) > 4.5*sd {
			t.Errorf("entry %d drawn %d times in %d, want about %g ± %.0f", f, c, draws, draws*p, sd)
		}
	}
	a := sltrain.RandomSupport(rand.New(rand.NewSource(9)), 30, 40, 0.05)
	b := sltrain.RandomSupport(rand.New(rand.NewSource(9)), 30, 40, 0.05)
	if !slices.Equal(a, b) || len(a) != 60 {
		t.Errorf("one seed gave two supports, or not ⌊δ·d·k⌋ = 60 entries: %d, %d", len(a), len(b))
	}
}

// regression is a Dataset of inputs and the outputs of a random teacher
// chain.
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

func (d regression) EvalBatches() []peft.Batch { return []peft.Batch{{X: d.x, Y: d.y}} }

func newRegression(seed int64) regression {
	rng := rand.New(rand.NewSource(seed))
	x := adaptertest.RandDense(rng, 64, widths[0])
	teacher := adaptertest.NewChain(seed, names, widths...)
	return regression{x, mat.DenseCopyOf(teacher.Forward(peft.NewConst(x)).Value)}
}

// TestPretrain trains from scratch with Pretrain: the biases train, the
// replaced W₀ stay frozen, unchanged and without gradient, the loss falls;
// through all the steps Ω stays the same, S has exactly ⌊δ·d·k⌋ values and
// is 0 off Ω, in S and in the merged weight minus s·B·A.
func TestPretrain(t *testing.T) {
	m := newModel()
	as, err := sltrain.Add(m, sltrain.Config{R: 2, Alpha: 4, Delta: 0.2, Pretrain: true, Targets: names, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	omega := [][]int{as[0].Support(), as[1].Support()}
	w0 := []*mat.Dense{mat.DenseCopyOf(m.Mods[0].W.Value), mat.DenseCopyOf(m.Mods[1].W.Value)}
	b0 := []*mat.Dense{mat.DenseCopyOf(m.Mods[0].B.Value), mat.DenseCopyOf(m.Mods[1].B.Value)}
	want := 0
	for i, l := range m.Mods {
		if l.W.Trainable || !l.B.Trainable {
			t.Errorf("%s: W₀ trainable %v, bias trainable %v; want false, true", l.Name, l.W.Trainable, l.B.Trainable)
		}
		d, k := widths[i+1], widths[i]
		want += 2*(d+k) + int(0.2*float64(d*k)) + d
	}
	if n, _, _ := peft.TrainableParams(m); n != want {
		t.Errorf("%d trainable parameters, want Σ r·(d+k) + ⌊δ·d·k⌋ + d = %d", n, want)
	}
	data := newRegression(6)
	h, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 400, BatchSize: 16, LR: 1e-2, WeightDecay: 0.1, EvalEvery: 400, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if first, last := h.Loss[0], h.EvalLoss[0]; !(last < 0.3*first) {
		t.Errorf("loss %.4f → %.4f: want it below 30%%", first, last)
	}
	t.Logf("loss %.4f → %.4f in 400 steps", h.Loss[0], h.EvalLoss[0])
	for i, a := range as {
		l := m.Mods[i]
		if !mat.Equal(l.W.Value, w0[i]) || (l.W.Grad != nil && adaptertest.MaxAbs(l.W.Grad) != 0) {
			t.Errorf("%s: the replaced W₀ changed or got a gradient", l.Name)
		}
		if mat.Equal(l.B.Value, b0[i]) {
			t.Errorf("%s: the bias did not train", l.Name)
		}
		if !slices.Equal(a.Support(), omega[i]) || a.S.Value.RawMatrix().Cols != len(omega[i]) {
			t.Errorf("%s: Ω moved or S changed size", l.Name)
		}
		if v := offSupport(a.Sparse(), omega[i]); v != 0 {
			t.Errorf("%s: S has an entry of %g off Ω", l.Name, v)
		}
		var lowRank, sparse mat.Dense
		lowRank.Mul(a.B.Value, a.A.Value)
		lowRank.Scale(a.Scaling(), &lowRank)
		sparse.Sub(a.MergedWeight(l.W.Value), &lowRank)
		if v := offSupport(&sparse, omega[i]); v > 1e-15 {
			t.Errorf("%s: W − s·B·A has an entry of %g off Ω", l.Name, v)
		}
	}
}

// singularValues returns the singular values of a, descending.
func singularValues(a mat.Matrix) []float64 {
	var svd mat.SVD
	svd.Factorize(a, mat.SVDNone)
	return svd.Values(nil)
}

// numRank returns the number of singular values of a above 1e-10 times the
// largest.
func numRank(a mat.Matrix) int {
	sv := singularValues(a)
	n := 0
	for _, s := range sv {
		if s > 1e-10*sv[0] {
			n++
		}
	}
	return n
}

// TestRank: rank(s·B·A) ≤ r, but rank(s·B·A + S) is full, min(d, k) = 10,
// for a (12×10) weight of rank r = 2 and δ = 0.3, for every seed tried and
// after training too.
func TestRank(t *testing.T) {
	for seed := int64(1); seed <= 6; seed++ {
		m := adaptertest.NewChain(seed, []string{"a"}, 10, 12)
		as, err := sltrain.Add(m, sltrain.Config{R: 2, Delta: 0.3, Targets: []string{"a"}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		a := as[0]
		// B as after some training.
		a.B.Value.Copy(adaptertest.RandDense(rand.New(rand.NewSource(seed+10)), 12, 2))
		var lowRank mat.Dense
		lowRank.Mul(a.B.Value, a.A.Value)
		if r := numRank(&lowRank); r > 2 {
			t.Errorf("seed %d: rank(s·B·A) = %d > r = 2", seed, r)
		}
		if r := numRank(a.Weight()); r != 10 {
			t.Errorf("seed %d: rank(s·B·A + S) = %d, want min(d, k) = 10 (σ = %.3g)", seed, r, singularValues(a.Weight()))
		}
		if seed == 1 {
			t.Logf("seed 1: rank S = %d, rank(s·B·A) = %d, rank(s·B·A + S) = %d; σ(s·B·A + S) = %.3g",
				numRank(a.Sparse()), numRank(&lowRank), numRank(a.Weight()), singularValues(a.Weight()))
		}
	}
	m := adaptertest.NewChain(1, []string{"a"}, 10, 12)
	as, err := sltrain.Add(m, sltrain.Config{R: 2, Delta: 0.3, Pretrain: true, Targets: []string{"a"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	x := adaptertest.RandDense(rng, 64, 10)
	data := regression{x, adaptertest.RandDense(rng, 64, 12)}
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 200, BatchSize: 16, LR: 1e-2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if r := numRank(as[0].Weight()); r != 10 {
		t.Errorf("after training: rank(s·B·A + S) = %d, want 10", r)
	}
}

// TestSparseGradient checks the scatter's backward against the dense
// gradient: the gradient of a loss with respect to S's values is the
// gradient with respect to the weight W = s·B·A + S gathered at Ω.
func TestSparseGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	m := adaptertest.NewChain(1, []string{"fc"}, 5, 7)
	as, err := sltrain.Add(m, sltrain.Config{R: 2, Alpha: 3, Delta: 0.3, Targets: []string{"fc"}, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	a.B.Value.Copy(adaptertest.RandDense(rng, 7, 2))
	x := peft.NewConst(adaptertest.RandDense(rng, 4, 5))
	wts := peft.NewConst(adaptertest.RandDense(rng, 4, 7))
	peft.SumAll(peft.Mul(m.Forward(x), wts)).Backward()

	l := m.Mods[0]
	w := peft.NewParam("W", a.Weight())
	peft.SumAll(peft.Mul(peft.Affine(x, w, l.B), wts)).Backward()
	gw := w.Grad.RawMatrix().Data
	for t2, f := range a.Support() {
		if got, want := a.S.Grad.At(0, t2), gw[f]; math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
			t.Errorf("∂L/∂s[%d] = %g, want (∂L/∂W)[Ω[%d] = %d] = %g", t2, got, t2, f, want)
		}
	}
}

// TestBadConfig: each bad setting is an error naming the module, the field
// and the value, and leaves no adapter behind and nothing unfrozen.
func TestBadConfig(t *testing.T) {
	base := sltrain.Config{R: 2, Delta: 0.2, Targets: []string{"b"}}
	with := func(f func(*sltrain.Config)) sltrain.Config { c := base; f(&c); return c }
	for _, c := range []struct {
		what string
		cfg  sltrain.Config
		want []string
	}{
		{"rank 0", with(func(c *sltrain.Config) { c.R = 0 }), []string{"b", "rank r = 0"}},
		{"rank above min(d, k)", with(func(c *sltrain.Config) { c.R = 6 }), []string{"b", "rank r = 6", "min(d, k) = 5"}},
		{"negative alpha", with(func(c *sltrain.Config) { c.Alpha = -2.5 }), []string{"b", "alpha = -2.5"}},
		{"Delta 1", with(func(c *sltrain.Config) { c.Delta = 1 }), []string{"b", "Delta = 1", "(0, 1)"}},
		{"negative Delta", with(func(c *sltrain.Config) { c.Delta = -0.1 }), []string{"b", "Delta = -0.1"}},
		{"NaN Delta", with(func(c *sltrain.Config) { c.Delta = math.NaN() }), []string{"b", "Delta = NaN"}},
		{"Delta too small", with(func(c *sltrain.Config) { c.Delta = 0.01 }), []string{"b", "Delta = 0.01", "0 entries", "(5×12)"}},
		{"Pretrain with KeepBase", with(func(c *sltrain.Config) { c.Pretrain, c.KeepBase = true, true }), []string{"b", "Pretrain = true", "KeepBase = true"}},
		{"unknown target", with(func(c *sltrain.Config) { c.Targets = []string{"zz"} }), []string{"zz"}},
	} {
		m := newModel()
		_, err := sltrain.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%s: %v", c.what, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%s: %s kept an adapter", c.what, l.Name)
			}
		}
	}
	// The default δ on a layer too small for it.
	tiny := adaptertest.NewChain(1, []string{"t"}, 3, 2)
	if _, err := sltrain.Add(tiny, sltrain.Config{R: 1, Targets: []string{"t"}}); adaptertest.ErrorMentions(err, "t", "Delta = 0.03", "default", "0 entries") != nil {
		t.Errorf("default δ on (2×3): %v", err)
	}
	// New refuses a support that is not one, or not of ⌊δ·d·k⌋ entries.
	rng := rand.New(rand.NewSource(1))
	for _, c := range []struct {
		omega []int
		want  string
	}{{nil, "empty"}, {[]int{3, 3, 4, 5}, "Ω[1] = 3"}, {[]int{0, 1, 2, 20}, "Ω[3] = 20"}, {[]int{1, 2, 3}, "3 entries"}, {[]int{1, 2, 3, 4, 5}, "5 entries"}} {
		if _, err := sltrain.New("fc", "default", 4, 5, c.omega, sltrain.Config{R: 2, Delta: 0.2}, rng); adaptertest.ErrorMentions(err, "fc", c.want) != nil {
			t.Errorf("New with Ω = %v: error %v, want one naming fc and %q", c.omega, err, c.want)
		}
	}
	func() {
		defer func() {
			if _, ok := recover().(peft.ArgError); !ok {
				t.Error("RandomSupport with δ giving no entry did not panic with an ArgError")
			}
		}()
		sltrain.RandomSupport(rng, 2, 3, 0.1)
	}()
}
