package maestro_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/maestro"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite. The suite's R = 2 is below
// min(out, in) of its layers, so the output at init is the best rank-2
// approximation's, not the base model's (TestInit checks R = min(out,
// in)). Maestro has no α. The rank change truncates both layers to one
// component.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			c, err := maestro.Add(m, maestro.Config{R: o.R, Targets: o.Targets, Seed: o.Seed})
			if err != nil {
				return nil, err
			}
			return adaptertest.Adapters(c.Layers), nil
		},
		NoAlpha: true,
		ChangeRank: func(ads []peft.Adapter) []int {
			for _, l := range maestro.As(ads) {
				l.Truncate(1)
			}
			return []int{1, 1}
		},
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("maestro")
	if !ok {
		t.Fatal("Maestro is not registered")
	}
	if m.Name != "Maestro" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_MAESTRO" ||
		m.Package != "github.com/gopeft/gopeft/peft/maestro" || !strings.Contains(m.Paper, "arXiv:2308.14929") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// TestInit checks that at R = min(out, in) the factors reproduce W₀ to
// 1e-12 relative (and the layer's output the base output), that
// ‖u_i‖ = ‖v_i‖ = √σ_i, and that Sigma is W₀'s spectrum; at R < min(out,
// in), that U·Vᵀ is the best rank-R approximation (its error is
// √(Σ_{i>R} σ_i²)).
func TestInit(t *testing.T) {
	for _, s := range []struct{ out, in int }{{5, 3}, {3, 5}, {1, 4}, {16, 16}, {24, 9}} {
		m := adaptertest.NewChain(2, []string{"a"}, s.in, s.out)
		w0 := mat.DenseCopyOf(m.Mods[0].W.Value)
		r := min(s.out, s.in)
		c, err := maestro.Add(m, maestro.Config{R: r, Targets: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		l := c.Layers[0]
		if d := adaptertest.RelDiffMax(l.Product(), w0); d > 1e-12 {
			t.Errorf("%d×%d: U·Vᵀ differs from W₀ by %.3g relative", s.out, s.in, d)
		}
		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(1)), 4, s.in))
		if d := adaptertest.RelDiffMax(m.Forward(x).Value, m.Mods[0].Base(x).Value); d > 1e-12 {
			t.Errorf("%d×%d: output differs from the base output by %.3g relative", s.out, s.in, d)
		}
		sv, err := accel.SingularValues(context.Background(), w0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < r; i++ {
			nu := mat.Norm(l.U.Value.ColView(i), 2)
			nv := mat.Norm(l.V.Value.ColView(i), 2)
			if math.Abs(nu*nv-sv[i]) > 1e-12*sv[0] || math.Abs(nu-nv) > 1e-12*math.Sqrt(sv[0]) || math.Abs(l.Sigma[i]-sv[i]) > 1e-12*sv[0] {
				t.Errorf("%d×%d component %d: ‖u‖ %g, ‖v‖ %g, Sigma %g; want √σ, √σ and σ = %g", s.out, s.in, i, nu, nv, l.Sigma[i], sv[i])
			}
		}
	}
	m := adaptertest.NewChain(2, []string{"a"}, 9, 12)
	w0 := mat.DenseCopyOf(m.Mods[0].W.Value)
	c, err := maestro.Add(m, maestro.Config{R: 4, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	var tail float64
	for _, s := range c.Layers[0].Sigma[4:] {
		tail += s * s
	}
	var diff mat.Dense
	diff.Sub(c.Layers[0].Product(), w0)
	if got := mat.Norm(&diff, 2); math.Abs(got-math.Sqrt(tail)) > 1e-12*math.Sqrt(tail) {
		t.Errorf("R = 4: ‖U·Vᵀ − W₀‖_F = %g, want the Eckart–Young %g", got, math.Sqrt(tail))
	}
}

// newLayer returns a layer a (7→6) with Maestro at K = 6 and random factors.
func newLayer(t *testing.T, cfg maestro.Config) (*adaptertest.Chain, *maestro.Maestro) {
	t.Helper()
	m := adaptertest.NewChain(1, []string{"a"}, 7, 6)
	cfg.R, cfg.Targets = 6, []string{"a"}
	c, err := maestro.Add(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(4))
	for _, p := range c.Layers[0].Params() {
		r, cols := p.Dims()
		p.Value.Copy(adaptertest.RandDense(rng, r, cols))
	}
	return m, c
}

// TestOrderedDropout checks that the output at width p is x·V_{:p}·U_{:p}ᵀ
// + b formed entry by entry (1e-13 relative), that changing components
// ≥ p leaves it bit for bit unchanged and that they get no gradient; and
// that while training each forward pass draws a width p from U{1..k},
// the same ones for the same seed.
func TestOrderedDropout(t *testing.T) {
	m, c := newLayer(t, maestro.Config{Seed: 5})
	ln, l := m.Mods[0], c.Layers[0]
	xm := adaptertest.RandDense(rand.New(rand.NewSource(6)), 3, 7)
	x := peft.NewConst(xm)
	outs := make([]*mat.Dense, 7)
	for p := 1; p <= 6; p++ {
		want := mat.NewDense(3, 6, nil)
		for n := 0; n < 3; n++ {
			for o := 0; o < 6; o++ {
				v := ln.B.Value.At(0, o)
				for i := 0; i < p; i++ {
					var xv float64
					for j := 0; j < 7; j++ {
						xv += xm.At(n, j) * l.V.Value.At(j, i)
					}
					v += xv * l.U.Value.At(o, i)
				}
				want.Set(n, o, v)
			}
		}
		l.U.ZeroGrad()
		l.V.ZeroGrad()
		h := l.Output(ln, x, p)
		peft.SumAll(h).Backward()
		outs[p] = mat.DenseCopyOf(h.Value)
		if d := adaptertest.RelDiffMax(h.Value, want); d > 1e-13 {
			t.Errorf("width %d: output differs from the formula by %.3g relative", p, d)
		}
		for i := p; i < 6; i++ {
			if mat.Norm(l.U.Grad.ColView(i), math.Inf(1)) != 0 || mat.Norm(l.V.Grad.ColView(i), math.Inf(1)) != 0 {
				t.Errorf("width %d: component %d got a gradient", p, i)
			}
		}
		if p < 6 {
			saved := mat.DenseCopyOf(l.U.Value)
			for r := 0; r < 6; r++ {
				l.U.Value.Set(r, 5, 100)
			}
			if !mat.Equal(l.Output(ln, x, p).Value, h.Value) {
				t.Errorf("width %d: the output depends on component 6", p)
			}
			l.U.Value.Copy(saved)
		}
	}
	widths := func(seed int64) []int {
		m, _ := newLayer(t, maestro.Config{Seed: seed})
		m.SetTraining(true)
		var ws []int
		for i := 0; i < 200; i++ {
			h := m.Forward(x).Value
			w := 0
			for p := 1; p <= 6; p++ {
				if mat.Equal(h, outs[p]) {
					w = p
				}
			}
			if w == 0 {
				t.Fatalf("training pass %d: the output is no width's", i)
			}
			ws = append(ws, w)
		}
		return ws
	}
	a, b, o := widths(5), widths(5), widths(6)
	count := make([]int, 7)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, pass %d: widths %d and %d", i, a[i], b[i])
		}
		if a[i] == o[i] {
			same++
		}
		count[a[i]]++
	}
	t.Logf("widths 1..6 drawn %v times in 200 passes; seeds 5 and 6 agree at %d", count[1:], same)
	for p := 1; p <= 6; p++ {
		if count[p] < 14 { // 33 expected, σ ≈ 5.3
			t.Errorf("width %d drawn %d times in 200, want about 33", p, count[p])
		}
	}
	if same > 70 {
		t.Errorf("seeds 5 and 6 draw the same width at %d of 200 passes, want about 33", same)
	}
}

// TestTruncation sets u_j = a_j·e_j, v_j = b_j·e_j so that the importances
// s_i = √(Σ_{j≥i} a_j²)·√(Σ_{j≥i} b_j²) are known, and checks that the
// controller, at its interval only, keeps exactly the components with
// s_i ≥ threshold (a prefix), leaves them bit for bit, zeroes the others,
// lowers the rank and merged weight's rank, and records the trace.
func TestTruncation(t *testing.T) {
	m, c := newLayer(t, maestro.Config{Threshold: 0.5, Interval: 3})
	l := c.Layers[0]
	a := []float64{2, 1.5, 1, 0.3, 0.2, 0.1}
	b := []float64{1, 2, 0.5, 0.4, 0.3, 0.2}
	l.U.Value.Zero()
	l.V.Value.Zero()
	for j := range a {
		l.U.Value.Set(j, j, a[j])
		l.V.Value.Set(j, j, b[j])
	}
	var want int // s_i ≥ 0.5 by direct sums
	for i := range a {
		var sa, sb float64
		for j := i; j < 6; j++ {
			sa += a[j] * a[j]
			sb += b[j] * b[j]
		}
		if math.Sqrt(sa)*math.Sqrt(sb) >= 0.5 {
			want = i + 1
		}
		if got := l.Importance()[i]; math.Abs(got-math.Sqrt(sa)*math.Sqrt(sb)) > 1e-15 {
			t.Errorf("importance %d: %g, want %g", i, got, math.Sqrt(sa)*math.Sqrt(sb))
		}
	}
	if want != 3 { // s = 6.40, 3.92, 0.785, 0.202, 0.081, 0.02
		t.Fatalf("the test's own expectation: %d components above 0.5, want 3", want)
	}
	u0, v0 := mat.DenseCopyOf(l.U.Value), mat.DenseCopyOf(l.V.Value)
	for step := 1; step <= 2; step++ {
		c.AfterStep(step)
		if l.Rank() != 6 {
			t.Fatalf("step %d, before the interval: rank %d, want 6", step, l.Rank())
		}
	}
	c.AfterStep(3)
	if l.Rank() != want || c.Ranks()[0] != want || peft.Ranks(m)["a"] != want {
		t.Errorf("after truncation: rank %d (Ranks %v, peft.Ranks %v), want %d", l.Rank(), c.Ranks(), peft.Ranks(m), want)
	}
	for _, f := range []struct {
		got, was *mat.Dense
	}{{l.U.Value, u0}, {l.V.Value, v0}} {
		r, _ := f.got.Dims()
		for j := 0; j < 6; j++ {
			for i := 0; i < r; i++ {
				if w := f.was.At(i, j); (j < want && f.got.At(i, j) != w) || (j >= want && f.got.At(i, j) != 0) {
					t.Fatalf("entry (%d, %d) is %g after truncation (was %g)", i, j, f.got.At(i, j), w)
				}
			}
		}
	}
	sv, err := accel.SingularValues(context.Background(), l.MergedWeight(m.Mods[0].W.Value))
	if err != nil {
		t.Fatal(err)
	}
	if sv[want-1] < 0.1 || sv[want] > 1e-12 {
		t.Errorf("merged weight's singular values %v: want rank %d", sv, want)
	}
	tr := c.Trace()
	if len(tr.Steps) != 1 || tr.Steps[0] != 3 || tr.Ranks[0][0] != want || tr.Budget[0] != want {
		t.Errorf("trace %+v, want one truncation at step 3 to %d", tr, want)
	}
	c.AfterStep(6) // nothing else is below: the rank stays
	if l.Rank() != want {
		t.Errorf("a second truncation changed the rank to %d", l.Rank())
	}
	l.TruncateBelow(1e9)
	if l.Rank() != 1 {
		t.Errorf("a threshold above everything left rank %d, want the minimum 1", l.Rank())
	}
}

// TestPenalty checks the hierarchical group lasso against its formula on
// random factors at a truncated width, and its gradient against central
// differences.
func TestPenalty(t *testing.T) {
	_, c := newLayer(t, maestro.Config{Lambda: 0.3})
	l := c.Layers[0]
	l.Truncate(4)
	var want float64
	for i := 0; i < 4; i++ {
		var su, sv float64
		for j := i; j < 4; j++ {
			su += math.Pow(mat.Norm(l.U.Value.ColView(j), 2), 2)
			sv += math.Pow(mat.Norm(l.V.Value.ColView(j), 2), 2)
		}
		want += math.Sqrt(su) + math.Sqrt(sv)
	}
	if got := c.Regularizer(1).Scalar(); math.Abs(got-0.3*want) > 1e-13*want {
		t.Errorf("regularizer %g, want λ·%g = %g", got, want, 0.3*want)
	}
	for _, p := range l.Params() {
		p.ZeroGrad()
		c.Regularizer(1).Backward()
		g := mat.DenseCopyOf(p.Grad)
		_, cols := p.Dims()
		x0 := mat.DenseCopyOf(p.Value).RawMatrix().Data
		num := fd.Gradient(nil, func(v []float64) float64 {
			for i, e := range v {
				p.Value.Set(i/cols, i%cols, e)
			}
			return c.Regularizer(1).Scalar()
		}, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		for i, e := range x0 {
			p.Value.Set(i/cols, i%cols, e)
		}
		for i := range num {
			if a := g.At(i/cols, i%cols); math.Abs(a-num[i]) > 1e-6*math.Max(1, math.Abs(num[i])) {
				t.Errorf("%s[%d]: gradient %g, central differences %g", p.Name, i, a, num[i])
			}
		}
	}
}

// TestBadConfig checks the controller's fields: errors name the field and
// value.
func TestBadConfig(t *testing.T) {
	for _, b := range []struct {
		cfg  maestro.Config
		want []string
	}{
		{maestro.Config{Lambda: -1}, []string{"Lambda", "-1"}},
		{maestro.Config{Threshold: math.NaN()}, []string{"Threshold", "NaN"}},
		{maestro.Config{Interval: -5}, []string{"Interval", "-5"}},
	} {
		b.cfg.R, b.cfg.Targets = 2, []string{"a"}
		_, err := maestro.Add(adaptertest.NewChain(1, []string{"a"}, 5, 4), b.cfg)
		if e := adaptertest.ErrorMentions(err, b.want...); e != nil {
			t.Error(e)
		}
	}
}
