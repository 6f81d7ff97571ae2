package osf_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/osf"
	"gonum.org/v1/gonum/mat"
)

// orthonormal returns an n×k matrix with orthonormal columns drawn from rng.
func orthonormal(rng *rand.Rand, n, k int) *mat.Dense {
	var qr mat.QR
	qr.Factorize(adaptertest.RandDense(rng, n, k))
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, n, 0, k))
}

// maxAbs returns the largest |entry| of a.
func maxAbs(a mat.Matrix) float64 {
	r, c := a.Dims()
	m := 0.0
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			m = math.Max(m, math.Abs(a.At(i, j)))
		}
	}
	return m
}

func mul(a, b mat.Matrix) *mat.Dense {
	var c mat.Dense
	c.Mul(a, b)
	return &c
}

func TestProjectOrthogonal(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, sh := range [][3]int{{9, 6, 2}, {5, 11, 3}, {7, 7, 6}} {
		m, n, k := sh[0], sh[1], sh[2]
		u, v := orthonormal(rng, m, k), orthonormal(rng, n, k)
		g := adaptertest.RandDense(rng, m, n)
		p := osf.Project(u, v, g)
		if e := maxAbs(mul(u.T(), p)); e > 1e-12 {
			t.Errorf("%d×%d k=%d: |Uᵀ·G̃| = %.2e, want ≤ 1e-12", m, n, k, e)
		}
		if e := maxAbs(mul(p, v)); e > 1e-12 {
			t.Errorf("%d×%d k=%d: |G̃·V| = %.2e, want ≤ 1e-12", m, n, k, e)
		}
		// the brief's expanded form G − UUᵀG − GVVᵀ + UUᵀGVVᵀ
		uu, vv := mul(u, u.T()), mul(v, v.T())
		var want mat.Dense
		want.Sub(g, mul(uu, g))
		want.Sub(&want, mul(g, vv))
		want.Add(&want, mul(mul(uu, g), vv))
		var d mat.Dense
		d.Sub(p, &want)
		if e := maxAbs(&d); e > 1e-12 {
			t.Errorf("%d×%d k=%d: Project differs from G − UUᵀG − GVVᵀ + UUᵀGVVᵀ by %.2e", m, n, k, e)
		}
		// a projection: applying it twice changes nothing
		d.Sub(osf.Project(u, v, p), p)
		if e := maxAbs(&d); e > 1e-12 {
			t.Errorf("%d×%d k=%d: Project is not idempotent (%.2e)", m, n, k, e)
		}
	}
}

func TestProjectRemovesProtected(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	m, n, k := 8, 6, 2
	u, v := orthonormal(rng, m, k), orthonormal(rng, n, k)
	// G = U·A + B·Vᵀ lies wholly along protected directions
	var g mat.Dense
	g.Add(mul(u, adaptertest.RandDense(rng, k, n)), mul(adaptertest.RandDense(rng, m, k), v.T()))
	if e := maxAbs(osf.Project(u, v, &g)); e > 1e-12 {
		t.Errorf("|Project(U·A + B·Vᵀ)| = %.2e, want 0 (≤ 1e-12)", e)
	}
	err := peft.Maybe(func() { osf.Project(orthonormal(rng, 5, 2), v, &g) })
	var se peft.ShapeError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "(5×2)") || !strings.Contains(err.Error(), "(8×6)") {
		t.Errorf("a U of the wrong height: got %v, want a ShapeError naming both shapes", err)
	}
}

// params returns a 9×6 weight, a 1×6 bias and their gradients from rng.
func params(rng *rand.Rand) []*peft.Tensor {
	w := peft.NewParam("l.weight", adaptertest.RandDense(rng, 9, 6))
	b := peft.NewParam("l.bias", adaptertest.RandDense(rng, 1, 6))
	return []*peft.Tensor{w, b}
}

func setGrads(rng *rand.Rand, ps []*peft.Tensor) {
	for _, p := range ps {
		p.Grad = adaptertest.RandDense(rng, p.Value.RawMatrix().Rows, p.Value.RawMatrix().Cols)
	}
}

func TestOSFZeroRankIsAdamW(t *testing.T) {
	for _, wd := range []float64{0, 0.1} {
		a, b := params(rand.New(rand.NewSource(3))), params(rand.New(rand.NewSource(3)))
		o, adam := osf.New(osf.Config{WeightDecay: wd}), peft.NewAdamW(wd)
		ga, gb := rand.New(rand.NewSource(4)), rand.New(rand.NewSource(4))
		for step := 0; step < 5; step++ {
			setGrads(ga, a)
			setGrads(gb, b)
			o.Step(a, 0.01)
			adam.Step(b, 0.01)
		}
		for i := range a {
			if !mat.Equal(a[i].Value, b[i].Value) {
				t.Errorf("λ=%g: %s after 5 steps differs from AdamW's", wd, a[i].Name)
			}
		}
		if o.StateBytes() != adam.StateBytes() {
			t.Errorf("λ=%g: StateBytes %d, AdamW's %d", wd, o.StateBytes(), adam.StateBytes())
		}
	}
}

// TestOSFKeepsProtectedTriplets: once Protect has run, the protected
// singular triplets of W stay singular triplets, Uₖᵀ·W·Vₖ = diag(Sₖ) and
// W·Vₖ = Uₖ·diag(Sₖ), through any later steps (λ = 0); with GradientOnly
// (the paper's Adam) they drift.
func TestOSFKeepsProtectedTriplets(t *testing.T) {
	for _, gradOnly := range []bool{false, true} {
		rng := rand.New(rand.NewSource(5))
		ps := params(rng)
		w := ps[0]
		o := osf.New(osf.Config{Tasks: 3, GradientOnly: gradOnly})
		if err := o.Protect(context.Background(), ps); err != nil {
			t.Fatal(err)
		}
		u, v, s := o.Basis(w)
		if k := o.Rank(w); k != 2 || len(s) != 2 {
			t.Fatalf("rank after task 1 of 3 (p = 6, k_max = 3): %d, want ⌈3·1/2⌉ = 2", k)
		}
		g0 := adaptertest.RandDense(rng, 9, 6)
		for step := 0; step < 20; step++ {
			setGrads(rng, ps)
			w.Grad.Copy(g0)
			o.Step(ps, 0.05)
			if !mat.Equal(w.Grad, g0) {
				t.Fatal("Step changed the gradient it projected")
			}
		}
		core := mul(mul(u.T(), w.Value), v)
		var d mat.Dense
		d.Sub(core, mat.NewDiagDense(2, s))
		drift := maxAbs(&d)
		if !gradOnly && drift > 1e-12 {
			t.Errorf("Uₖᵀ·W·Vₖ − diag(Sₖ) = %.2e after 20 steps, want ≤ 1e-12", drift)
		}
		if gradOnly && drift < 1e-6 {
			t.Errorf("GradientOnly: the protected block moved only %.2e; Adam's step should leak into it", drift)
		}
		t.Logf("GradientOnly=%v: drift of the protected block %.2e", gradOnly, drift)
	}
}

func TestOSFRankSchedule(t *testing.T) {
	for _, c := range []struct {
		cfg  osf.Config
		want []int
	}{
		{osf.Config{Tasks: 3}, []int{2, 3, 3}},                   // k_max = 3: ⌈3/2⌉, 3
		{osf.Config{}, []int{2, 2, 3, 3}},                        // ⌈3·t/(t+1)⌉
		{osf.Config{Tasks: 4, EffectiveRank: 1}, []int{2, 4, 6}}, // k_max = 6: ⌈6t/3⌉
	} {
		rng := rand.New(rand.NewSource(6))
		ps := params(rng)
		w := ps[0]
		o := osf.New(c.cfg)
		var prevU *mat.Dense
		for ti, want := range c.want {
			if err := o.Protect(context.Background(), ps); err != nil {
				t.Fatal(err)
			}
			if k := o.Rank(w); k != want {
				t.Errorf("%+v: rank after task %d = %d, want %d", c.cfg, ti+1, k, want)
			}
			u, v, _ := o.Basis(w)
			for _, b := range []*mat.Dense{u, v} {
				_, k := b.Dims()
				var d mat.Dense
				d.Sub(mul(b.T(), b), eye(k))
				if e := maxAbs(&d); e > 1e-12 {
					t.Errorf("%+v task %d: basis departs from orthonormal by %.2e", c.cfg, ti+1, e)
				}
			}
			if prevU != nil {
				_, k := prevU.Dims()
				if !mat.Equal(u.Slice(0, 9, 0, k), prevU) {
					t.Errorf("%+v task %d: the earlier protected directions changed", c.cfg, ti+1)
				}
			}
			prevU = mat.DenseCopyOf(u)
			// train a little between tasks
			for step := 0; step < 3; step++ {
				setGrads(rng, ps)
				o.Step(ps, 0.1)
			}
		}
	}
	// energy: W with σ = 4, 2, 1, 1, 1, 1: 0.8 of Σσ² = 24 needs 16 + 4 = 20 ≥ 19.2, k = 2
	rng := rand.New(rand.NewSource(7))
	u, v := orthonormal(rng, 9, 6), orthonormal(rng, 6, 6)
	w := peft.NewParam("w", mul(mul(u, mat.NewDiagDense(6, []float64{4, 2, 1, 1, 1, 1})), v.T()))
	o := osf.New(osf.Config{Energy: 0.8})
	if err := o.Protect(context.Background(), []*peft.Tensor{w}); err != nil {
		t.Fatal(err)
	}
	if k := o.Rank(w); k != 2 {
		t.Errorf("energy 0.8 of σ = 4,2,1,1,1,1: rank %d, want 2", k)
	}
}

func eye(k int) *mat.Dense {
	d := mat.NewDense(k, k, nil)
	for i := 0; i < k; i++ {
		d.Set(i, i, 1)
	}
	return d
}

func TestOSFOptimizerSuite(t *testing.T) {
	for _, wd := range []float64{0, 0.01} {
		adaptertest.RunOptimizer(t, adaptertest.OptimizerCase{
			Name:         "OSF",
			New:          func() peft.Optimizer { return osf.New(osf.Config{WeightDecay: wd}) },
			Decay:        wd,
			Stateful:     true,
			StateBytesOf: func(m, n int) int { return 16 * m * n }, // Adam's moments; nothing protected yet
		})
	}
}

func TestOSFStateBytesProtected(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	ps := params(rng)
	o := osf.New(osf.Config{Tasks: 2})
	if err := o.Protect(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	setGrads(rng, ps)
	o.Step(ps, 0.01)
	// k = 3: U (9×3), V (6×3), S (3); Adam's moments of W and b
	if got, want := o.StateBytes(), 8*(9*3+6*3+3)+16*(54+6); got != want {
		t.Errorf("StateBytes = %d, want %d", got, want)
	}
}

func TestOSFConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  osf.Config
		want string
	}{
		{osf.Config{EffectiveRank: 1.5}, "EffectiveRank = 1.5"},
		{osf.Config{Tasks: 1}, "Tasks = 1"},
		{osf.Config{Energy: 1}, "Energy = 1"},
		{osf.Config{Beta1: 1}, "Beta1 = 1"},
		{osf.Config{WeightDecay: -1}, "WeightDecay = -1"},
		{osf.Config{Targets: []string{"["}}, `"["`},
	} {
		err := peft.Maybe(func() { osf.New(c.cfg) })
		var ae peft.ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an ArgError naming %s", c.cfg, err, c.want)
		}
	}
}

// TestOSFForgetsLess: on the five split-digits pairs (a fresh 64-64-10 MLP,
// 60 steps a task), OSF forgets far less than plain fine-tuning and ends
// with a higher average accuracy. Measured: class-incremental forgetting
// 0.113 vs 0.758, average 0.716 vs 0.075.
func TestOSFForgetsLess(t *testing.T) {
	run := func(method peft.ContinualMethod) *peft.ContinualResult {
		m := peft.NewMLP([]int{64, 64, 10}, 1)
		res, err := peft.RunContinual(context.Background(), m, peft.SplitDigits(0.25, 0, 2), peft.ContinualConfig{
			Train:  peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 3e-3, Seed: 1},
			Method: method,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	plain, o := run(nil), run(osf.New(osf.Config{Tasks: 5}))
	t.Logf("plain fine-tuning:\n%s", plain)
	t.Logf("OSF:\n%s", o)
	if !(o.Forgetting() < plain.Forgetting()-0.3) {
		t.Errorf("forgetting: OSF %.3f, plain %.3f; want OSF lower by 0.3", o.Forgetting(), plain.Forgetting())
	}
	if !(o.Average() > plain.Average()+0.3) {
		t.Errorf("average accuracy: OSF %.3f, plain %.3f; want OSF higher by 0.3", o.Average(), plain.Average())
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("OSF")
	if !ok || m.Kind != peft.OptimizerMethod || !strings.Contains(m.Paper, "2504.07097") {
		t.Errorf("LookupMethod(OSF) = %v, %v", m, ok)
	}
}
