package lorapro_test

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/lorapro"
	"gonum.org/v1/gonum/mat"
)

// loraGrads returns LoRA's gradients g_A^L = s·Bᵀ·G (r×k) and
// g_B^L = s·G·Aᵀ (d×r) for a full gradient g (d×k).
func loraGrads(a, b, g *mat.Dense, s float64) (gAL, gBL *mat.Dense) {
	gAL, gBL = new(mat.Dense), new(mat.Dense)
	gAL.Mul(b.T(), g)
	gAL.Scale(s, gAL)
	gBL.Mul(g, a.T())
	gBL.Scale(s, gBL)
	return gAL, gBL
}

// relDiff returns ‖x − y‖_F / ‖ref‖_F.
func relDiff(x, y, ref mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(x, y)
	return mat.Norm(&d, 2) / mat.Norm(ref, 2)
}

// leastSquaresFitRef is the test's oracle for Theorem 2.1: it solves
// min over (g_A, g_B) of ‖s(B·g_A + g_B·A) − G‖_F numerically, writing the
// linear map (g_A, g_B) ↦ s(B·g_A + g_B·A) as a dk × (rk + dr) matrix M and
// solving with M's SVD (M has an r²-dimensional null space, the X's), and
// returns the fitted s(B·g_A + g_B·A) (d×k), which is unique.
func leastSquaresFitRef(a, b, g *mat.Dense, s float64) *mat.Dense {
	r, k := a.Dims()
	d, _ := b.Dims()
	M := mat.NewDense(d*k, r*k+d*r, nil)
	// column of g_A[p][q]: s·B[:, p]·e_qᵀ
	for p := 0; p < r; p++ {
		for q := 0; q < k; q++ {
			col := p*k + q
			for i := 0; i < d; i++ {
				M.Set(i*k+q, col, s*b.At(i, p))
			}
		}
	}
	// column of g_B[p][q]: s·e_p·A[q, :]
	for p := 0; p < d; p++ {
		for q := 0; q < r; q++ {
			col := r*k + p*r + q
			for j := 0; j < k; j++ {
				M.Set(p*k+j, col, s*a.At(q, j))
			}
		}
	}
	var svd mat.SVD
	if !svd.Factorize(M, mat.SVDThin) {
		panic("SVD failed")
	}
	sv := svd.Values(nil)
	rank := 0
	for _, v := range sv {
		if v > 1e-12*sv[0] {
			rank++
		}
	}
	rhs := mat.NewDense(d*k, 1, mat.DenseCopyOf(g).RawMatrix().Data)
	var z, fit mat.Dense
	svd.SolveTo(&z, rhs, rank)
	fit.Mul(M, &z)
	return mat.NewDense(d, k, fit.RawMatrix().Data)
}

// tangentProjRef returns P_B·G + G·P_A − P_B·G·P_A (d×k).
func tangentProjRef(a, b, g *mat.Dense) *mat.Dense {
	proj := func(m *mat.Dense) *mat.Dense { // m·(mᵀm)⁻¹·mᵀ
		var mtm, inv, t, p mat.Dense
		mtm.Mul(m.T(), m)
		if err := inv.Inverse(&mtm); err != nil {
			panic(err)
		}
		t.Mul(m, &inv)
		p.Mul(&t, m.T())
		return &p
	}
	pb, pa := proj(b), proj(mat.DenseCopyOf(a.T()))
	var x, y, z, out mat.Dense
	x.Mul(pb, g)
	y.Mul(g, pa)
	z.Mul(&x, pa)
	out.Add(&x, &y)
	out.Sub(&out, &z)
	return &out
}

// TestAdjustLeastSquares checks Theorem 2.1 on known answers: for every X
// mode, the adjusted equivalent gradient s(B·g_A + g_B·A) is the
// least-squares fit to G that a numerical solve finds, and equals the
// tangent projection P_B·G + G·P_A − P_B·G·P_A, to 1e-10.
func TestAdjustLeastSquares(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, sh := range [][3]int{{7, 5, 2}, {5, 8, 3}, {6, 6, 1}, {9, 4, 3}} {
		d, k, r := sh[0], sh[1], sh[2]
		a := adaptertest.RandDense(rng, r, k)
		b := adaptertest.RandDense(rng, d, r)
		g := adaptertest.RandDense(rng, d, k)
		s := 1.7
		gAL, gBL := loraGrads(a, b, g, s)
		fit := leastSquaresFitRef(a, b, g, s)
		proj := tangentProjRef(a, b, g)
		if e := relDiff(fit, proj, g); e > 1e-10 {
			t.Fatalf("d=%d k=%d r=%d: the oracles disagree: ‖fit − proj‖/‖G‖ = %.3g", d, k, r, e)
		}
		// the residual of plain LoRA's equivalent gradient, for scale
		var lr mat.Dense
		lr.Sub(lorapro.Equivalent(a, b, gAL, gBL, s), g)
		var fr mat.Dense
		fr.Sub(fit, g)
		for _, mode := range []lorapro.XMode{lorapro.Sylvester, lorapro.Zero, lorapro.Symmetry} {
			adj := lorapro.Adjust(a, b, gAL, gBL, s, 0, mode)
			eq := lorapro.Equivalent(a, b, adj.GA, adj.GB, s)
			if e := relDiff(eq, fit, g); e > 1e-10 {
				t.Errorf("d=%d k=%d r=%d X=%s: ‖s(B·g_A + g_B·A) − least-squares fit‖/‖G‖ = %.3g, want ≤ 1e-10", d, k, r, mode, e)
			}
		}
		t.Logf("d=%d k=%d r=%d: ‖g̃ − G‖_F = %.4f with LoRA-Pro, %.4f with LoRA's raw gradients (‖G‖ = %.4f)", d, k, r, mat.Norm(&fr, 2), mat.Norm(&lr, 2), mat.Norm(g, 2))
		if !(mat.Norm(&fr, 2) < mat.Norm(&lr, 2)) {
			t.Errorf("d=%d k=%d r=%d: LoRA-Pro's residual %.4g is not below LoRA's %.4g", d, k, r, mat.Norm(&fr, 2), mat.Norm(&lr, 2))
		}
	}
}

// TestAdjustSylvesterX checks Theorem 2.3: X solves BᵀB·X + X·AAᵀ = C, and
// it is the minimizer of ‖g_A − g_A^L‖² + ‖g_B − g_B^L‖² over X: the
// gradient of that objective in X vanishes there, and X = 0 does worse.
func TestAdjustSylvesterX(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, sh := range [][3]int{{7, 5, 2}, {5, 8, 3}, {10, 9, 4}} {
		d, k, r := sh[0], sh[1], sh[2]
		a := adaptertest.RandDense(rng, r, k)
		b := adaptertest.RandDense(rng, d, r)
		g := adaptertest.RandDense(rng, d, k)
		s := 0.8
		gAL, gBL := loraGrads(a, b, g, s)
		adj := lorapro.Adjust(a, b, gAL, gBL, s, 0, lorapro.Sylvester)
		zero := lorapro.Adjust(a, b, gAL, gBL, s, 0, lorapro.Zero)
		x := adj.X
		// residual of the Sylvester equation
		var btb, aat, lhs, t1, rhs, binv mat.Dense
		btb.Mul(b.T(), b)
		aat.Mul(a, a.T())
		lhs.Mul(&btb, x)
		t1.Mul(x, &aat)
		lhs.Add(&lhs, &t1)
		if err := binv.Inverse(&btb); err != nil {
			t.Fatal(err)
		}
		rhs.Product(&binv, gAL, a.T())
		rhs.Scale(-1/(s*s), &rhs)
		if e := relDiff(&lhs, &rhs, &rhs); e > 1e-10 {
			t.Errorf("d=%d k=%d r=%d: Sylvester residual %.3g, want ≤ 1e-10", d, k, r, e)
		}
		// ∂/∂X [‖g_A − g_A^L‖² + ‖g_B − g_B^L‖²] = 2(g_A − g_A^L)·Aᵀ − 2Bᵀ·(g_B − g_B^L)
		var da, db, grad, t2 mat.Dense
		da.Sub(adj.GA, gAL)
		db.Sub(adj.GB, gBL)
		grad.Mul(&da, a.T())
		t2.Mul(b.T(), &db)
		grad.Sub(&grad, &t2)
		if e := mat.Norm(&grad, 2) / (mat.Norm(gAL, 2) * mat.Norm(a, 2)); e > 1e-10 {
			t.Errorf("d=%d k=%d r=%d: gradient in X of the distance to LoRA's gradients = %.3g (relative) at the Sylvester X, want ≤ 1e-10", d, k, r, e)
		}
		dist := func(p lorapro.Adjusted) float64 {
			var x, y mat.Dense
			x.Sub(p.GA, gAL)
			y.Sub(p.GB, gBL)
			return math.Pow(mat.Norm(&x, 2), 2) + math.Pow(mat.Norm(&y, 2), 2)
		}
		if dx, d0 := dist(adj), dist(zero); !(dx < d0) {
			t.Errorf("d=%d k=%d r=%d: distance to LoRA's gradients %.6g at the Sylvester X, %.6g at X = 0: want smaller", d, k, r, dx, d0)
		}
	}
}

// TestAdjustFullRank: at full rank r = min(d, k) with invertible factors
// the equivalent gradient is G itself.
func TestAdjustFullRank(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, sh := range [][2]int{{4, 7}, {7, 4}, {5, 5}} {
		d, k := sh[0], sh[1]
		r := min(d, k)
		a := adaptertest.RandDense(rng, r, k)
		b := adaptertest.RandDense(rng, d, r)
		g := adaptertest.RandDense(rng, d, k)
		s := 2.0
		gAL, gBL := loraGrads(a, b, g, s)
		adj := lorapro.Adjust(a, b, gAL, gBL, s, 0, lorapro.Sylvester)
		eq := lorapro.Equivalent(a, b, adj.GA, adj.GB, s)
		if e := relDiff(eq, g, g); e > 1e-10 {
			t.Errorf("d=%d k=%d r=%d: ‖g̃ − G‖/‖G‖ = %.3g at full rank, want ≤ 1e-10", d, k, r, e)
		}
	}
}

// TestAdjustAtInit: with B = 0 (LoRA's init) the pseudo-inverse gives
// g_A = 0 and the equivalent gradient G·P_A; δ = 1e-8 changes nothing
// visible.
func TestAdjustAtInit(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	d, k, r := 6, 5, 2
	a := adaptertest.RandDense(rng, r, k)
	b := mat.NewDense(d, r, nil)
	g := adaptertest.RandDense(rng, d, k)
	s := 1.0
	gAL, gBL := loraGrads(a, b, g, s)
	for _, delta := range []float64{0, 1e-8} {
		adj := lorapro.Adjust(a, b, gAL, gBL, s, delta, lorapro.Sylvester)
		if n := mat.Norm(adj.GA, 2); n != 0 {
			t.Errorf("δ=%g: ‖g_A‖ = %g at B = 0, want 0", delta, n)
		}
		var pa, gpa, t1, inv mat.Dense
		t1.Mul(a, a.T())
		if err := inv.Inverse(&t1); err != nil {
			t.Fatal(err)
		}
		pa.Product(a.T(), &inv, a)
		gpa.Mul(g, &pa)
		if e := relDiff(lorapro.Equivalent(a, b, adj.GA, adj.GB, s), &gpa, g); e > 1e-7 {
			t.Errorf("δ=%g: ‖g̃ − G·P_A‖/‖G‖ = %.3g at B = 0", delta, e)
		}
	}
}

// TestAdjustShapePanics: factors that do not chain panic with both shapes.
func TestAdjustShapePanics(t *testing.T) {
	err := peft.Maybe(func() {
		lorapro.Adjust(mat.NewDense(2, 5, nil), mat.NewDense(6, 3, nil), mat.NewDense(2, 5, nil), mat.NewDense(6, 2, nil), 1, 0, "")
	})
	if err == nil || !strings.Contains(err.Error(), "(2×5)") || !strings.Contains(err.Error(), "(6×3)") {
		t.Errorf("mismatched factors: err = %v, want a shape error naming (2×5) and (6×3)", err)
	}
}

// teacherLoRA returns a teacher task's student with a LoRA of rank r.
func teacherLoRA(t *testing.T, seed int64, r int) (*peft.TeacherTask, *peft.LinearModel, []*lora.LoRA) {
	t.Helper()
	task := peft.NewTeacherTask(16, 12, []float64{3, 2, 1, 0.5}, 256, seed)
	m := task.Model()
	ads, err := lora.Add(m, lora.Config{R: r, Alpha: 2 * float64(r), Targets: []string{"proj"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	return task, m, ads
}

// TestStepAdjustsLoRAGradients wires the optimizer to the math: G is
// obtained by unfreezing W₀ for one backward pass; LoRA's gradients are
// s·Bᵀ·G and s·G·Aᵀ; one SGD step moves A and B by exactly −η times
// Adjust's gradients, and so ΔW by −η·s(B·g_A + g_B·A) to first order.
func TestStepAdjustsLoRAGradients(t *testing.T) {
	task, m, ads := teacherLoRA(t, 1, 3)
	a := ads[0]
	opt, err := lorapro.New(ads, lorapro.Config{SGD: true})
	if err != nil {
		t.Fatal(err)
	}
	// three warm-up steps so that B ≠ 0
	b := task.Sample(rand.New(rand.NewSource(5)), 64)
	for i := 0; i < 3; i++ {
		for _, p := range peft.TrainableOf(m) {
			p.Grad = nil
		}
		m.Loss(b).Backward()
		opt.Step(peft.TrainableOf(m), 0.5)
	}
	// G by unfreezing W₀ for this backward pass
	w := m.Layer.W
	w.Unfreeze()
	for _, p := range m.Params() {
		p.Grad = nil
	}
	m.Loss(b).Backward()
	g := mat.DenseCopyOf(w.Grad)
	w.Freeze()
	w.Grad = nil
	s := a.Scaling()
	gAL, gBL := loraGrads(a.A.Value, a.B.Value, g, s)
	if e := relDiff(a.A.Grad, gAL, gAL); e > 1e-12 {
		t.Fatalf("autograd g_A differs from s·Bᵀ·G by %.3g", e)
	}
	if e := relDiff(a.B.Grad, gBL, gBL); e > 1e-12 {
		t.Fatalf("autograd g_B differs from s·G·Aᵀ by %.3g", e)
	}
	adj := lorapro.Adjust(a.A.Value, a.B.Value, a.A.Grad, a.B.Grad, s, opt.Config().Delta, lorapro.Sylvester)
	a0, b0, dw0 := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value), a.Delta()
	const lr = 1e-4
	opt.Step(peft.TrainableOf(m), lr)
	var wantA, wantB mat.Dense
	wantA.Scale(-lr, adj.GA)
	wantA.Add(a0, &wantA)
	wantB.Scale(-lr, adj.GB)
	wantB.Add(b0, &wantB)
	if e := relDiff(a.A.Value, &wantA, a0); e > 1e-15 {
		t.Errorf("A after the step differs from A − η·g_A by %.3g", e)
	}
	if e := relDiff(a.B.Value, &wantB, b0); e > 1e-15 {
		t.Errorf("B after the step differs from B − η·g_B by %.3g", e)
	}
	var ddw mat.Dense
	ddw.Sub(a.Delta(), dw0)
	ddw.Scale(-1/lr, &ddw)
	proj := tangentProjRef(a0, b0, g)
	if e := relDiff(&ddw, proj, proj); e > 1e-3 {
		t.Errorf("−ΔW change/η differs from the tangent projection of G by %.3g, want O(η)", e)
	}
	if x := opt.X(a); x == nil {
		t.Errorf("X(a) = nil after a step")
	}
}

func TestOptimizerSuite(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  lorapro.Config
	}{
		{"efficient", lorapro.Config{WeightDecay: 0.1}},
		{"full", lorapro.Config{Mode: lorapro.Full}},
		{"sgd", lorapro.Config{SGD: true, WeightDecay: 0.05}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stateful := !c.cfg.SGD
			adaptertest.RunOptimizer(t, adaptertest.OptimizerCase{
				Name: "LoRA-Pro " + c.name,
				New: func() peft.Optimizer {
					o, err := lorapro.New(nil, c.cfg)
					if err != nil {
						t.Fatal(err)
					}
					return o
				},
				Decay:    c.cfg.WeightDecay,
				Stateful: stateful,
				StateBytesOf: func(m, n int) int {
					if !stateful {
						return 0
					}
					return 16 * m * n // AdamW's two moments
				},
			})
		})
	}
}

// TestStateBytes: 16·r·(d+k) bytes per adapter in efficient mode,
// 16·d·k in full mode, none with SGD.
func TestStateBytes(t *testing.T) {
	const d, k, r = 16, 12, 3
	for _, c := range []struct {
		cfg  lorapro.Config
		want int
	}{
		{lorapro.Config{}, 16 * r * (d + k)},
		{lorapro.Config{Mode: lorapro.Full}, 16 * d * k},
		{lorapro.Config{SGD: true}, 0},
	} {
		task, m, ads := teacherLoRA(t, 1, r)
		opt, err := lorapro.New(ads, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peft.Train(context.Background(), m, task, peft.TrainConfig{Steps: 3, BatchSize: 8, LR: 1e-3, Optimizer: opt}); err != nil {
			t.Fatal(err)
		}
		if got := opt.StateBytes(); got != c.want {
			t.Errorf("%+v: StateBytes = %d, want %d", c.cfg, got, c.want)
		}
	}
}

// bestEval trains the teacher task's rank-r LoRA for steps at each of lrs
// with the optimizer mk builds, and returns the lowest final eval loss.
func bestEval(t *testing.T, seed int64, r, steps int, lrs []float64, mk func(ads []*lora.LoRA) peft.Optimizer) (best, bestLR float64) {
	best = math.Inf(1)
	for _, lr := range lrs {
		task, m, ads := teacherLoRA(t, seed, r)
		h, err := peft.Train(context.Background(), m, task, peft.TrainConfig{
			Steps: steps, BatchSize: 32, LR: lr, Schedule: "constant", Optimizer: mk(ads), EvalEvery: steps, Seed: 3})
		if err != nil {
			continue // diverged at this rate
		}
		if l := h.EvalLoss[len(h.EvalLoss)-1]; l < best {
			best, bestLR = l, lr
		}
	}
	return best, bestLR
}

// TestTeacherBeatsLoRA: on a teacher task whose ΔW* has rank 4, LoRA of
// rank 4 trained 50 steps, each optimizer at its best rate of a grid:
// LoRA-Pro's eval loss is far below plain LoRA's with SGD, and below it
// with Adam in full mode.
func TestTeacherBeatsLoRA(t *testing.T) {
	const r, steps = 4, 50
	pro := func(cfg lorapro.Config) func([]*lora.LoRA) peft.Optimizer {
		return func(ads []*lora.LoRA) peft.Optimizer {
			o, err := lorapro.New(ads, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return o
		}
	}
	sgdGrid := []float64{0.5, 1, 2, 5}
	adamGrid := []float64{0.01, 0.02, 0.05, 0.1}
	loraSGD, lr1 := bestEval(t, 1, r, steps, sgdGrid, func([]*lora.LoRA) peft.Optimizer { return &peft.SGD{} })
	proSGD, lr2 := bestEval(t, 1, r, steps, sgdGrid, pro(lorapro.Config{SGD: true}))
	loraAdam, lr3 := bestEval(t, 1, r, steps, adamGrid, func([]*lora.LoRA) peft.Optimizer { return peft.NewAdamW(0) })
	proFull, lr4 := bestEval(t, 1, r, steps, adamGrid, pro(lorapro.Config{Mode: lorapro.Full}))
	proEff, lr5 := bestEval(t, 1, r, steps, adamGrid, pro(lorapro.Config{}))
	t.Logf("eval MSE after %d steps at rank %d: SGD: LoRA %.3g (lr %g), LoRA-Pro %.3g (lr %g); Adam: LoRA %.3g (lr %g), LoRA-Pro full %.3g (lr %g), LoRA-Pro efficient %.3g (lr %g)",
		steps, r, loraSGD, lr1, proSGD, lr2, loraAdam, lr3, proFull, lr4, proEff, lr5)
	if !(proSGD < 0.1*loraSGD) {
		t.Errorf("SGD: LoRA-Pro eval loss %.3g, want below a tenth of LoRA's %.3g", proSGD, loraSGD)
	}
	if !(proFull < 0.75*loraAdam) {
		t.Errorf("Adam: LoRA-Pro (full) eval loss %.3g, want below 0.75× LoRA's %.3g", proFull, loraAdam)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  lorapro.Config
		want string
	}{
		{lorapro.Config{Mode: "fast"}, `Mode = "fast"`},
		{lorapro.Config{XMode: "half"}, `XMode = "half"`},
		{lorapro.Config{Delta: -1}, "Delta = -1"},
		{lorapro.Config{Beta1: 1}, "Beta1 = 1"},
		{lorapro.Config{Beta2: -0.5}, "Beta2 = -0.5"},
		{lorapro.Config{Eps: -1}, "Eps = -1"},
		{lorapro.Config{WeightDecay: math.NaN()}, "WeightDecay = NaN"},
	} {
		_, err := lorapro.New(nil, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) error = %v, want one containing %q", c.cfg, err, c.want)
		}
	}
	_, _, ads := teacherLoRA(t, 1, 2)
	if _, err := lorapro.New([]*lora.LoRA{ads[0], ads[0]}, lorapro.Config{}); err == nil || !strings.Contains(err.Error(), "proj.lora_A") {
		t.Errorf("an adapter given twice: error = %v, want one naming proj.lora_A…", err)
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("LoRA-Pro")
	if !ok || m.Kind != peft.OptimizerMethod || !strings.Contains(m.Paper, "2407.18242") {
		t.Errorf("LookupMethod(LoRA-Pro) = %v, %v", m, ok)
	}
	_ = fmt.Sprint(m)
}
