package conda_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/conda"
	"gonum.org/v1/gonum/mat"
)

// randDense returns an r×c matrix of N(0,1) entries from rng.
func randDense(rng *rand.Rand, r, c int) *mat.Dense {
	d := mat.NewDense(r, c, nil)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			d.Set(i, j, rng.NormFloat64())
		}
	}
	return d
}

func maxAbsDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return max(mat.Max(&d), -mat.Min(&d))
}

// TestOptimizerSuite runs the shared optimizer suite. Conda projects the
// 9×6 weight on the right (a 6×6 basis) and keeps Adam's moments for it
// and the 1×6 row: 8·(2·54 + 36) + 8·2·6 = 1248 bytes, against AdamW's 960.
func TestOptimizerSuite(t *testing.T) {
	stateOf := func(m, n int) int {
		if m >= 2 && n >= 2 {
			return 8 * (2*m*n + min(m, n)*min(m, n))
		}
		return 8 * 2 * m * n
	}
	for _, wd := range []float64{0, 0.1} {
		t.Run(fmt.Sprintf("decay=%g", wd), func(t *testing.T) {
			adaptertest.RunOptimizer(t, adaptertest.OptimizerCase{
				Name:          "Conda",
				New:           func() peft.Optimizer { return conda.New(conda.Config{UpdateProjGap: 2, WeightDecay: wd}) },
				Decay:         wd,
				Stateful:      true,
				StateBytesOf:  stateOf,
				CancelsInStep: true,
			})
		})
	}
}

// TestCondaFirstStep checks the paper's first step on a known answer: with
// ε → 0 the first update is Δ = −η·α·U·sign(UᵀG) (m < n) or
// −η·α·sign(G·V)·Vᵀ (m ≥ n), U, V the singular vectors of G; so every
// column of Δ has norm η·α·√m on the left, every row η·α·√n on the right.
func TestCondaFirstStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{4, 7}, {7, 4}, {5, 5}} {
		m, n := sh[0], sh[1]
		const lr, alpha = 0.1, 0.5
		w := peft.NewParam("w", randDense(rng, m, n))
		w.Grad = randDense(rng, m, n)
		w0 := mat.DenseCopyOf(w.Value)
		opt := conda.New(conda.Config{Scale: alpha, Eps: 1e-300})
		opt.Step([]*peft.Tensor{w}, lr)
		// the basis from G's own SVD, independently of the optimizer
		svd, err := accel.ThinSVD(context.Background(), w.Grad)
		if err != nil {
			t.Fatal(err)
		}
		sign := func(_, _ int, v float64) float64 { return math.Copysign(1, v) }
		var want, s mat.Dense
		if m < n {
			s.Mul(svd.U.T(), w.Grad)
			s.Apply(sign, &s)
			want.Mul(svd.U, &s)
		} else {
			s.Mul(w.Grad, svd.VT.T())
			s.Apply(sign, &s)
			want.Mul(&s, svd.VT)
		}
		want.Scale(-lr*alpha, &want)
		var delta mat.Dense
		delta.Sub(w.Value, w0)
		if d := maxAbsDiff(&delta, &want); d > 1e-12 {
			t.Errorf("%d×%d: first step differs from −η·α·back(sign(proj(G))) by %g", m, n, d)
		}
		// column (left) or row (right) norms of the update
		for i := 0; i < max(m, n); i++ {
			var norm, wantNorm float64
			switch {
			case m < n && i < n:
				norm, wantNorm = mat.Norm(delta.ColView(i), 2), lr*alpha*math.Sqrt(float64(m))
			case m >= n && i < m:
				norm, wantNorm = mat.Norm(delta.RowView(i), 2), lr*alpha*math.Sqrt(float64(n))
			default:
				continue
			}
			if math.Abs(norm-wantNorm) > 1e-12 {
				t.Errorf("%d×%d: norm of line %d of Δ = %.15g, want η·α·√%d = %.15g", m, n, i, norm, min(m, n), wantNorm)
			}
		}
	}
}

// TestCondaBasis checks that the basis is square orthogonal, so that
// back(proj(X)) = X, that it spans the momentum's singular vectors at a
// refresh (proj(M) is M's singular values times a signed identity's rows:
// Uᵀ·M = Σ·Vᵀ), and that it is recomputed at steps 1, T+1, … only.
func TestCondaBasis(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const T = 3
	for _, sh := range [][2]int{{8, 5}, {5, 8}} {
		m, n := sh[0], sh[1]
		w := peft.NewParam("w", randDense(rng, m, n))
		opt := conda.New(conda.Config{UpdateProjGap: T, Beta1: 0.5})
		var prev *mat.Dense
		mom := mat.NewDense(m, n, nil) // the momentum, kept here independently
		for step := 1; step <= 2*T+1; step++ {
			w.Grad = randDense(rng, m, n)
			var g mat.Dense
			g.Scale(0.5, w.Grad)
			mom.Scale(0.5, mom)
			mom.Add(mom, &g)
			opt.Step([]*peft.Tensor{w}, 1e-3)
			b, left := opt.Basis(w)
			if left != (m < n) {
				t.Fatalf("%d×%d: left = %v", m, n, left)
			}
			k := min(m, n)
			if r, c := b.Dims(); r != k || c != k {
				t.Fatalf("%d×%d: basis %d×%d, want %d×%d", m, n, r, c, k, k)
			}
			var btb mat.Dense
			btb.Mul(b.T(), b)
			if d := maxAbsDiff(&btb, eye(k)); d > 1e-13 {
				t.Errorf("%d×%d step %d: ‖BᵀB − I‖_max = %g", m, n, step, d)
			}
			x := randDense(rng, m, n)
			var px, bx mat.Dense
			if left {
				px.Mul(b.T(), x)
				bx.Mul(b, &px)
			} else {
				px.Mul(x, b.T())
				bx.Mul(&px, b)
			}
			if d := maxAbsDiff(&bx, x); d > 1e-13 {
				t.Errorf("%d×%d step %d: ‖back(proj(X)) − X‖_max = %g", m, n, step, d)
			}
			if (step-1)%T != 0 {
				if !mat.Equal(b, prev) {
					t.Errorf("%d×%d step %d: basis changed between refreshes", m, n, step)
				}
				continue
			}
			// at a refresh proj(M) = Σ·Vᵀ (left) or U·Σ (right): its
			// lines are orthogonal with norms M's singular values
			var pm, gram mat.Dense
			if left {
				pm.Mul(b.T(), mom)
				gram.Mul(&pm, pm.T())
			} else {
				pm.Mul(mom, b.T())
				gram.Mul(pm.T(), &pm)
			}
			s, err := accel.SingularValues(context.Background(), mom)
			if err != nil {
				t.Fatal(err)
			}
			want := mat.NewDense(k, k, nil)
			for i, v := range s {
				want.Set(i, i, v*v)
			}
			if d := maxAbsDiff(&gram, want); d > 1e-12 {
				t.Errorf("%d×%d step %d: proj(M) is not Σ-diagonal: off by %g", m, n, step, d)
			}
			if prev != nil && mat.EqualApprox(b, prev, 1e-6) {
				t.Errorf("%d×%d step %d: basis not refreshed", m, n, step)
			}
			prev = mat.DenseCopyOf(b)
		}
	}
}

func eye(k int) *mat.Dense {
	d := mat.NewDense(k, k, nil)
	for i := 0; i < k; i++ {
		d.Set(i, i, 1)
	}
	return d
}

// TestCondaIsAdamInAxisBasis checks the special case where Conda is Adam:
// when the basis is a signed permutation (the first gradient is diagonal
// with distinct entries, and T is long), rotating into it only permutes
// and flips coordinates, so with α = 1 Conda takes Adam's steps for any
// later gradients. The 1×n bias, never projected, is Adam too. Both are
// compared with peft.AdamW, ε → 0 in both (they add ε at different
// places).
func TestCondaIsAdamInAxisBasis(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sh := range [][2]int{{4, 6}, {6, 4}} {
		m, n := sh[0], sh[1]
		w0, b0 := randDense(rng, m, n), randDense(rng, 1, n)
		wc, bc := peft.NewParam("w", mat.DenseCopyOf(w0)), peft.NewParam("b", mat.DenseCopyOf(b0))
		wa, ba := peft.NewParam("w", mat.DenseCopyOf(w0)), peft.NewParam("b", mat.DenseCopyOf(b0))
		cd := conda.New(conda.Config{Scale: 1, UpdateProjGap: 1000, Beta2: 0.999, Eps: 1e-300})
		ad := &peft.AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-300}
		for step := 1; step <= 20; step++ {
			g := randDense(rng, m, n)
			if step == 1 { // diagonal, entries 3, −2.5, 2, … in no order
				g = mat.NewDense(m, n, nil)
				for i, v := range []float64{3, -2.5, 2, -1.5, 1, 0.5}[:min(m, n)] {
					g.Set((i*3)%min(m, n), (i*3)%min(m, n), v) // a permuted diagonal
				}
			}
			gb := randDense(rng, 1, n)
			wc.Grad, wa.Grad = mat.DenseCopyOf(g), mat.DenseCopyOf(g)
			bc.Grad, ba.Grad = mat.DenseCopyOf(gb), mat.DenseCopyOf(gb)
			cd.Step([]*peft.Tensor{wc, bc}, 0.01)
			ad.Step([]*peft.Tensor{wa, ba}, 0.01)
		}
		b, _ := cd.Basis(wc)
		for _, v := range b.RawMatrix().Data {
			if v != 0 && math.Abs(v) != 1 {
				t.Fatalf("%d×%d: basis is not a signed permutation: %v", m, n, mat.Formatted(b))
			}
		}
		var moved mat.Dense
		moved.Sub(wa.Value, w0)
		if d := maxAbsDiff(wc.Value, wa.Value); d > 1e-12*mat.Norm(&moved, math.Inf(1)) {
			t.Errorf("%d×%d: Conda's W differs from Adam's by %g after 20 steps", m, n, d)
		}
		if d := maxAbsDiff(bc.Value, ba.Value); d > 1e-14 {
			t.Errorf("%d×%d: Conda's bias differs from Adam's by %g", m, n, d)
		}
	}
}

// TestCondaCancelLeavesNoTrace: a step cancelled in its SVD changes no
// weight and no state, so the next step is the first step of a fresh
// optimizer, bit for bit.
func TestCondaCancelLeavesNoTrace(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	w0, b0, g, gb := randDense(rng, 5, 7), randDense(rng, 1, 7), randDense(rng, 5, 7), randDense(rng, 1, 7)
	params := func() []*peft.Tensor {
		b, w := peft.NewParam("b", mat.DenseCopyOf(b0)), peft.NewParam("w", mat.DenseCopyOf(w0))
		b.Grad, w.Grad = mat.DenseCopyOf(gb), mat.DenseCopyOf(g)
		return []*peft.Tensor{b, w} // the bias first: it must not move either
	}
	ps := params()
	opt := conda.New(conda.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opt.SetContext(ctx)
	err := peft.Maybe(func() { opt.Step(ps, 0.01) })
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "w") || !strings.Contains(err.Error(), "step 1") {
		t.Fatalf("cancelled step: err = %v, want context.Canceled naming w and step 1", err)
	}
	if !mat.Equal(ps[0].Value, b0) || !mat.Equal(ps[1].Value, w0) || opt.StateBytes() != 0 {
		t.Fatalf("a cancelled step left a trace: bias moved %v, w moved %v, state %d B",
			!mat.Equal(ps[0].Value, b0), !mat.Equal(ps[1].Value, w0), opt.StateBytes())
	}
	opt.SetContext(context.Background())
	opt.Step(ps, 0.01)
	fresh := params()
	conda.New(conda.Config{}).Step(fresh, 0.01)
	for i := range ps {
		if !mat.Equal(ps[i].Value, fresh[i].Value) {
			t.Errorf("%s after a cancelled step differs from a fresh optimizer's", ps[i].Name)
		}
	}
}

func TestCondaBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  conda.Config
		want string
	}{
		{conda.Config{Beta1: 1}, "Beta1 = 1"},
		{conda.Config{Beta2: -0.5}, "Beta2 = -0.5"},
		{conda.Config{UpdateProjGap: -3}, "UpdateProjGap = -3"},
		{conda.Config{Eps: -1}, "Eps = -1"},
		{conda.Config{WeightDecay: math.NaN()}, "WeightDecay = NaN"},
		{conda.Config{Scale: math.Inf(1)}, "Scale = +Inf"},
		{conda.Config{Targets: []string{"^(q$"}}, `"^(q$"`},
	} {
		err := peft.Maybe(func() { conda.New(tc.cfg) })
		var ae peft.ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "conda") {
			t.Errorf("New(%+v): err = %v, want an ArgError naming conda and %q", tc.cfg, err, tc.want)
		}
	}
}

// TestCondaTargets: only matching 2-D tensors get a basis.
func TestCondaTargets(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	names := []string{"blocks.0.attn.q.weight", "blocks.0.attn.q.bias", "blocks.0.mlp.fc.weight", "wte.weight"}
	var ps []*peft.Tensor
	for _, nm := range names {
		r := 6
		if strings.HasSuffix(nm, "bias") {
			r = 1
		}
		p := peft.NewParam(nm, randDense(rng, r, 4))
		p.Grad = randDense(rng, r, 4)
		ps = append(ps, p)
	}
	opt := conda.New(conda.Config{Targets: []string{"blocks.*.attn.*", "mlp.fc"}})
	opt.Step(ps, 1e-3)
	for i, want := range []bool{true, false, true, false} {
		if b, _ := opt.Basis(ps[i]); (b != nil) != want {
			t.Errorf("%s projected = %v, want %v", names[i], b != nil, want)
		}
	}
}

// TestCondaTeacher fully trains the teacher task's 24×16 student with Conda
// and with AdamW, same rate and batches: Conda's loss must fall, and the
// figures are logged for the comparison (measured: see the comment).
func TestCondaTeacher(t *testing.T) {
	task := peft.NewTeacherTask(24, 16, []float64{4, 3, 2, 1, 0.5}, 256, 1)
	initLoss, _, err := peft.Evaluate(context.Background(), task.Model(), task)
	if err != nil {
		t.Fatal(err)
	}
	run := func(opt peft.Optimizer) (float64, float64) {
		m := task.Model()
		h, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 300, BatchSize: 16, LR: 0.01, Optimizer: opt, EvalEvery: 300, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		return h.EvalLoss[len(h.EvalLoss)-1], task.RecoveryError(m)
	}
	cd := conda.New(conda.Config{Scale: 1, UpdateProjGap: 50})
	cl, cr := run(cd)
	ad := peft.NewAdamW(0)
	al, ar := run(ad)
	t.Logf("eval MSE at init %.4g; after 300 steps: Conda %.4g (recovery error %.4f, state %d B), AdamW %.4g (recovery error %.4f, state %d B)",
		initLoss, cl, cr, cd.StateBytes(), al, ar, ad.StateBytes())
	if !(cl < 1e-2*initLoss) {
		t.Errorf("Conda: eval MSE %.4g → %.4g, want a 100× fall", initLoss, cl)
	}
	if got, want := cd.StateBytes(), 8*(2*24*16+16*16); got != want {
		t.Errorf("Conda state %d B, want 2mn + min(m,n)² floats = %d B", got, want)
	}
}

// TestCondaTinyGPT fine-tunes every weight of the shipped tiny GPT on the
// State of the Union text for 40 steps, Conda on the attention and MLP
// matrices (as the paper's scripts) and Adam on the rest: the held-out
// loss falls. AdamW on the same run is logged for comparison.
func TestCondaTinyGPT(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the tiny GPT")
	}
	data, err := peft.NewTextData("sotu", peft.TinyGPTConfig.Context, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	run := func(opt peft.Optimizer) (before, after float64) {
		g, err := peft.LoadTinyGPT()
		if err != nil {
			t.Fatal(err)
		}
		before, _, err = peft.Evaluate(context.Background(), g, data)
		if err != nil {
			t.Fatal(err)
		}
		h, err := peft.Train(context.Background(), g, data, peft.TrainConfig{Steps: 40, BatchSize: 8, LR: 3e-3, Optimizer: opt, EvalEvery: 40, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		return before, h.EvalLoss[0]
	}
	cd := conda.New(conda.Config{UpdateProjGap: 50, Targets: []string{"blocks.*.attn.*", "blocks.*.mlp.*"}})
	before, after := run(cd)
	ad := peft.NewAdamW(0)
	_, adamAfter := run(ad)
	t.Logf("held-out loss %.4f → Conda %.4f (state %d B), AdamW %.4f (state %d B)", before, after, cd.StateBytes(), adamAfter, ad.StateBytes())
	// Measured: 2.1291 → 2.0862 (Conda, α = 0.25), 2.1365 (AdamW, whose
	// rate 3e-3 is too high here; at 1e-3 it reaches 2.0507).
	if !(after < before-0.02) {
		t.Errorf("Conda: held-out loss %.4f → %.4f, want a fall of 0.02 nats at least", before, after)
	}
}
