package moram_test

import (
	"context"
	"fmt"
	"gonum.org/v1/gonum/diff/fd"
	"math/rand"
	"sort"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"math"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/moram"
)

// uniform is the one setting whose weights do not depend on the input
// (τ = +Inf, k = R, no pruning): MoRAM is then LoRA with B·A scaled by
// 1/R, and merges, as the suite requires.
func uniform(o adaptertest.Options) moram.Config {
	return moram.Config{R: o.R, Tau: math.Inf(1), Delta: -1, Targets: o.Targets, Seed: o.Seed}
}

// TestSuite runs the shared suite in the uniform limit, the only setting
// in which a MoRAM layer is a fixed weight and so can pass MergeUnmerge.
// The gradients of the self-routed mixture (τ finite, top-k, pruning) are
// checked against central differences by TestGradients.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := moram.Add(m, uniform(o))
			return adaptertest.Adapters(as), err
		},
		ZeroAtInit: true,
		NoAlpha:    true, // scaling 1, as the reference code
	})
}

// The test model: one layer fc (W₀ 5×6) or two, fc1 (5×6) then fc2 (4×5).
func oneLayer() *adaptertest.Chain { return adaptertest.NewChain(1, []string{"fc"}, 6, 5) }
func twoLayers() *adaptertest.Chain {
	return adaptertest.NewChain(1, []string{"fc1", "fc2"}, 6, 5, 4)
}

// randomize gives the current atoms of every adapter random entries
// (σ 0.7), as after training.
func randomize(rng *rand.Rand, as []*moram.MoRAM) {
	for _, a := range as {
		for _, p := range a.Params() {
			r, c := p.Dims()
			m := adaptertest.RandDense(rng, r, c)
			m.Scale(0.7, m)
			p.Value.Copy(m)
		}
	}
}

// twoTasks returns m with MoRAM (r atoms per task) on all its layers,
// trained-looking atoms on task 1 and task 2.
func twoTasks(t *testing.T, m *adaptertest.Chain, cfg moram.Config, seed int64) []*moram.MoRAM {
	t.Helper()
	var names []string
	for _, l := range m.Mods {
		names = append(names, l.Name)
	}
	cfg.Targets = names
	as, err := moram.Add(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(seed))
	randomize(rng, as)
	moram.IncrementTask(as)
	randomize(rng, as)
	return as
}

// allAtoms returns A (R×k) and B (d×R), old atoms first.
func allAtoms(a *moram.MoRAM) (*mat.Dense, *mat.Dense) {
	if a.OldA == nil {
		return a.A.Value, a.B.Value
	}
	var A, B mat.Dense
	A.Stack(a.OldA.Value, a.A.Value)
	B.Augment(a.OldB.Value, a.B.Value)
	return &A, &B
}

// reference returns the adapter's delta (p ⊙ w)·Bᵀ (n×d) and w (n×R) for
// x (n×k), computed row by row with loops and a sort, straight from the
// paper's formulas: the tests' oracle. It also returns, per row, the
// margin of the top-k choice (p̂ of the k-th minus the (k+1)-th largest)
// and the distance of p̂ from δ, which the finite differences must not
// cross.
func reference(a *moram.MoRAM, x *mat.Dense, training bool) (delta, w *mat.Dense, margin float64) {
	A, B := allAtoms(a)
	n, k := x.Dims()
	R, _ := A.Dims()
	d, _ := B.Dims()
	delta, w = mat.NewDense(n, d, nil), mat.NewDense(n, R, nil)
	margin = math.Inf(1)
	for i := 0; i < n; i++ {
		p := make([]float64, R)
		var ss float64
		for j := range p {
			for l := 0; l < k; l++ {
				p[j] += A.At(j, l) * x.At(i, l)
			}
			ss += p[j] * p[j]
		}
		nrm := math.Sqrt(ss)
		ph := make([]float64, R)
		for j := range p {
			ph[j] = p[j] / nrm
		}
		order := make([]int, R)
		for j := range order {
			order[j] = j
		}
		sort.SliceStable(order, func(u, v int) bool { return ph[order[u]] > ph[order[v]] })
		kk := min(a.TopK, R)
		if kk < R {
			margin = math.Min(margin, ph[order[kk-1]]-ph[order[kk]])
		}
		top := ph[order[0]]
		var z float64
		for _, j := range order[:kk] {
			z += math.Exp((ph[j] - top) / a.Tau)
		}
		for _, j := range order[:kk] {
			v := math.Exp((ph[j]-top)/a.Tau) / z
			if !training && a.Delta >= 0 {
				margin = math.Min(margin, math.Abs(ph[j]-a.Delta))
				if ph[j] < a.Delta {
					v = 0
				}
			}
			w.Set(i, j, v)
			for o := 0; o < d; o++ {
				delta.Set(i, o, delta.At(i, o)+p[j]*v*B.At(o, j))
			}
		}
	}
	return delta, w, margin
}

// adapterDelta returns the active adapter's delta (p ⊙ w)·Bᵀ for x: its
// Forward with a zero base output, so that no rounding of the base enters.
func adapterDelta(l *peft.Linear, x *mat.Dense) *mat.Dense {
	n, _ := x.Dims()
	d, _ := l.W.Dims()
	return l.ActiveAdapter().Forward(l, peft.NewConst(x), peft.NewConst(mat.NewDense(n, d, nil))).Value
}

// TestForwardReference checks Forward and Weights against the loop-and-
// sort reference, in training and eval mode, for several k and τ, on one
// task and on two, to 1e-13 relative.
func TestForwardReference(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	var worst float64
	for _, c := range []struct {
		cfg   moram.Config
		tasks int
	}{
		{moram.Config{R: 3}, 1},
		{moram.Config{R: 3, TopK: 1}, 1},
		{moram.Config{R: 2, TopK: 3, Tau: 0.3}, 2},
		{moram.Config{R: 2, Tau: 0.05, Delta: -1}, 2},
		{moram.Config{R: 4, TopK: 6, Tau: 0.5, Delta: 0.1}, 2},
		{moram.Config{R: 2, TopK: 9, Tau: math.Inf(1)}, 3},
	} {
		m := oneLayer()
		as, err := moram.Add(m, moram.Config{R: c.cfg.R, TopK: c.cfg.TopK, Tau: c.cfg.Tau, Delta: c.cfg.Delta, Targets: []string{"fc"}, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, as)
		for i := 1; i < c.tasks; i++ {
			moram.IncrementTask(as)
			randomize(rng, as)
		}
		x := adaptertest.RandDense(rng, 9, 6)
		for _, training := range []bool{true, false} {
			m.SetTraining(training)
			want, wantW, _ := reference(as[0], x, training)
			got := adapterDelta(m.Mods[0], x)
			worst = math.Max(worst, adaptertest.RelDiffMax(got, want))
			worst = math.Max(worst, adaptertest.RelDiffMax(as[0].Weights(x, training), wantW))
		}
	}
	t.Logf("max relative difference from the reference: %.3g", worst)
	if worst > 1e-13 {
		t.Errorf("Forward or Weights differ from the reference by %.3g relative, want ≤ 1e-13", worst)
	}
}

// TestWeightsSparse: in training mode each row of w has exactly k nonzero
// entries, all among the k largest p̂, summing to 1 (to 1e-15), for the
// default τ = 0.01 too, with k = r on task 1 (all atoms) and k < R later.
func TestWeightsSparse(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	for _, c := range []struct{ r, topK, tasks int }{{4, 0, 1}, {4, 0, 2}, {4, 0, 3}, {3, 1, 2}, {2, 3, 3}, {5, 2, 1}} {
		m := oneLayer()
		as, err := moram.Add(m, moram.Config{R: c.r, TopK: c.topK, Targets: []string{"fc"}, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, as)
		for i := 1; i < c.tasks; i++ {
			moram.IncrementTask(as)
			randomize(rng, as)
		}
		a := as[0]
		k := a.TopK
		x := adaptertest.RandDense(rng, 20, 6)
		w := a.Weights(x, true)
		_, R := w.Dims()
		if R != c.r*c.tasks || a.Rank() != R {
			t.Fatalf("r=%d T=%d: w has %d columns and Rank() = %d, want T·r = %d", c.r, c.tasks, R, a.Rank(), c.r*c.tasks)
		}
		ph := phat(a, x)
		for i := 0; i < 20; i++ {
			nz, sum := 0, 0.0
			for j := 0; j < R; j++ {
				if v := w.At(i, j); v != 0 {
					nz++
					sum += v
					if larger := countAbove(ph.RawRowView(i), ph.At(i, j)); larger >= k {
						t.Errorf("r=%d k=%d T=%d row %d: atom %d has weight %g but %d atoms have larger p̂", c.r, k, c.tasks, i, j, v, larger)
					}
				}
			}
			if nz != k || math.Abs(sum-1) > 1e-15 {
				t.Errorf("r=%d k=%d T=%d row %d: %d nonzero weights summing to %.17g, want k = %d summing to 1", c.r, k, c.tasks, i, nz, sum, k)
			}
		}
	}
}

// phat returns p̂ (n×R), each row of x·Aᵀ over its norm.
func phat(a *moram.MoRAM, x *mat.Dense) *mat.Dense {
	A, _ := allAtoms(a)
	var p mat.Dense
	p.Mul(x, A.T())
	n, _ := p.Dims()
	for i := 0; i < n; i++ {
		row := p.RawRowView(i)
		nrm := floats.Norm(row, 2)
		floats.Scale(1/nrm, row)
	}
	return &p
}

func countAbove(row []float64, v float64) int {
	n := 0
	for _, u := range row {
		if u > v {
			n++
		}
	}
	return n
}

// TestHomogeneous: x → c·x scales the adapter's delta by c, since w
// depends on x only through p̂. For c a power of two p̂ and w are the same
// bits and the delta is exactly c times; for other c within 1e-13.
func TestHomogeneous(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	m := oneLayer()
	twoTasks(t, m, moram.Config{R: 3, TopK: 2}, 14)
	x := adaptertest.RandDense(rng, 10, 6)
	for _, training := range []bool{true, false} {
		m.SetTraining(training)
		d1 := adapterDelta(m.Mods[0], x)
		if adaptertest.MaxAbs(d1) == 0 {
			t.Fatal("the adapter's delta is zero: the check would prove nothing")
		}
		for _, c := range []float64{2, 0.5, 1024, 3.7, 0.013, 250} {
			var cx, want mat.Dense
			cx.Scale(c, x)
			want.Scale(c, d1)
			got := adapterDelta(m.Mods[0], &cx)
			exact := c == math.Exp2(math.Round(math.Log2(c)))
			if diff := adaptertest.RelDiffMax(got, &want); (exact && !mat.Equal(got, &want)) || diff > 1e-13 {
				t.Errorf("training=%v c=%g: delta(c·x) differs from c·delta(x) by %.3g relative (exact: %v)", training, c, diff, exact)
			}
		}
		// The delta is not linear: −x is not −delta (the top-k changes).
		var nx mat.Dense
		nx.Scale(-1, x)
		dn := adapterDelta(m.Mods[0], &nx)
		dn.Scale(-1, dn)
		if adaptertest.RelDiffMax(dn, d1) < 1e-3 {
			t.Errorf("training=%v: delta(−x) = −delta(x): the mixture does not depend on the sign of p̂", training)
		}
	}
}

// gradCheck compares the backward gradients of a weighted sum of m's
// outputs on x with central differences (step 1e-6), for every parameter
// in ps, and returns the worst relative error (floored at 1e-3, as the
// suite).
func gradCheck(m *adaptertest.Chain, x *mat.Dense, ps []*peft.Tensor, wts *mat.Dense) float64 {
	loss := func() *peft.Tensor {
		return peft.SumAll(peft.Mul(m.Forward(peft.NewConst(x)), peft.NewConst(wts)))
	}
	for _, p := range ps {
		p.ZeroGrad()
	}
	loss().Backward()
	var worst float64
	for _, p := range ps {
		_, cols := p.Dims()
		x0 := mat.DenseCopyOf(p.Value).RawMatrix().Data
		set := func(v []float64) {
			for j, e := range v {
				p.Value.Set(j/cols, j%cols, e)
			}
		}
		num := fd.Gradient(nil, func(v []float64) float64 {
			set(v)
			return loss().Scalar()
		}, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		g := p.Grad.RawMatrix().Data
		for j := range num {
			rel := math.Abs(g[j]-num[j]) / math.Max(math.Max(math.Abs(g[j]), math.Abs(num[j])), 1e-3)
			worst = math.Max(worst, rel)
		}
	}
	return worst
}

// TestGradients checks the gradients of the self-routed mixture against
// central differences, where the suite (in the uniform limit) cannot: on
// two layers (so the gradient also flows through fc2's routing into fc1's
// atoms), on task 2 (old atoms frozen and in the mixture), with k < R, for
// τ from the default 0.01 to 0.5, in training mode and in eval mode with
// pruning. The inputs are chosen so that no step of the finite
// differences crosses a top-k or δ boundary (margin ≥ 1e-4 asserted).
func TestGradients(t *testing.T) {
	for _, c := range []struct {
		tau      float64
		topK     int
		training bool
	}{{0.5, 2, true}, {0.1, 3, true}, {0.01, 2, true}, {0.5, 3, false}, {0.01, 2, false}} {
		m := twoLayers()
		as := twoTasks(t, m, moram.Config{R: 2, TopK: c.topK, Tau: c.tau, Delta: 0.15}, 21)
		m.SetTraining(c.training)
		rng := rand.New(rand.NewSource(22))
		x := adaptertest.RandDense(rng, 5, 6)
		// fc2's input is tanh of fc1's output.
		h := peft.Tanh(m.Mods[0].Forward(peft.NewConst(x))).Value
		_, _, m1 := reference(as[0], x, c.training)
		_, _, m2 := reference(as[1], h, c.training)
		if margin := math.Min(m1, m2); margin < 1e-4 {
			t.Fatalf("τ=%v k=%d training=%v: a row is %.2g from a top-k or δ boundary: pick another seed", c.tau, c.topK, c.training, margin)
		}
		if !c.training {
			pruned := countPruned(as[0], x) + countPruned(as[1], h)
			if pruned == 0 {
				t.Fatalf("τ=%v k=%d: eval pruning drops no weight here: the eval case would test nothing more", c.tau, c.topK)
			}
		}
		var ps []*peft.Tensor
		for _, a := range as {
			ps = append(ps, a.Params()...)
		}
		worst := gradCheck(m, x, ps, adaptertest.RandDense(rng, 5, 4))
		t.Logf("τ=%v k=%d training=%v: max relative gradient error %.3g", c.tau, c.topK, c.training, worst)
		// Central differences' truncation error grows as 1/τ²: measured
		// ≤ 6e-8 at τ ≥ 0.1 and 5.7e-7 at τ = 0.01.
		if worst > 2e-6 {
			t.Errorf("τ=%v k=%d training=%v: gradient off by %.3g relative, want ≤ 2e-6", c.tau, c.topK, c.training, worst)
		}
	}
}

// countPruned returns how many weights of x's rows eval pruning zeroes.
func countPruned(a *moram.MoRAM, x *mat.Dense) int {
	wt, we := a.Weights(x, true), a.Weights(x, false)
	n, R := wt.Dims()
	c := 0
	for i := 0; i < n; i++ {
		for j := 0; j < R; j++ {
			if wt.At(i, j) != 0 && we.At(i, j) == 0 {
				c++
			}
		}
	}
	return c
}

// TestOldAtomsFrozen: after IncrementTask, Params returns only the r new
// atoms (trainable count r·(d + k) per layer), the old atoms get no
// gradient, and training task 2 leaves them bit for bit, although they
// take part in the output.
func TestOldAtomsFrozen(t *testing.T) {
	m := twoLayers()
	as := twoTasks(t, m, moram.Config{R: 2, TopK: 3}, 31)
	want := 0
	for _, a := range as {
		d, k := a.Dims()
		want += a.R * (d + k)
		for _, p := range a.Params() {
			if p == a.OldA || p == a.OldB {
				t.Errorf("Params returns the old atoms %s", p.Name)
			}
		}
		if r, _ := a.OldA.Dims(); r != a.R || a.OldA.Trainable || a.OldB.Trainable {
			t.Errorf("old atoms (%d rows, trainable %v, %v), want r = %d frozen rows", r, a.OldA.Trainable, a.OldB.Trainable, a.R)
		}
	}
	if n, _, _ := peft.TrainableParams(m); n != want {
		t.Errorf("%d trainable parameters, want Σ r·(d + k) = %d", n, want)
	}
	rng := rand.New(rand.NewSource(32))
	data := &regression{x: adaptertest.RandDense(rng, 40, 6), y: adaptertest.RandDense(rng, 40, 4)}
	var oldA, oldB, newA []*mat.Dense
	for _, a := range as {
		oldA = append(oldA, mat.DenseCopyOf(a.OldA.Value))
		oldB = append(oldB, mat.DenseCopyOf(a.OldB.Value))
		newA = append(newA, mat.DenseCopyOf(a.A.Value))
	}
	// The old atoms matter: changing one changes the output.
	x := peft.NewConst(data.x)
	before := mat.DenseCopyOf(m.Forward(x).Value)
	as[1].OldB.Value.Set(0, 0, oldB[1].At(0, 0)+1)
	if mat.Equal(m.Forward(x).Value, before) {
		t.Fatal("the old atoms do not change the output: the check would prove nothing")
	}
	as[1].OldB.Value.Copy(oldB[1])
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 20, BatchSize: 8, LR: 1e-2}); err != nil {
		t.Fatal(err)
	}
	for i, a := range as {
		if a.OldA.Grad != nil && adaptertest.MaxAbs(a.OldA.Grad) != 0 || a.OldB.Grad != nil && adaptertest.MaxAbs(a.OldB.Grad) != 0 {
			t.Errorf("%s: the old atoms got a gradient", m.Mods[i].Name)
		}
		if !mat.Equal(a.OldA.Value, oldA[i]) || !mat.Equal(a.OldB.Value, oldB[i]) {
			t.Errorf("%s: training task 2 changed the old atoms", m.Mods[i].Name)
		}
		if mat.Equal(a.A.Value, newA[i]) {
			t.Errorf("%s: training task 2 left the new atoms unchanged", m.Mods[i].Name)
		}
	}
}

// regression is a fixed regression data set for Train.
type regression struct{ x, y *mat.Dense }

func (r *regression) Sample(rng *rand.Rand, size int) peft.Batch {
	n, k := r.x.Dims()
	_, d := r.y.Dims()
	b := peft.Batch{X: mat.NewDense(size, k, nil), Y: mat.NewDense(size, d, nil)}
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		b.X.SetRow(i, r.x.RawRowView(j))
		b.Y.SetRow(i, r.y.RawRowView(j))
	}
	return b
}

func (r *regression) EvalBatches() []peft.Batch { return []peft.Batch{{X: r.x, Y: r.y}} }

// TestPruning checks the eval-time pruning on a known answer. With W₀
// (4×4), atoms e₁…e₄ (A = I, B = I) and x = (0.9, 0.3, 0.1, −0.3), ‖x‖ = 1, p = p̂ = x. With
// k = 3 and τ = 0.1 training keeps atoms 1–3 with w ∝ exp(p̂/τ); at eval
// δ = 0.2 drops atom 3 (p̂ = 0.1 < δ) and keeps the others' weights as
// they were (no renormalisation); δ = 0.05 drops none, δ < 0 prunes
// nothing either.
func TestPruning(t *testing.T) {
	m := adaptertest.NewChain(1, []string{"fc"}, 4, 4)
	x := mat.NewDense(1, 4, []float64{0.9, 0.3, 0.1, -0.3})
	z := math.Exp(9) + math.Exp(3) + math.Exp(1)
	train := []float64{math.Exp(9) / z, math.Exp(3) / z, math.Exp(1) / z, 0}
	for _, c := range []struct {
		delta float64
		want  []float64
	}{
		{0.2, []float64{train[0], train[1], 0, 0}},
		{0.05, train},
		{-1, train},
		{0.95, []float64{0, 0, 0, 0}},
	} {
		as, err := moram.Add(m, moram.Config{R: 4, TopK: 3, Tau: 0.1, Delta: c.delta, Targets: []string{"fc"}, Name: fmt.Sprint(c.delta)})
		if err != nil {
			t.Fatal(err)
		}
		a := as[0]
		a.A.Value.Copy(eye(4))
		if got := a.Weights(x, true).RawRowView(0); !floats.EqualApprox(got, train, 1e-15) {
			t.Errorf("δ=%v training: w = %v, want %v", c.delta, got, train)
		}
		if got := a.Weights(x, false).RawRowView(0); !floats.EqualApprox(got, c.want, 1e-15) {
			t.Errorf("δ=%v eval: w = %v, want %v", c.delta, got, c.want)
		}
		// The output follows: B = I gives delta_o = p_o·w_o.
		a.B.Value.Copy(eye(4))
		m.SetTraining(false)
		got := adapterDelta(m.Mods[0], x).RawRowView(0)
		for o := 0; o < 4; o++ {
			if want := x.At(0, o) * c.want[o]; math.Abs(got[o]-want) > 1e-15 {
				t.Errorf("δ=%v eval: delta[%d] = %g, want p·w = %g", c.delta, o, got[o], want)
			}
		}
	}
}

func eye(n int) *mat.Dense {
	m := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		m.Set(i, i, 1)
	}
	return m
}
