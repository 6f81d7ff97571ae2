package trp

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// orthonormal returns a (d×p) matrix with orthonormal columns drawn from
// seed (Q of a Gaussian matrix's QR).
func orthonormal(d, p int, seed int64) *mat.Dense {
	rng := rand.New(rand.NewSource(seed))
	g := mat.NewDense(d, p, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < p; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(g)
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, d, 0, p))
}

// known returns W = U·diag(sigma)·Vᵀ (d×k) with U (d×p), V (k×p)
// orthonormal, p = len(sigma), and U, V.
func known(d, k int, sigma []float64, seed int64) (w, u, v *mat.Dense) {
	p := len(sigma)
	u, v = orthonormal(d, p, seed), orthonormal(k, p, seed+1)
	us := mat.DenseCopyOf(u)
	for j, s := range sigma {
		for i := 0; i < d; i++ {
			us.Set(i, j, us.At(i, j)*s)
		}
	}
	w = mat.NewDense(d, k, nil)
	w.Mul(us, v.T())
	return w, u, v
}

func maxAbsDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, math.Inf(1)) // max row sum ≥ max entry
}

func TestEnergyRank(t *testing.T) {
	for _, c := range []struct {
		sigma []float64
		e     float64
		want  int
	}{
		// 9/14.25 = 0.63 < 0.9 ≤ 13/14.25 = 0.91 (methods-b.md B15's case)
		{[]float64{3, 2, 1, 0.5}, 0.9, 2},
		{[]float64{3, 2, 1, 0.5}, 0.5, 1},
		{[]float64{3, 2, 1, 0.5}, 0.95, 3}, // 14/14.25 = 0.982
		{[]float64{3, 2, 1, 0.5}, 1, 4},
		{[]float64{3, 2, 0, 0}, 1, 2}, // zero σ are never kept
		{[]float64{1, 1, 1, 1}, 0.75, 3},
		{[]float64{0, 0}, 0.9, 0},
		{nil, 0.9, 0},
	} {
		if got := EnergyRank(c.sigma, c.e); got != c.want {
			t.Errorf("EnergyRank(%v, %v) = %d, want %d", c.sigma, c.e, got, c.want)
		}
	}
	for _, e := range []float64{0, -0.1, 1.01, math.NaN()} {
		if err := peft.Maybe(func() { EnergyRank([]float64{1}, e) }); err == nil || !strings.Contains(err.Error(), "energy e") {
			t.Errorf("EnergyRank with e = %v: error %v, want one naming the energy", e, err)
		}
	}
}

// TestNuclearSubgradient checks G = U·Vᵀ on a matrix built from known
// factors: ⟨G, W⟩ = ‖W‖_* = Σσ, ‖G‖₂ = 1, central differences of ‖W‖_*
// where it is differentiable, and the sub-gradient inequality where W is
// rank deficient.
func TestNuclearSubgradient(t *testing.T) {
	ctx := context.Background()
	sigma := []float64{3, 2, 1}
	w, u, v := known(5, 3, sigma, 1)
	g, norm, err := NuclearSubgradient(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	var want mat.Dense
	want.Mul(u, v.T())
	if d := maxAbsDiff(g, &want); d > 1e-12 {
		t.Errorf("G differs from U·Vᵀ by %.3g", d)
	}
	if math.Abs(norm-6) > 1e-12 {
		t.Errorf("‖W‖_* = %v, want 6", norm)
	}
	if ip := mat.Sum(mulElem(g, w)); math.Abs(ip-6) > 1e-12 {
		t.Errorf("⟨G, W⟩ = %v, want ‖W‖_* = 6", ip)
	}
	if s := spectral(t, g); math.Abs(s-1) > 1e-12 {
		t.Errorf("‖G‖₂ = %v, want 1", s)
	}

	// ‖W‖_* is differentiable at a full-rank W with distinct σ: G is its
	// gradient, checked against central differences.
	flat := mat.DenseCopyOf(w).RawMatrix().Data
	nuc := func(x []float64) float64 {
		s, err := accel.SingularValues(ctx, mat.NewDense(5, 3, x))
		if err != nil {
			t.Fatal(err)
		}
		return floatsSum(s)
	}
	fdg := fd.Gradient(nil, nuc, flat, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	worst := 0.0
	for i, x := range fdg {
		worst = math.Max(worst, math.Abs(x-g.RawMatrix().Data[i]))
	}
	if worst > 1e-7 {
		t.Errorf("|fd − G|_∞ = %.3g, want ≤ 1e-7", worst)
	}
	t.Logf("full rank (5×3): |fd − G|_∞ = %.2g", worst)

	// Rank 2 in a 6×4: G = U₂·V₂ᵀ, and ‖W + Δ‖_* ≥ ‖W‖_* + ⟨G, Δ⟩.
	w2, u2, v2 := known(6, 4, []float64{2, 0.5}, 3)
	g2, n2, err := NuclearSubgradient(ctx, w2)
	if err != nil {
		t.Fatal(err)
	}
	want.Reset()
	want.Mul(u2, v2.T())
	if d := maxAbsDiff(g2, &want); d > 1e-12 || math.Abs(n2-2.5) > 1e-12 {
		t.Errorf("rank 2: G differs from U₂·V₂ᵀ by %.3g, ‖W‖_* = %v (want 2.5)", d, n2)
	}
	rng := rand.New(rand.NewSource(4))
	for trial := 0; trial < 20; trial++ {
		delta := mat.NewDense(6, 4, nil)
		for i := 0; i < 6; i++ {
			for j := 0; j < 4; j++ {
				delta.Set(i, j, rng.NormFloat64())
			}
		}
		var sum mat.Dense
		sum.Add(w2, delta)
		_, ns, err := NuclearSubgradient(ctx, &sum)
		if err != nil {
			t.Fatal(err)
		}
		if lin := n2 + mat.Sum(mulElem(g2, delta)); ns < lin-1e-12 {
			t.Errorf("‖W + Δ‖_* = %v < ‖W‖_* + ⟨G, Δ⟩ = %v", ns, lin)
		}
	}
	// The zero matrix: G = 0 and ‖0‖_* = 0.
	g0, n0, err := NuclearSubgradient(ctx, mat.NewDense(3, 2, nil))
	if err != nil || n0 != 0 || mat.Norm(g0, 1) != 0 {
		t.Errorf("zero matrix: G = %v, norm %v, err %v; want 0, 0, nil", mat.Formatted(g0), n0, err)
	}
}

// spectral returns ‖a‖₂, the largest singular value.
func spectral(t *testing.T, a mat.Matrix) float64 {
	s, err := accel.SingularValues(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return s[0]
}

func mulElem(a, b mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.MulElem(a, b)
	return &d
}

func floatsSum(s []float64) float64 {
	t := 0.0
	for _, x := range s {
		t += x
	}
	return t
}

// TestProject: with σ = (4, 3, 2, 1, 0.5) the energy rule keeps k = 3 at
// e = 0.9 (29/30.25 = 0.959 ≥ 0.9 > 25/30.25 = 0.826), and the projection is
// U₃·diag(4, 3, 2)·V₃ᵀ: its rank is exactly 3, ‖W − W₃‖²_F = 1 + 0.25, and
// no rank-3 matrix nearby is closer (Eckart–Young).
func TestProject(t *testing.T) {
	ctx := context.Background()
	sigma := []float64{4, 3, 2, 1, 0.5}
	w, u, v := known(8, 6, sigma, 5)
	p, err := Project(ctx, w, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	if p.K != 3 {
		t.Fatalf("K = %d, want 3", p.K)
	}
	u3 := mat.DenseCopyOf(u.Slice(0, 8, 0, 3))
	for j, x := range sigma[:3] {
		for i := 0; i < 8; i++ {
			u3.Set(i, j, u3.At(i, j)*x)
		}
	}
	var want mat.Dense
	want.Mul(u3, v.Slice(0, 6, 0, 3).T()) // U₃·diag(4,3,2)·V₃ᵀ
	if d := maxAbsDiff(p.W, &want); d > 1e-12 {
		t.Errorf("W₃ differs from U₃·diag(4,3,2)·V₃ᵀ by %.3g", d)
	}
	s, err := accel.SingularValues(ctx, p.W)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range s {
		if i < 3 && math.Abs(x-sigma[i]) > 1e-12 {
			t.Errorf("σ_%d(W₃) = %v, want %v", i+1, x, sigma[i])
		}
		if i >= 3 && x > 1e-12 {
			t.Errorf("σ_%d(W₃) = %v, want 0 (rank 3)", i+1, x)
		}
	}
	var r mat.Dense
	r.Sub(w, p.W)
	best := mat.Norm(&r, 2)
	if e2 := best * best; math.Abs(e2-1.25) > 1e-12 {
		t.Errorf("‖W − W₃‖²_F = %v, want Σ_{i>3} σ_i² = 1.25", e2)
	}
	// Eckart–Young: rank-3 matrices (U₃+εX)·diag·(V₃+εY)ᵀ near W₃ are
	// all farther from W.
	rng := rand.New(rand.NewSource(6))
	for trial := 0; trial < 50; trial++ {
		us := mat.DenseCopyOf(p.U)
		vt := mat.DenseCopyOf(p.VT)
		for j := 0; j < 3; j++ {
			for i := 0; i < 8; i++ {
				us.Set(i, j, (us.At(i, j)+0.05*rng.NormFloat64())*p.S[j])
			}
			for i := 0; i < 6; i++ {
				vt.Set(j, i, vt.At(j, i)+0.05*rng.NormFloat64())
			}
		}
		var other, diff mat.Dense
		other.Mul(us, vt)
		diff.Sub(w, &other)
		if f := mat.Norm(&diff, 2); f < best-1e-12 {
			t.Errorf("a rank-3 matrix is closer to W (%.6g) than W₃ (%.6g)", f, best)
		}
	}
	// e = 1 keeps everything: W itself.
	p1, err := Project(ctx, w, 1)
	if err != nil || p1.K != 5 || maxAbsDiff(p1.W, w) > 1e-12 {
		t.Errorf("e = 1: K = %d, |W₅ − W| = %.3g, err %v; want 5, 0, nil", p1.K, maxAbsDiff(p1.W, w), err)
	}
	// A NaN is a data error, not a panic.
	bad := mat.DenseCopyOf(w)
	bad.Set(2, 3, math.NaN())
	var nf *accel.NonFiniteError
	if _, err := Project(ctx, bad, 0.9); !errors.As(err, &nf) {
		t.Errorf("NaN weight: error %v, want an *accel.NonFiniteError", err)
	}
}

func TestConfigErrors(t *testing.T) {
	m := peft.NewMLP([]int{6, 5, 3}, 1)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Energy: 1.5}, "Config.Energy = 1.5"},
		{Config{Energy: -0.1}, "Config.Energy = -0.1"},
		{Config{Lambda: -1}, "Config.Lambda = -1"},
		{Config{Lambda: math.Inf(1)}, "Config.Lambda = +Inf"},
		{Config{Period: -2}, "Config.Period = -2"},
		{Config{Targets: []string{"fc9"}}, `"fc9"`},
	} {
		if _, err := New(m, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): error %v, want one containing %q", c.cfg, err, c.want)
		}
	}
	h, err := New(m, Config{Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if h.Config.Energy != DefaultEnergy || h.Config.Period != DefaultPeriod || len(h.Layers) != 1 || h.Layers[0].Name != "fc1" {
		t.Errorf("defaults: %+v on %d layers, want e = %v, m = %d on fc1", h.Config, len(h.Layers), DefaultEnergy, DefaultPeriod)
	}
	if meth, ok := peft.LookupMethod("TRP"); !ok || meth.Kind != peft.HookMethod {
		t.Errorf("TRP registered: %v %v, want a hook method", meth, ok)
	}
}

// TestRegularizer: the penalty's value is λ·Σ‖W‖_* and its backward adds
// exactly λ·U·Vᵀ to each weight's gradient; after a projection it reuses
// the projection's U_k·V_kᵀ, which is the sub-gradient at W_k.
func TestRegularizer(t *testing.T) {
	ctx := context.Background()
	m := peft.NewMLP([]int{7, 6, 4}, 2)
	const lambda = 0.01
	h, err := New(m, Config{Lambda: lambda, Energy: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		for _, l := range m.Layers {
			l.W.Grad = nil
		}
		reg := h.Regularizer(1)
		want := 0.0
		var gs []*mat.Dense
		for _, l := range m.Layers {
			g, n, err := NuclearSubgradient(ctx, l.W.Value)
			if err != nil {
				t.Fatal(err)
			}
			want += lambda * n
			gs = append(gs, g)
		}
		if got := reg.Scalar(); math.Abs(got-want) > 1e-12 {
			t.Errorf("%s: regularizer = %v, want λ·Σ‖W‖_* = %v", when, got, want)
		}
		reg.Backward()
		for i, l := range m.Layers {
			var lg mat.Dense
			lg.Scale(lambda, gs[i])
			if d := maxAbsDiff(l.W.Grad, &lg); d > 1e-12 {
				t.Errorf("%s: %s's gradient differs from λ·U·Vᵀ by %.3g", when, l.Name, d)
			}
		}
	}
	check("full-rank weights")
	if err := h.AfterStep(1); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if rk := h.Ranks()[l.Name]; rk >= min(l.W.Dims()) {
			t.Fatalf("%s kept rank %d of %d at e = 0.8; the test wants a truncation", l.Name, rk, min(l.W.Dims()))
		}
	}
	check("after a projection")

	h0, _ := New(m, Config{})
	if h0.Regularizer(1) != nil {
		t.Errorf("λ = 0: the regularizer is not nil")
	}
}

// TestAfterStep: projections happen after steps m, 2m, … only, leave each
// weight at the rank the energy rule gives, and are recorded; a cancelled
// context makes AfterStep (and Regularizer's next AfterStep) return an
// error wrapping context.Canceled with no weight changed.
func TestAfterStep(t *testing.T) {
	m := peft.NewMLP([]int{9, 8, 5}, 3)
	h, err := New(m, Config{Energy: 0.9, Period: 3, Lambda: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	before := []*mat.Dense{mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)}
	for step := 1; step <= 2; step++ {
		if err := h.AfterStep(step); err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range m.Layers {
		if !mat.Equal(l.W.Value, before[i]) {
			t.Errorf("%s changed before step m = 3", l.Name)
		}
	}
	if err := h.AfterStep(3); err != nil {
		t.Fatal(err)
	}
	for i, l := range m.Layers {
		s, err := accel.SingularValues(context.Background(), before[i])
		if err != nil {
			t.Fatal(err)
		}
		k := EnergyRank(s, 0.9)
		after, _ := accel.SingularValues(context.Background(), l.W.Value)
		rank := numericalRank(after, 1, 1)
		if rank != k || h.Ranks()[l.Name] != k {
			t.Errorf("%s: rank %d after the projection (recorded %d), want the energy rule's %d of σ = %.3f", l.Name, rank, h.Ranks()[l.Name], k, s)
		}
	}
	tr := h.Trace()
	if len(tr.Steps) != 1 || tr.Steps[0] != 3 {
		t.Errorf("trace steps %v, want [3]", tr.Steps)
	}

	// A cancelled context: AfterStep fails and changes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.SetContext(ctx)
	for _, l := range m.Layers {
		l.W.Value.Set(0, 0, l.W.Value.At(0, 0)+0.5) // not the projected weight
	}
	mid := []*mat.Dense{mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)}
	if err := h.AfterStep(6); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "step 6") {
		t.Errorf("cancelled AfterStep: error %v, want one wrapping context.Canceled naming step 6", err)
	}
	for i, l := range m.Layers {
		if !mat.Equal(l.W.Value, mid[i]) {
			t.Errorf("a cancelled projection changed %s", l.Name)
		}
	}
	// Regularizer under the cancelled context: nil, and the step's
	// AfterStep reports the error even off the period.
	if reg := h.Regularizer(7); reg != nil {
		t.Errorf("Regularizer under a cancelled context returned a penalty")
	}
	if err := h.AfterStep(7); !errors.Is(err, context.Canceled) {
		t.Errorf("AfterStep after a cancelled Regularizer: %v, want context.Canceled", err)
	}
	h.SetContext(context.Background())
	if err := h.AfterStep(8); err != nil {
		t.Errorf("AfterStep off the period after the error was reported: %v", err)
	}
	if err := h.Truncate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr := h.Trace(); tr.Steps[len(tr.Steps)-1] != 0 {
		t.Errorf("Truncate recorded at step %d, want 0", tr.Steps[len(tr.Steps)-1])
	}
}

// TestTrainCancelled: peft.Train gives the hook the run's context; when it
// is cancelled during a run, training stops at the next step.
func TestTrainCancelled(t *testing.T) {
	m := peft.NewMLP([]int{64, 16, 10}, 1)
	data := peft.DigitsData(0.2, 1)
	h, err := New(m, Config{Lambda: DefaultLambda, Period: 5})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := peft.TrainConfig{Steps: 20, BatchSize: 16, LR: 1e-2, Hooks: []peft.Hook{h}, Callback: func(step int, _ *peft.History) {
		if step == 3 {
			cancel()
		}
	}}
	hist, err := peft.FullFineTune(ctx, m, data, cfg)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "step 4") || len(hist.Steps) != 3 {
		t.Errorf("run cancelled after step 3: %d steps recorded, error %v; want 3 and context.Canceled at step 4", len(hist.Steps), err)
	}
}

// rankAt returns the number of singular values of w above tol·σ_1.
func rankAt(t *testing.T, w *mat.Dense, tol float64) int {
	s, err := accel.SingularValues(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	r := 0
	for r < len(s) && s[r] > tol*s[0] {
		r++
	}
	return r
}

// TestDigits trains the digits MLP (64→64→10) from the same init with
// AdamW, plainly and with TRP, and compares the ranks and the held-out
// accuracy: TRP must end with far lower ranks for a small accuracy cost.
func TestDigits(t *testing.T) {
	data := peft.DigitsData(0.25, 1)
	cfg := peft.TrainConfig{Steps: 400, BatchSize: 64, LR: 1e-2, Seed: 1}
	train := func(withTRP bool) (*peft.MLP, *TRP, float64) {
		m := peft.NewMLP(peft.DigitsMLPSizes, 1)
		c := cfg
		var h *TRP
		if withTRP {
			var err error
			if h, err = New(m, Config{Lambda: DefaultLambda}); err != nil {
				t.Fatal(err)
			}
			c.Hooks = []peft.Hook{h}
		}
		if _, err := peft.FullFineTune(context.Background(), m, data, c); err != nil {
			t.Fatal(err)
		}
		_, acc, err := peft.Evaluate(context.Background(), m, data)
		if err != nil {
			t.Fatal(err)
		}
		return m, h, acc
	}
	plain, _, accPlain := train(false)
	pruned, h, accTRP := train(true)
	for i, l := range pruned.Layers {
		rp := rankAt(t, plain.Layers[i].W.Value, 1e-10)
		rt := rankAt(t, l.W.Value, 1e-10)
		ep, _ := accel.SingularValues(context.Background(), plain.Layers[i].W.Value)
		t.Logf("%s %v: rank plain %d (energy-0.99 rank %d), TRP %d (recorded %d)", l.Name, peft.ShapeOf(l.W.Dims()), rp, EnergyRank(ep, 0.99), rt, h.Ranks()[l.Name])
		if rt != h.Ranks()[l.Name] {
			t.Errorf("%s: numerical rank %d, recorded %d", l.Name, rt, h.Ranks()[l.Name])
		}
		if l.Name == "fc1" && 2*rt > rp {
			t.Errorf("fc1: TRP rank %d, plain %d; want at most half", rt, rp)
		}
	}
	fact, dense := h.FactoredParams()
	t.Logf("held-out accuracy: plain %.4f, TRP %.4f; TRP weights as factors: %d numbers (dense %d)", accPlain, accTRP, fact, dense)
	if accTRP < accPlain-0.05 {
		t.Errorf("TRP accuracy %.4f, plain %.4f: want a cost below 5 points", accTRP, accPlain)
	}
}
