package mcomplete_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/mcomplete"
	"gonum.org/v1/gonum/mat"
)

// The lab's scale: n = 200, k = 3, so k·ln n ≈ 15.9 and p·n counts the
// observed entries per row. p = C·k·ln(n)/n. Measured (seeds 0–2, exact
// solves, 100 iterations): C ≤ 0.5 (p ≤ 0.04) never recovers, the error
// stays above 0.9 and often diverges; C = 0.63–0.76 (p = 0.05–0.06) is
// the transition (some seeds reach 1e-5, some 0.05, some diverge); C =
// 1.0 (p = 0.08) reaches 1e-11 slowly (rate ≈ 0.8); C ≥ 1.26 (p = 0.1)
// reaches 1e-13 in every run. So the tests assert recovery at C = 1.5 and
// failure at C = 0.4.
const (
	n, k = 200, 3
)

func rateFor(c float64) float64 { return c * k * math.Log(n) / n }

func TestExactRecoveryAboveThreshold(t *testing.T) {
	p := rateFor(1.5) // ≈ 0.119
	for seed := int64(0); seed < 3; seed++ {
		lr := mcomplete.Generate(n, n, k, 1, seed)
		obs := mcomplete.Observe(lr.M, p, seed+10)
		res, err := mcomplete.Complete(context.Background(), obs, mcomplete.Config{K: k, Truth: lr.M, Mu: mcomplete.Incoherence(lr.U)})
		if err != nil {
			t.Fatal(err)
		}
		got := relErr(res.Matrix(), lr.M)
		if got > 1e-8 {
			t.Errorf("seed %d, p = %.3f (C = 1.5): ‖X − M‖/‖M‖ = %.3g after %d iterations, want < 1e-8", seed, p, got, res.Iters)
		}
		if e := res.Err[len(res.Err)-1]; math.Abs(e-got) > 1e-12 {
			t.Errorf("seed %d: Result.Err's last %.3g differs from the error of Matrix() %.3g", seed, e, got)
		}
	}
}

func TestFailureBelowThreshold(t *testing.T) {
	p := rateFor(0.4) // ≈ 0.032, about 6 entries per row for 3 unknowns
	for seed := int64(0); seed < 3; seed++ {
		lr := mcomplete.Generate(n, n, k, 1, seed)
		obs := mcomplete.Observe(lr.M, p, seed+10)
		res, err := mcomplete.Complete(context.Background(), obs, mcomplete.Config{K: k, Truth: lr.M, Iters: 60})
		if err != nil {
			continue // breaking down is failing too
		}
		if got := relErr(res.Matrix(), lr.M); !(got > 0.5) {
			t.Errorf("seed %d, p = %.3f (C = 0.4): error %.3g, want the recovery to fail (> 0.5)", seed, p, got)
		}
	}
}

// TestLinearConvergence fits e_t ≈ C·ρᵗ to the error between 1e-1 and
// 1e-11 and checks ρ < 1, the paper's linear convergence, with a margin:
// measured ρ = 0.40–0.45 at p = 0.2 for the exact solves (seeds 0–2).
func TestLinearConvergence(t *testing.T) {
	for seed := int64(0); seed < 3; seed++ {
		lr := mcomplete.Generate(n, n, k, 1, seed)
		res, err := mcomplete.Complete(context.Background(), mcomplete.Observe(lr.M, 0.2, seed+10), mcomplete.Config{K: k, Truth: lr.M})
		if err != nil {
			t.Fatal(err)
		}
		rate, used := mcomplete.ConvergenceRate(res.Err, 1e-1, 1e-11)
		t.Logf("seed %d: rate %.3f over %d iterations", seed, rate, used)
		if !(rate < 0.6) || used < 8 {
			t.Errorf("seed %d: fitted rate %.3f over %d iterations, want < 0.6 over ≥ 8", seed, rate, used)
		}
		// Geometric, not just decreasing on average: over every window of
		// 5 iterations of the linear phase the error falls by ≥ 10×.
		for i := 0; i+5 < len(res.Err); i++ {
			if res.Err[i] < 1e-1 && res.Err[i+5] > 1e-11 && res.Err[i+5] > res.Err[i]/10 {
				t.Errorf("seed %d: error %.3g at iteration %d but %.3g five later", seed, res.Err[i], i+1, res.Err[i+5])
			}
		}
	}
}

// TestRobustInexactSolves runs the alternating steps with one
// conjugate-gradient step per k×k system (k = 3, so each solve is
// inexact: the test checks it is) and checks the iteration still recovers
// M to 1e-8 at a linear rate. Measured: one step solves to 0.18
// relative error, yet the iteration reaches 1.5e-13 at rate 0.52 (0.40–0.45
// with exact solves).
func TestRobustInexactSolves(t *testing.T) {
	lr := mcomplete.Generate(n, n, k, 1, 4)
	obs := mcomplete.Observe(lr.M, 0.2, 14)
	fixed := lr.U
	exact := mcomplete.SolveColumns(obs, fixed, mcomplete.Config{K: k})
	one := mcomplete.SolveColumns(obs, fixed, mcomplete.Config{K: k, Solver: "cg", CGIters: 1})
	if d := relErr(one, exact); d < 1e-3 {
		t.Fatalf("one CG step solves to %.3g relative: the solves are not inexact, the test would prove nothing", d)
	}
	res, err := mcomplete.Complete(context.Background(), obs, mcomplete.Config{K: k, Truth: lr.M, Solver: "cg", CGIters: 1})
	if err != nil {
		t.Fatal(err)
	}
	rate, _ := mcomplete.ConvergenceRate(res.Err, 1e-1, 1e-11)
	t.Logf("one CG step per solve: solve error %.3g, final error %.3g after %d iterations, rate %.3f", relErr(one, exact), relErr(res.Matrix(), lr.M), res.Iters, rate)
	if got := relErr(res.Matrix(), lr.M); got > 1e-8 {
		t.Errorf("with one CG step per solve: error %.3g after %d iterations, want < 1e-8", got, res.Iters)
	}
	if rate, used := mcomplete.ConvergenceRate(res.Err, 1e-1, 1e-11); !(rate < 0.75) || used < 8 {
		t.Errorf("with one CG step per solve: rate %.3f over %d iterations, want < 0.75", rate, used)
	}
}

// TestColumnSolve checks each exact column solve against its normal
// equations G·v = b, G = Σ_{i∈Ω_j} u_i u_iᵀ, and that k CG steps (exact
// in exact arithmetic on a k×k system) give the same answer.
func TestColumnSolve(t *testing.T) {
	const m, nn, kk = 30, 20, 4
	rng := rand.New(rand.NewSource(3))
	x := mat.NewDense(m, nn, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < nn; j++ {
			x.Set(i, j, rng.NormFloat64()) // not low rank: the residual is not 0
		}
	}
	obs := mcomplete.Observe(x, 0.5, 1)
	u := mcomplete.Generate(m, m, kk, 1, 2).U
	v := mcomplete.SolveColumns(obs, u, mcomplete.Config{K: kk})
	g := make([]*mat.SymDense, nn)
	b := make([]*mat.VecDense, nn)
	for j := range g {
		g[j], b[j] = mat.NewSymDense(kk, nil), mat.NewVecDense(kk, nil)
	}
	for t2 := range obs.Val {
		i, j := obs.I[t2], obs.J[t2]
		for a := 0; a < kk; a++ {
			b[j].SetVec(a, b[j].AtVec(a)+obs.Val[t2]*u.At(i, a))
			for c := a; c < kk; c++ {
				g[j].SetSym(a, c, g[j].At(a, c)+u.At(i, a)*u.At(i, c))
			}
		}
	}
	for j := 0; j < nn; j++ {
		var gv mat.VecDense
		gv.MulVec(g[j], v.RowView(j))
		gv.SubVec(&gv, b[j])
		if r := mat.Norm(&gv, 2) / mat.Norm(b[j], 2); r > 1e-12 {
			t.Errorf("column %d: ‖G·v − b‖/‖b‖ = %.3g", j, r)
		}
	}
	cg := mcomplete.SolveColumns(obs, u, mcomplete.Config{K: kk, Solver: "cg", CGIters: kk})
	if d := relErr(cg, v); d > 1e-9 {
		t.Errorf("k CG steps differ from the Cholesky solve by %.3g relative", d)
	}
}

// TestIncoherence checks μ on known answers (1 for rows of equal norm, m/k
// for coordinate vectors) and bounds it for Generate's factors: U = G·R⁻¹
// with G (n×k) Gaussian gives ‖U_i‖² ≤ ‖g_i‖²/σ_min(G)², and with
// probability ≥ 98% every ‖g_i‖² ≤ k + 2√(k·t₁) + 2t₁ (Laurent–Massart,
// union over n rows, t₁ = ln n + ln 100) and σ_min(G) ≥ √n − √k − √(2t₂)
// (Davidson–Szarek, t₂ = ln 100), so μ ≤ 25.5 at n = 200, k = 3; measured
// 3.7–5.7 over seeds 0–9.
func TestIncoherence(t *testing.T) {
	eq := mat.NewDense(4, 2, []float64{.5, .5, .5, -.5, .5, .5, .5, -.5})
	if mu := mcomplete.Incoherence(eq); math.Abs(mu-1) > 1e-15 {
		t.Errorf("μ of a factor with equal row norms = %v, want 1", mu)
	}
	coord := mat.NewDense(6, 2, []float64{1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	if mu := mcomplete.Incoherence(coord); mu != 3 {
		t.Errorf("μ of coordinate vectors = %v, want m/k = 3", mu)
	}
	t1, t2 := math.Log(n)+math.Log(100), math.Log(100)
	bound := float64(n) / k * (k + 2*math.Sqrt(k*t1) + 2*t1) / math.Pow(math.Sqrt(n)-math.Sqrt(k)-math.Sqrt(2*t2), 2)
	for seed := int64(0); seed < 10; seed++ {
		lr := mcomplete.Generate(n, n, k, 1, seed)
		for name, f := range map[string]*mat.Dense{"U": lr.U, "V": lr.V} {
			mu := mcomplete.Incoherence(f)
			if mu < 1 || mu > bound {
				t.Errorf("seed %d: μ(%s) = %.3g, want in [1, %.3g]", seed, name, mu, bound)
			}
		}
	}
}

// TestGenerate checks M = U·diag(S)·Vᵀ has orthonormal factors, exactly k
// nonzero singular values equal to S, and condition number cond.
func TestGenerate(t *testing.T) {
	lr := mcomplete.Generate(40, 30, 4, 5, 1)
	for name, f := range map[string]*mat.Dense{"U": lr.U, "V": lr.V} {
		var g mat.Dense
		g.Mul(f.T(), f)
		for i := 0; i < 4; i++ {
			for j := 0; j < 4; j++ {
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(g.At(i, j)-want) > 1e-14 {
					t.Errorf("(%sᵀ%s)[%d,%d] = %v, want %v", name, name, i, j, g.At(i, j), want)
				}
			}
		}
	}
	s, err := accel.SingularValues(context.Background(), lr.M)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{5, 11.0 / 3, 7.0 / 3, 1}
	for i, v := range s {
		w := 0.0
		if i < 4 {
			w = want[i]
		}
		if math.Abs(v-w) > 1e-12 {
			t.Errorf("σ_%d(M) = %v, want %v", i+1, v, w)
		}
	}
	if lr.S[0]/lr.S[3] != 5 {
		t.Errorf("S = %v, want condition number 5", lr.S)
	}
}

func TestBadConfig(t *testing.T) {
	obs := mcomplete.Observe(mcomplete.Generate(10, 8, 2, 1, 1).M, 0.5, 1)
	for _, c := range []struct {
		cfg  mcomplete.Config
		want []string
	}{
		{mcomplete.Config{K: 0}, []string{"K", "0", "(10×8)"}},
		{mcomplete.Config{K: 9}, []string{"K", "9"}},
		{mcomplete.Config{K: 2, Mu: 0.5}, []string{"Mu", "0.5"}},
		{mcomplete.Config{K: 2, Solver: "lsqr"}, []string{"Solver", `"lsqr"`}},
		{mcomplete.Config{K: 2, CGIters: -1}, []string{"CGIters", "-1"}},
		{mcomplete.Config{K: 2, Tol: -1}, []string{"Tol", "-1"}},
		{mcomplete.Config{K: 2, Iters: -3}, []string{"Iters", "-3"}},
	} {
		_, err := mcomplete.Complete(context.Background(), obs, c.cfg)
		if err == nil {
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not mention %q", c.cfg, err, w)
			}
		}
	}
	err := peft.Maybe(func() {
		mcomplete.Complete(context.Background(), obs, mcomplete.Config{K: 2, Truth: mat.NewDense(3, 3, nil)})
	})
	if err == nil || !strings.Contains(err.Error(), "(3×3)") || !strings.Contains(err.Error(), "(10×8)") {
		t.Errorf("Truth of the wrong shape: %v, want a panic naming both shapes", err)
	}
}

func TestCancel(t *testing.T) {
	lr := mcomplete.Generate(n, n, k, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := mcomplete.Complete(ctx, mcomplete.Observe(lr.M, 0.2, 1), mcomplete.Config{K: k})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// TestPhaseDiagram checks the grid's corners on a small problem (n = 80):
// recovery at high p for k = 1 and 2, failure at p = 0.02 (1.6 entries per
// row).
func TestPhaseDiagram(t *testing.T) {
	ph, err := mcomplete.PhaseDiagram(context.Background(), 80, []int{1, 2}, []float64{0.02, 0.5}, mcomplete.Config{Iters: 40}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for a, k := range ph.Ks {
		if e := ph.Err[a][0]; !(e > 0.3) {
			t.Errorf("k = %d, p = 0.02: error %.3g, want failure (> 0.3)", k, e)
		}
		if e := ph.Err[a][1]; e > 1e-8 {
			t.Errorf("k = %d, p = 0.5: error %.3g, want recovery (< 1e-8)", k, e)
		}
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("robustaltmin")
	if !ok {
		t.Fatal("RobustAltMin is not registered")
	}
	if m.Name != "RobustAltMin" || m.Kind != peft.HookMethod || m.Format != nil ||
		m.Package != "github.com/gopeft/gopeft/peft/mcomplete" || !strings.Contains(m.Paper, "arXiv:2302.11068") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// relErr returns ‖a − b‖_F/‖b‖_F.
func relErr(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, 2) / mat.Norm(b, 2)
}
