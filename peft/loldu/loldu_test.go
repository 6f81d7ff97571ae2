package loldu_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/loldu"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite with s frozen (the reference's
// default) and with s trained. LoLDU rewrites W to W_res (ChangesBase). At
// init the output equals the original model's up to rounding only: W_res
// is W − s·P·L_r·diag(z)·U_r rounded, and Forward adds the product back in
// another order. Measured on the suite's case (r = 2, α = 3): 2.1e-16
// relative, s frozen and trained alike; over chain seeds 1–200 and α ∈
// {0.01, 3, 100} the worst was 2.7e-14, at α = 100 where W_res = W −
// 50·P·L_r·diag(z)·U_r cancels. InitTol 1e-13 covers that, while the
// faults it guards against (W not rewritten, W_res with another s) are
// O(1).
func TestSuite(t *testing.T) {
	for _, train := range []bool{false, true} {
		name := map[bool]string{false: "fixed-s", true: "trained-s"}[train]
		t.Run(name, func(t *testing.T) {
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					as, err := loldu.Add(m, loldu.Config{R: o.R, Alpha: o.Alpha, TrainScale: train, Targets: o.Targets})
					return adaptertest.Adapters(as), err
				},
				ChangesBase: true,
				ZeroAtInit:  true,
				InitTol:     1e-13,
			})
		})
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("loldu")
	if !ok {
		t.Fatal("LoLDU is not registered")
	}
	if m.Name != "LoLDU" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_LOLDU" ||
		m.Package != "github.com/gopeft/gopeft/peft/loldu" || !strings.Contains(m.Paper, "arXiv:2410.13618") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	as, err := loldu.Add(peft.NewMLP([]int{6, 7, 4}, 3), loldu.Config{R: 2, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(as[0]); !ok || owner.Name != "LoLDU" {
		t.Errorf("a LoLDU adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// permMatrix returns P (m×m) for a row permutation: P_{i,perm[i]} = 1.
func permMatrix(perm []int) *mat.Dense {
	p := mat.NewDense(len(perm), len(perm), nil)
	for i, v := range perm {
		p.Set(i, v, 1)
	}
	return p
}

// ldu returns P·L·diag(D)·U.
func ldu(f loldu.LDU) *mat.Dense {
	var ld, out mat.Dense
	ld.Apply(func(_, j int, v float64) float64 { return v * f.D[j] }, f.L)
	out.Mul(&ld, f.U)
	out.Mul(permMatrix(f.Perm), &out)
	return &out
}

// checkTriangular checks L unit lower- and U unit upper-trapezoidal
// exactly, and |L_ij| ≤ 1 (partial pivoting).
func checkTriangular(t *testing.T, what string, f loldu.LDU) {
	t.Helper()
	m, r := f.L.Dims()
	for i := 0; i < m; i++ {
		for j := 0; j < r; j++ {
			v := f.L.At(i, j)
			switch {
			case j == i && v != 1, j > i && v != 0:
				t.Errorf("%s: L[%d,%d] = %g, want unit lower-trapezoidal", what, i, j, v)
			case math.Abs(v) > 1:
				t.Errorf("%s: |L[%d,%d]| = %g > 1: not partial pivoting", what, i, j, v)
			}
		}
	}
	_, n := f.U.Dims()
	for i := 0; i < r; i++ {
		for j := 0; j <= i && j < n; j++ {
			if v := f.U.At(i, j); (j == i && v != 1) || (j < i && v != 0) {
				t.Errorf("%s: U[%d,%d] = %g, want unit upper-trapezoidal", what, i, j, v)
			}
		}
	}
}

// TestFactorize checks the full factorization (r = min(m, n)) on square,
// tall and wide matrices: P·L·diag(D)·U = W to 1e-14 relative, S = 0, L
// and U unit-triangular, and on square ones the same P, L and diag(D)·U as
// gonum's mat.LU.
func TestFactorize(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var worst, worstGonum float64
	for _, s := range []struct{ m, n int }{{1, 1}, {2, 2}, {5, 5}, {9, 9}, {7, 4}, {4, 7}, {16, 3}, {3, 16}, {20, 20}} {
		w := adaptertest.RandDense(rng, s.m, s.n)
		p := min(s.m, s.n)
		f, err := loldu.Factorize(w, p)
		if err != nil {
			t.Fatal(err)
		}
		checkTriangular(t, peft.ShapeOf(s.m, s.n), f)
		worst = math.Max(worst, adaptertest.RelDiffMax(ldu(f), w))
		if adaptertest.MaxAbs(f.S) != 0 {
			t.Errorf("%s: S ≠ 0 after the full factorization", peft.ShapeOf(s.m, s.n))
		}
		if s.m != s.n {
			continue
		}
		var lu mat.LU
		lu.Factorize(w)
		piv := lu.RowPivots(nil)
		for i := range piv {
			if piv[i] != f.Perm[i] {
				t.Fatalf("%s: permutation %v, gonum's %v", peft.ShapeOf(s.m, s.n), f.Perm, piv)
			}
		}
		var gl mat.TriDense
		var gu mat.TriDense
		lu.LTo(&gl)
		lu.UTo(&gu)
		var du mat.Dense
		du.Apply(func(i, _ int, v float64) float64 { return v * f.D[i] }, f.U)
		worstGonum = math.Max(worstGonum, math.Max(adaptertest.RelDiffMax(f.L, &gl), adaptertest.RelDiffMax(&du, &gu)))
	}
	t.Logf("max relative |P·L·D·U − W| %.3g; max relative difference from gonum's L and U %.3g", worst, worstGonum)
	if worst > 1e-14 || worstGonum > 1e-14 {
		t.Errorf("reconstruction off by %.3g, gonum's factors by %.3g; want ≤ 1e-14", worst, worstGonum)
	}
}

// TestPartial checks r < min(m, n) steps: P·L_r is the full
// factorization's P·L[:, :r] (L_r's rows are not L's first columns, which
// later pivots permute), U_r and the r pivots are the full ones', and
// Pᵀ·W = L_r·diag(D)·U_r + S with S zero in its first r rows and columns.
func TestPartial(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, s := range []struct{ m, n, r int }{{8, 6, 1}, {8, 6, 3}, {5, 9, 4}, {12, 12, 7}} {
		w := adaptertest.RandDense(rng, s.m, s.n)
		full, err := loldu.Factorize(w, min(s.m, s.n))
		if err != nil {
			t.Fatal(err)
		}
		f, err := loldu.Factorize(w, s.r)
		if err != nil {
			t.Fatal(err)
		}
		what := peft.ShapeOf(s.m, s.n) + " r=" + string(rune('0'+s.r))
		checkTriangular(t, what, f)
		if d := adaptertest.RelDiffMax(loldu.Permute(f.Perm, f.L), loldu.Permute(full.Perm, full.L.Slice(0, s.m, 0, s.r))); d > 1e-14 {
			t.Errorf("%s: P·L_r differs from the full P·L's first columns by %.3g", what, d)
		}
		if d := adaptertest.RelDiffMax(f.U, full.U.Slice(0, s.r, 0, s.n)); d > 1e-14 {
			t.Errorf("%s: U_r differs from the full U's first rows by %.3g", what, d)
		}
		for i := 0; i < s.r; i++ {
			if f.D[i] != full.D[i] {
				t.Errorf("%s: pivot %d is %g, full factorization %g", what, i, f.D[i], full.D[i])
			}
		}
		var ptw mat.Dense // Pᵀ·W
		ptw.Mul(permMatrix(f.Perm).T(), w)
		var ld, rec mat.Dense
		ld.Apply(func(_, j int, v float64) float64 { return v * f.D[j] }, f.L)
		rec.Mul(&ld, f.U)
		rec.Add(&rec, f.S)
		if d := adaptertest.RelDiffMax(&rec, &ptw); d > 1e-14 {
			t.Errorf("%s: L·D·U + S differs from Pᵀ·W by %.3g", what, d)
		}
		for i := 0; i < s.m; i++ {
			for j := 0; j < s.n; j++ {
				if (i < s.r || j < s.r) && f.S.At(i, j) != 0 {
					t.Errorf("%s: S[%d,%d] = %g, want 0 in the first r rows and columns", what, i, j, f.S.At(i, j))
				}
			}
		}
	}
}

// TestZeroPivot: a zero pivot among the first r is a *PivotError naming
// the pivot; past r it does not matter.
func TestZeroPivot(t *testing.T) {
	w := mat.NewDense(4, 3, []float64{
		1, 2, 3,
		2, 4, 1,
		0.5, 1, 7,
		1, 2, 2,
	}) // column 1 is twice column 0: pivot 1 is zero
	if _, err := loldu.Factorize(w, 1); err != nil {
		t.Errorf("r = 1: %v", err)
	}
	_, err := loldu.Factorize(w, 2)
	var pe *loldu.PivotError
	if !errors.As(err, &pe) || pe.Index != 1 {
		t.Fatalf("r = 2: %v, want a PivotError at pivot 1", err)
	}
	m := adaptertest.NewChain(1, []string{"fc"}, 3, 4)
	m.Mods[0].W.Value.Copy(w)
	_, err = loldu.Add(m, loldu.Config{R: 3, Targets: []string{"fc"}})
	if e := adaptertest.ErrorMentions(err, "LoLDU on fc", "R = 3", "pivot 1", "(4×3)"); e != nil {
		t.Error(e)
	}
	if !errors.As(err, &pe) {
		t.Errorf("Add's error %v does not wrap the PivotError", err)
	}
	if !mat.Equal(m.Mods[0].W.Value, w) || len(m.Mods[0].Adapters) != 0 {
		t.Error("the failed Add changed W or kept an adapter")
	}
}

// TestInit checks LoLDU's invariant, W_res + s·P·L_r·diag(z)·U_r = W to
// 1e-12 relative, on the model's output too, for s = 1 and s ≠ 1; that z
// starts at the first r pivots; that at s = 1 Pᵀ·W_res is the Schur
// complement (zero in its first r rows and columns); and that the model
// trains r numbers per layer (r + 1 with TrainScale).
func TestInit(t *testing.T) {
	for _, c := range []struct {
		alpha float64
		train bool
	}{{0, false}, {3, false}, {0, true}, {0.5, true}} {
		const r = 3
		m := peft.NewMLP([]int{8, 12, 6}, 1)
		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), 5, 8))
		y0 := mat.DenseCopyOf(m.Forward(x).Value)
		w0 := []*mat.Dense{mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)}
		as, err := loldu.Add(m, loldu.Config{R: r, Alpha: c.alpha, TrainScale: c.train, Targets: []string{"fc1", "fc2"}})
		if err != nil {
			t.Fatal(err)
		}
		wantS := c.alpha / r
		if c.alpha == 0 {
			wantS = 1
		}
		for i, a := range as {
			l := m.Layers[i]
			if a.Scale() != wantS {
				t.Errorf("α=%g %s: s = %g, want %g", c.alpha, l.Name, a.Scale(), wantS)
			}
			if d := adaptertest.RelDiffMax(a.MergedWeight(l.W.Value), w0[i]); d > 1e-12 {
				t.Errorf("α=%g %s: W_res + s·P·L_r·diag(z)·U_r differs from W by %.3g relative", c.alpha, l.Name, d)
			}
			f, err := loldu.Factorize(w0[i], r)
			if err != nil {
				t.Fatal(err)
			}
			checkTriangular(t, l.Name, loldu.LDU{L: a.L, U: a.U})
			for j, z := range a.Diagonal() {
				if z != f.D[j] {
					t.Errorf("α=%g %s: z[%d] = %g, want pivot %g", c.alpha, l.Name, j, z, f.D[j])
				}
			}
			if wantS == 1 {
				var ptw mat.Dense
				ptw.Mul(permMatrix(a.Perm).T(), l.W.Value) // Pᵀ·W_res
				d, k := ptw.Dims()
				var worst float64
				for p := 0; p < d; p++ {
					for q := 0; q < k; q++ {
						if p < r || q < r {
							worst = math.Max(worst, math.Abs(ptw.At(p, q)))
						}
					}
				}
				if worst > 1e-12*adaptertest.MaxAbs(w0[i]) {
					t.Errorf("%s: Pᵀ·W_res is %.3g in its first r rows or columns, want 0", l.Name, worst)
				}
				if dd := adaptertest.RelDiffMax(&ptw, f.S); dd > 1e-12 {
					t.Errorf("%s: Pᵀ·W_res differs from the Schur complement by %.3g", l.Name, dd)
				}
			}
		}
		if d := adaptertest.RelDiffMax(m.Forward(x).Value, y0); d > 1e-12 {
			t.Errorf("α=%g: the output changed by %.3g relative at init", c.alpha, d)
		}
		want := 2 * r
		if c.train {
			want += 2
		}
		if n, _, _ := peft.TrainableParams(m); n != want {
			t.Errorf("α=%g train_scale=%v: %d trainable numbers, want %d", c.alpha, c.train, n, want)
		}
	}
}

// TestOnlyDiagonalTrained: a backward pass gives z (and s with
// TrainScale) a gradient, and nothing else of the adapter or base.
func TestOnlyDiagonalTrained(t *testing.T) {
	task := peft.NewTeacherTask(6, 5, []float64{1}, 20, 1)
	m := task.Model()
	as, err := loldu.Add(m, loldu.Config{R: 3, Targets: []string{"proj"}})
	if err != nil {
		t.Fatal(err)
	}
	m.Loss(task.Sample(rand.New(rand.NewSource(1)), 8)).Backward()
	if g := as[0].Z.Grad; g == nil || adaptertest.MaxAbs(g) == 0 {
		t.Error("z got no gradient")
	}
	if as[0].S.Grad != nil || m.Layer.W.Grad != nil {
		t.Error("the frozen s or W got a gradient")
	}
	if ps := peft.TrainableOf(m); len(ps) != 1 || ps[0] != as[0].Z {
		t.Errorf("trainable tensors %v, want z alone", ps)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  loldu.Config
		want []string
	}{
		{loldu.Config{R: 0, Targets: []string{"b"}}, []string{"LoLDU on b", "R = 0", "(4×7)"}},
		{loldu.Config{R: 5, Targets: []string{"a", "b"}}, []string{"LoLDU on b", "R = 5", "min(d, k) = 4"}},
		{loldu.Config{R: 1, Alpha: math.Inf(1), Targets: []string{"a"}}, []string{"LoLDU on a", "Alpha = +Inf"}},
		{loldu.Config{R: 1, Targets: []string{"z"}}, []string{`"z"`}},
	} {
		m := adaptertest.NewChain(1, []string{"a", "b"}, 5, 7, 4)
		w0 := mat.DenseCopyOf(m.Mods[0].W.Value)
		_, err := loldu.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		if !mat.Equal(m.Mods[0].W.Value, w0) || len(m.Mods[0].Adapters) != 0 {
			t.Errorf("%+v: the failed Add changed a or kept an adapter", c.cfg)
		}
	}
	// A second adapter on a module LoLDU rewrote, or LoLDU on one that has
	// an adapter, is refused.
	m := adaptertest.NewChain(1, []string{"a"}, 5, 7)
	if _, err := lora.Add(m, lora.Config{R: 1, Targets: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	_, err := loldu.Add(m, loldu.Config{R: 1, Targets: []string{"a"}, Name: "ldu"})
	if e := adaptertest.ErrorMentions(err, "LoLDU on a", `"default"`); e != nil {
		t.Error(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	mc := adaptertest.NewChain(1, []string{"a"}, 5, 7)
	w0 := mat.DenseCopyOf(mc.Mods[0].W.Value)
	if _, err := loldu.AddContext(ctx, mc, loldu.Config{R: 2, Targets: []string{"a"}}); !errors.Is(err, context.Canceled) ||
		!mat.Equal(mc.Mods[0].W.Value, w0) || len(mc.Mods[0].Adapters) != 0 {
		t.Errorf("cancelled AddContext: %v, want context.Canceled and the model untouched", err)
	}
	as, err := loldu.Add(adaptertest.NewChain(1, []string{"a"}, 5, 7), loldu.Config{R: 2, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	err = peft.Maybe(func() { as[0].MergedWeight(mat.NewDense(5, 7, nil)) })
	var se peft.ShapeError
	if !errors.As(err, &se) || adaptertest.ErrorMentions(err, "(5×7)", "(7×5)") != nil {
		t.Errorf("MergedWeight of a (5×7) for a (7×5) layer: %v", err)
	}
}

// TestTeacher trains LoLDU on a teacher task. Its r directions
// s·(P·L_r)_j·(U_r)_j are fixed by W₀'s LU, which knows nothing of the
// teacher's ΔW*, and the training loss is quadratic in z, so the best z
// is a linear least-squares solution: the test asserts that training
// reaches at least 90% of the possible loss reduction, and reports LoRA at
// the same rank r and at rank 1 (whose d + k numbers are still more than
// LoLDU's r) on the same steps.
func TestTeacher(t *testing.T) {
	const d, k, r = 24, 20, 8
	task := peft.NewTeacherTask(d, k, []float64{3, 2, 1}, 256, 7)
	all := peft.Batch{X: task.X, Y: task.Y}
	cfg := peft.TrainConfig{Steps: 300, BatchSize: 64, LR: 0.05, Seed: 1}
	m := task.Model()
	before := m.Loss(all).Scalar()
	as, err := loldu.Add(m, loldu.Config{R: r, Targets: []string{"proj"}})
	if err != nil {
		t.Fatal(err)
	}
	best := bestLoss(as[0], m.Layer.W.Value, task)
	nLoLDU, _, _ := peft.TrainableParams(m)
	if _, err := peft.Train(context.Background(), m, task, cfg); err != nil {
		t.Fatal(err)
	}
	after := m.Loss(all).Scalar()
	t.Logf("LoLDU r=%d (%d numbers): training loss %.5f → %.5f; the best z gives %.5f (%.2f%% below the start)", r, nLoLDU, before, after, best, 100*(1-best/before))
	for _, lr := range []int{1, r} {
		ml := task.Model()
		if _, err := lora.Add(ml, lora.Config{R: lr, Targets: []string{"proj"}, Seed: 1}); err != nil {
			t.Fatal(err)
		}
		n, _, _ := peft.TrainableParams(ml)
		if _, err := peft.Train(context.Background(), ml, task, cfg); err != nil {
			t.Fatal(err)
		}
		t.Logf("LoRA r=%d (%d numbers): training loss %.5f → %.5f", lr, n, before, ml.Loss(all).Scalar())
	}
	if !(best < before) || !(before-after >= 0.9*(before-best)) {
		t.Errorf("LoLDU: training loss %.5f → %.5f, want within 10%% of the best %.5f", before, after, best)
	}
}

// bestLoss returns the least training loss any z gives a: the loss is
// (1/(n·d))·‖E₀ + Σ_j z_j·X·C_jᵀ‖²_F with E₀ = X·(W_res − W*)ᵀ and C_j =
// s·(P·L_r)_j·(U_r)_j (d×k), a linear least-squares problem in z.
func bestLoss(a *loldu.LoLDU, wres *mat.Dense, task *peft.TeacherTask) float64 {
	n, _ := task.X.Dims()
	d, k := wres.Dims()
	pl := loldu.Permute(a.Perm, a.L)
	var e0, diff mat.Dense
	diff.Sub(wres, task.WStar)
	e0.Mul(task.X, diff.T()) // (n×d)
	feat := mat.NewDense(n*d, a.R, nil)
	for j := 0; j < a.R; j++ {
		c := mat.NewDense(d, k, nil) // C_j
		c.Outer(a.Scale(), pl.ColView(j), a.U.RowView(j))
		var xc mat.Dense
		xc.Mul(task.X, c.T())
		for p, v := range xc.RawMatrix().Data {
			feat.Set(p, j, v)
		}
	}
	rhs := mat.NewVecDense(n*d, nil)
	for p, v := range e0.RawMatrix().Data {
		rhs.SetVec(p, -v)
	}
	var z, res mat.VecDense
	if err := z.SolveVec(feat, rhs); err != nil {
		panic(err)
	}
	res.MulVec(feat, &z)
	res.SubVec(&res, rhs)
	return mat.Dot(&res, &res) / float64(n*d)
}

// TestFile checks the saved layout (the permutation in the config, exact)
// and the round trip, bit for bit, into a model holding W_res, with s
// trained so that its value must come from the file.
func TestFile(t *testing.T) {
	names := []string{"a", "b"}
	m := adaptertest.NewChain(1, names, 5, 7, 4)
	as, err := loldu.Add(m, loldu.Config{R: 3, TrainScale: true, Targets: names})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range as {
		a.Z.Value.Set(0, 1, float64(i)+0.25)
		a.S.Value.Set(0, 0, 1.75)
	}
	fresh := func() *adaptertest.Chain {
		f := adaptertest.NewChain(1, names, 5, 7, 4)
		for i, l := range f.Mods {
			l.W.Value.Copy(m.Mods[i].W.Value) // W_res
		}
		return f
	}
	f := fresh()
	dir := adaptertest.SaveLoad(t, m, f)
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(4)), 3, 5))
	if !mat.Equal(f.Forward(x).Value, m.Forward(x).Value) {
		t.Error("the loaded adapter's output differs")
	}
	for i, l := range f.Mods {
		b := l.ActiveAdapter().(*loldu.LoLDU)
		if !mat.Equal(b.L, as[i].L) || !mat.Equal(b.U, as[i].U) || !mat.Equal(b.Z.Value, as[i].Z.Value) || b.Scale() != 1.75 || !b.S.Trainable {
			t.Errorf("%s: loaded factors differ, or s is frozen", l.Name)
		}
		for j, p := range b.Perm {
			if p != as[i].Perm[j] {
				t.Fatalf("%s: loaded permutation %v, saved %v", l.Name, b.Perm, as[i].Perm)
			}
		}
	}
	adaptertest.RefusesLoad(t, dir, fresh, []adaptertest.Refusal{
		{What: "no row_permutation", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "row_permutation") },
			Want: []string{`"row_permutation"`, "missing"}},
		{What: "not a permutation", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["row_permutation"].(map[string]any)["b"] = []int{0, 0, 1, 2}
		}, Want: []string{`"row_permutation"`, "module b", "entry 1 is 0"}},
		{What: "short permutation", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["row_permutation"].(map[string]any)["a"] = []int{0, 1}
		}, Want: []string{`"row_permutation"`, "module a", "2 entries, want 7"}},
		{What: "r = 6", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["r"] = 6 },
			Want: []string{`"r"`, "LoLDU on a", "R = 6", "min(d, k) = 5"}},
		{What: "z too long", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.a.loldu_z"] = mat.NewDense(1, 4, nil)
		}, Want: []string{"loldu_z", "r = 3"}},
	})
}
