package abmll_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/abmll"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite. With ε = 0 (the state after Add
// and after loading) the output is the base model's bit for bit at init
// (B_μ = 0). The suite's gradient check then sees zero gradients for the σ
// pair; TestGradientsWithNoise checks them with ε ≠ 0.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := abmll.Add(m, abmll.Config{R: o.R, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(as), err
		},
		ZeroAtInit: true,
		NoAlpha:    true, // B_μ·A_μ carries the scale
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("abmll")
	if !ok {
		t.Fatal("ABMLL is not registered")
	}
	if m.Name != "ABMLL" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_ABMLL" ||
		m.Package != "github.com/gopeft/gopeft/peft/abmll" || !strings.Contains(m.Paper, "arXiv:2508.14285") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// chain is the test model: a (7×5), b (4×7).
func chain() *adaptertest.Chain { return adaptertest.NewChain(1, []string{"a", "b"}, 5, 7, 4) }

// randomize gives every factor random entries and every ε a draw, as in
// the middle of training.
func randomize(rng *rand.Rand, as []*abmll.ABMLL) {
	for _, a := range as {
		for _, p := range a.Params() {
			r, c := p.Dims()
			v := adaptertest.RandDense(rng, r, c)
			v.Scale(0.5, v)
			p.Value.Copy(v)
		}
		a.Resample(rng)
	}
}

// TestGradientsWithNoise checks the gradients of all four factors, the σ
// pair's through exp (expOf), against central differences with ε ≠ 0, to
// 1e-6 relative, and that the merged weight W₀ + μ + σ⊙ε gives the
// forward output.
func TestGradientsWithNoise(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	m := chain()
	as, err := abmll.Add(m, abmll.Config{R: 2, Targets: []string{"a", "b"}, SigmaInit: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rng, as)
	x := peft.NewConst(adaptertest.RandDense(rng, 3, 5))
	wts := peft.NewConst(adaptertest.RandDense(rng, 3, 4))
	loss := func() *peft.Tensor { return peft.SumAll(peft.Mul(m.Forward(x), wts)) }
	var worst float64
	for _, a := range as {
		for _, p := range a.Params() {
			p.ZeroGrad()
		}
	}
	loss().Backward()
	for _, a := range as {
		for _, p := range a.Params() {
			got := mat.DenseCopyOf(p.Grad).RawMatrix().Data
			_, cols := p.Dims()
			x0 := append([]float64(nil), p.Value.RawMatrix().Data...)
			set := func(v []float64) {
				for j, e := range v {
					p.Value.Set(j/cols, j%cols, e)
				}
			}
			num := fd.Gradient(nil, func(v []float64) float64 { set(v); return loss().Scalar() }, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
			set(x0)
			for j := range num {
				worst = math.Max(worst, math.Abs(got[j]-num[j])/math.Max(math.Max(math.Abs(got[j]), math.Abs(num[j])), 1e-3))
			}
		}
	}
	t.Logf("max relative error of the factors' gradients vs central differences: %.3g", worst)
	if worst > 1e-6 {
		t.Errorf("gradients off by %.3g relative, want ≤ 1e-6", worst)
	}
	want := m.Forward(x).Value
	for i, l := range m.Mods {
		w := as[i].MergedWeight(l.W.Value)
		l.W.Value.Copy(w)
		l.DisableAdapters()
	}
	if d := adaptertest.RelDiffMax(m.Forward(x).Value, want); d > 1e-12 {
		t.Errorf("W₀ + μ + σ⊙ε gives an output %.3g off the adapter's", d)
	}
}

// TestExpOf checks the exp node: value exp(x) to 1e-15 relative and
// gradient exp(x)⊙g against central differences.
func TestExpOf(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	x0 := adaptertest.RandDense(rng, 3, 4)
	x := peft.NewParam("x", x0)
	g := adaptertest.RandDense(rng, 3, 4)
	y := abmll.ExpOf(x)
	var want mat.Dense
	want.Apply(func(_, _ int, v float64) float64 { return math.Exp(v) }, x0)
	if d := adaptertest.RelDiffMax(y.Value, &want); d > 1e-15 {
		t.Errorf("value off exp(x) by %.3g relative", d)
	}
	peft.SumAll(peft.Mul(y, peft.NewConst(g))).Backward()
	var wantG mat.Dense
	wantG.MulElem(&want, g)
	if d := adaptertest.RelDiffMax(x.Grad, &wantG); d > 1e-14 {
		t.Errorf("gradient off exp(x)⊙g by %.3g relative", d)
	}
}

// TestKLMonteCarlo checks the closed-form KL of two diagonal Gaussians
// (12 entries) against a Monte Carlo estimate from 20,000 draws of q,
// within 3 standard errors; and that the graph's log-space KL has the same
// value (1e-12) and gradients that match central differences (1e-6).
func TestKLMonteCarlo(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	const d, k = 3, 4
	muQ, muP := adaptertest.RandDense(rng, d, k), adaptertest.RandDense(rng, d, k)
	rhoQ, rhoP := adaptertest.RandDense(rng, d, k), adaptertest.RandDense(rng, d, k)
	rhoQ.Scale(0.3, rhoQ)
	rhoP.Scale(0.3, rhoP)
	sig := func(rho *mat.Dense) *mat.Dense {
		var s mat.Dense
		s.Apply(func(_, _ int, v float64) float64 { return math.Exp(v) }, rho)
		return &s
	}
	sQ, sP := sig(rhoQ), sig(rhoP)
	kl := abmll.KL(muQ, sQ, muP, sP)
	const n = 20000
	var sum, sq float64
	for s := 0; s < n; s++ {
		var lr float64 // log q(w) − log p(w), w ~ q
		for i := 0; i < d; i++ {
			for j := 0; j < k; j++ {
				e := rng.NormFloat64()
				w := muQ.At(i, j) + sQ.At(i, j)*e
				zp := (w - muP.At(i, j)) / sP.At(i, j)
				lr += -math.Log(sQ.At(i, j)) - e*e/2 + math.Log(sP.At(i, j)) + zp*zp/2
			}
		}
		sum += lr
		sq += lr * lr
	}
	mc := sum / n
	se := math.Sqrt((sq/n - mc*mc) / n)
	t.Logf("KL closed form %.5f, Monte Carlo %.5f ± %.5f (1 s.e., %d draws)", kl, mc, se, n)
	if math.Abs(mc-kl) > 3*se {
		t.Errorf("closed-form KL %.5f is %.1f standard errors from the Monte Carlo %.5f", kl, math.Abs(mc-kl)/se, mc)
	}
	// The graph's KL, in log space.
	ps := []*peft.Tensor{peft.NewParam("muQ", muQ), peft.NewParam("rhoQ", rhoQ), peft.NewParam("muP", muP), peft.NewParam("rhoP", rhoP)}
	f := func() *peft.Tensor { return abmll.KLTensor(ps[0], ps[1], ps[2], ps[3]) }
	if got := f().Scalar(); math.Abs(got-kl) > 1e-12*math.Abs(kl) {
		t.Errorf("log-space KL %.15g, closed form %.15g", got, kl)
	}
	f().Backward()
	var worst float64
	for _, p := range ps {
		x0 := append([]float64(nil), p.Value.RawMatrix().Data...)
		set := func(v []float64) { copy(p.Value.RawMatrix().Data, v) }
		num := fd.Gradient(nil, func(v []float64) float64 { set(v); return f().Scalar() }, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		for j, v := range num {
			a := p.Grad.RawMatrix().Data[j]
			worst = math.Max(worst, math.Abs(a-v)/math.Max(math.Abs(v), 1e-3))
		}
	}
	if worst > 1e-6 {
		t.Errorf("KL gradients off central differences by %.3g relative", worst)
	}
}

// TestReparameterizationUnbiased checks that the gradient of one sampled
// loss f(μ + σ⊙ε), averaged over draws of ε, estimates the gradient of
// E_ε f: on a linear model with squared error, E f is known in closed form,
//
//	E f = mean((x(W₀ + μ)ᵀ − y)²) + (1/(n·d)) Σ_{rows, i, j} x_j²·σ_ij²
//
// and its gradient in the four factors comes from central differences of
// that formula. Each of the 28 entries' Monte Carlo mean (4,000 draws) must
// lie within 4 standard errors, and the mean squared z-score near 1.
func TestReparameterizationUnbiased(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	const d, k, n = 3, 4, 5
	task := peft.NewTeacherTask(d, k, []float64{1}, n, 5)
	m := task.Model()
	as, err := abmll.Add(m, abmll.Config{R: 2, Targets: []string{"proj"}, SigmaInit: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	randomize(rng, as)
	b := peft.Batch{X: task.X, Y: task.Y}
	expected := func() float64 {
		var w, r mat.Dense
		w.Add(m.Layer.W.Value, a.Mean())
		r.Mul(b.X, w.T())
		r.Sub(&r, b.Y)
		s := a.Sigma()
		var e float64
		for i := 0; i < n; i++ {
			for o := 0; o < d; o++ {
				e += r.At(i, o) * r.At(i, o)
				for j := 0; j < k; j++ {
					e += b.X.At(i, j) * b.X.At(i, j) * s.At(o, j) * s.At(o, j)
				}
			}
		}
		return e / (n * d)
	}
	var want []float64
	for _, p := range a.Params() {
		x0 := append([]float64(nil), p.Value.RawMatrix().Data...)
		set := func(v []float64) { copy(p.Value.RawMatrix().Data, v) }
		want = append(want, fd.Gradient(nil, func(v []float64) float64 { set(v); return expected() }, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})...)
		set(x0)
	}
	const draws = 4000
	sum := make([]float64, len(want))
	sq := make([]float64, len(want))
	for s := 0; s < draws; s++ {
		a.Resample(rng)
		for _, p := range a.Params() {
			p.ZeroGrad()
		}
		m.Loss(b).Backward()
		i := 0
		for _, p := range a.Params() {
			for _, g := range p.Grad.RawMatrix().Data {
				sum[i] += g
				sq[i] += g * g
				i++
			}
		}
	}
	var worst, z2 float64
	for i := range want {
		mean := sum[i] / draws
		se := math.Sqrt(math.Max(sq[i]/draws-mean*mean, 1e-300) / draws)
		z := (mean - want[i]) / se
		worst = math.Max(worst, math.Abs(z))
		z2 += z * z
	}
	z2 /= float64(len(want))
	t.Logf("%d gradient entries: max |z| = %.2f, mean z² = %.2f", len(want), worst, z2)
	if worst > 4 || z2 < 0.4 || z2 > 1.8 {
		t.Errorf("reparameterized gradient looks biased: max |z| = %.2f (want ≤ 4), mean z² = %.2f (want ≈ 1)", worst, z2)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  abmll.Config
		want []string
	}{
		{abmll.Config{R: 0, Targets: []string{"a"}}, []string{"ABMLL on a", "R = 0", "(7×5)"}},
		{abmll.Config{R: 5, Targets: []string{"b"}}, []string{"ABMLL on b", "R = 5", "(4×7)", "min(d, k) = 4"}},
		{abmll.Config{R: 1, SigmaInit: -1, Targets: []string{"a"}}, []string{"ABMLL on a", "SigmaInit = -1"}},
		{abmll.Config{R: 1, SigmaInit: math.Inf(1), Targets: []string{"a"}}, []string{"ABMLL on a", "SigmaInit = +Inf"}},
	} {
		m := chain()
		_, err := abmll.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
	}
	m := peft.NewTeacherTask(3, 4, []float64{1}, 2, 1).Model()
	tasks := abmll.NewRegressionTasks(3, 4, []float64{1}, 0.1, 2, 2, 1)
	if _, err := abmll.MetaTrain(context.Background(), m, tasks, abmll.DefaultMetaConfig()); adaptertest.ErrorMentions(err, "no active ABMLL adapter") != nil {
		t.Errorf("MetaTrain without adapters: %v", err)
	}
	if _, err := abmll.Add(m, abmll.Config{R: 1, Targets: []string{"proj"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*abmll.MetaConfig)
		want string
	}{
		{func(c *abmll.MetaConfig) { c.MetaSteps = 0 }, "MetaSteps = 0"},
		{func(c *abmll.MetaConfig) { c.InnerLR = -1 }, "InnerLR = -1"},
		{func(c *abmll.MetaConfig) { c.Beta = math.NaN() }, "Beta = NaN"},
		{func(c *abmll.MetaConfig) { c.Gamma = 1; c.PriorStd = 0 }, "PriorStd = 0"},
		{func(c *abmll.MetaConfig) { c.TasksPerStep = 0 }, "TasksPerStep = 0"},
	} {
		cfg := abmll.DefaultMetaConfig()
		c.edit(&cfg)
		if _, err := abmll.MetaTrain(context.Background(), m, tasks, cfg); adaptertest.ErrorMentions(err, c.want, "MetaConfig") != nil {
			t.Errorf("want an error naming %q: %v", c.want, err)
		}
	}
}
