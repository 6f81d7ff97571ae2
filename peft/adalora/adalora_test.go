package adalora_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adalora"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"gonum.org/v1/gonum/mat"
)

// randNormal returns an r×c matrix of N(0,1) entries from rng, row by row.
func randNormal(rng *rand.Rand, r, c int) *mat.Dense {
	d := mat.NewDense(r, c, nil)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			d.Set(i, j, rng.NormFloat64())
		}
	}
	return d
}

// fill sets every entry of d to a N(0, σ²) draw.
func fill(rng *rand.Rand, d *mat.Dense, sigma float64) {
	r, c := d.Dims()
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			d.Set(i, j, sigma*rng.NormFloat64())
		}
	}
}

// adaModel returns an MLP with four 8×8 layers and an AdaLoRA controller on
// all of them.
func adaModel(t testing.TB, cfg adalora.Config) (*peft.MLP, *adalora.AdaLoRA) {
	t.Helper()
	m := peft.NewMLP([]int{8, 8, 8, 8, 8}, 11)
	if cfg.Targets == nil {
		cfg.Targets = []string{"fc1", "fc2", "fc3", "fc4"}
	}
	a, err := adalora.Add(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, a
}

// TestAdaLoRABudget checks the cubic schedule: b₀ up to t_i, b_T from
// T − t_f on, b_T + (b₀ − b_T)/8 half-way, never increasing, and the
// allocation steps.
func TestAdaLoRABudget(t *testing.T) {
	_, a := adaModel(t, adalora.Config{InitR: 5, TargetR: 1, TotalStep: 100, TInit: 10, TFinal: 20, DeltaT: 5})
	b0, bT := a.InitialBudget(), a.TargetBudget()
	if b0 != 20 || bT != 4 {
		t.Fatalf("b₀ = %d, b_T = %d; want 20, 4", b0, bT)
	}
	check := func(step, want int, wantAlloc bool) {
		t.Helper()
		if b, alloc := a.Budget(step); b != want || alloc != wantAlloc {
			t.Errorf("Budget(%d) = %d, %v; want %d, %v", step, b, alloc, want, wantAlloc)
		}
	}
	check(1, b0, false)
	check(10, b0, false) // t = t_i
	check(45, bT+(b0-bT)/8, true)
	check(80, bT, true) // t = T − t_f
	check(81, bT, true)
	check(100, bT, true)
	check(46, 5, false) // ⌊4 + 16·(34/70)³⌋ = ⌊5.83⌋
	prev := b0
	for s := 1; s <= 100; s++ {
		b, _ := a.Budget(s)
		if b > prev || b < bT {
			t.Errorf("Budget(%d) = %d after %d", s, b, prev)
		}
		prev = b
	}
}

// adaRandomGrads sets every adapter parameter's gradient to N(0,1) draws.
func adaRandomGrads(rng *rand.Rand, a *adalora.AdaLoRA) {
	for _, p := range a.Params() {
		r, c := p.Dims()
		p.Grad = randNormal(rng, r, c)
	}
}

// TestAdaLoRAMask: with distinct scores, an allocation zeroes exactly
// b₀ − b(t) of the λ, the lowest-scoring ones across layers, and the ranks
// add up to b(t).
func TestAdaLoRAMask(t *testing.T) {
	m, a := adaModel(t, adalora.Config{InitR: 5, TargetR: 2, TotalStep: 50, TFinal: 10})
	_ = m
	rng := rand.New(rand.NewPCG(12, 12))
	for _, l := range a.Layers {
		fill(rng, l.E.Value, 1)
	}
	for step := 1; step <= 30; step++ {
		adaRandomGrads(rng, a)
		a.AfterBackward(step)
		scores := a.Scores()
		var all []float64
		for _, s := range scores {
			all = append(all, s...)
		}
		if step == 1 {
			sorted := slices.Clone(all)
			sort.Float64s(sorted)
			if len(slices.Compact(sorted)) != len(all) {
				t.Fatal("scores are not distinct")
			}
		}
		if err := a.AfterStep(step); err != nil {
			t.Fatal(err)
		}
		b, alloc := a.Budget(step)
		if !alloc {
			t.Fatalf("step %d does not allocate with ΔT = 1", step)
		}
		zeros, total := 0, 0
		maxZeroed, minKept := math.Inf(-1), math.Inf(1)
		for li, l := range a.Layers {
			total += l.Rank()
			for i := 0; i < l.RInit; i++ {
				if l.E.Value.At(i, 0) == 0 {
					zeros++
					maxZeroed = max(maxZeroed, scores[li][i])
				} else {
					minKept = min(minKept, scores[li][i])
				}
			}
		}
		if zeros != a.InitialBudget()-b || total != b {
			t.Errorf("step %d: %d λ zeroed, ranks add to %d; want %d and b(t) = %d", step, zeros, total, a.InitialBudget()-b, b)
		}
		if maxZeroed >= minKept {
			t.Errorf("step %d: a zeroed triplet scores %g ≥ a kept one %g", step, maxZeroed, minKept)
		}
		// the optimizer would move the zeroed λ; make them nonzero again
		for _, l := range a.Layers {
			for i := 0; i < l.RInit; i++ {
				if l.E.Value.At(i, 0) == 0 {
					l.E.Value.Set(i, 0, 1e-3*rng.NormFloat64())
				}
			}
		}
	}
	tr := a.Trace()
	if len(tr.Steps) != 30 || len(tr.Ranks) != 4 || len(tr.Ranks[0]) != 30 {
		t.Fatalf("trace: %d steps, %d modules", len(tr.Steps), len(tr.Ranks))
	}
	for j := range tr.Steps {
		sum := 0
		for i := range tr.Modules {
			sum += tr.Ranks[i][j]
		}
		if sum != tr.Budget[j] {
			t.Errorf("trace step %d: ranks add to %d, budget %d", tr.Steps[j], sum, tr.Budget[j])
		}
	}
}

// adaOrthonormal returns an n×k matrix with orthonormal columns.
func adaOrthonormal(rng *rand.Rand, n, k int) *mat.Dense {
	var qr mat.QR
	qr.Factorize(randNormal(rng, n, k))
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, n, 0, k))
}

// adaRegRef is γ/(2L)·Σ(‖PᵀP − I‖_F + ‖QQᵀ − I‖_F), computed with gonum.
func adaRegRef(a *adalora.AdaLoRA) float64 {
	var sum float64
	for _, l := range a.Layers {
		var pp, qq mat.Dense
		pp.Mul(l.P.Value.T(), l.P.Value)
		qq.Mul(l.Q.Value, l.Q.Value.T())
		for i := 0; i < l.RInit; i++ {
			pp.Set(i, i, pp.At(i, i)-1)
			qq.Set(i, i, qq.At(i, i)-1)
		}
		sum += mat.Norm(&pp, 2) + mat.Norm(&qq, 2)
	}
	return a.Config().OrthRegWeight * sum / float64(2*len(a.Layers))
}

func TestAdaLoRARegularizer(t *testing.T) {
	_, a := adaModel(t, adalora.Config{InitR: 3, TotalStep: 10, TargetR: 1, OrthRegWeight: 0.1})
	rng := rand.New(rand.NewPCG(13, 13))
	for _, l := range a.Layers {
		l.P.Value.Copy(adaOrthonormal(rng, 8, 3))
		l.Q.Value.Copy(adaOrthonormal(rng, 8, 3).T())
	}
	if r := a.Regularizer(1).Scalar(); math.Abs(r) > 1e-14 {
		t.Errorf("regularizer for orthonormal P, Q = %g, want 0", r)
	}
	a.Layers[2].Q.Value.Set(1, 4, a.Layers[2].Q.Value.At(1, 4)+0.1)
	r := a.Regularizer(1).Scalar()
	if r <= 0 {
		t.Errorf("regularizer with one Q perturbed = %g, want > 0", r)
	}
	if want := adaRegRef(a); math.Abs(r-want) > 1e-14 {
		t.Errorf("regularizer = %.17g, want %.17g", r, want)
	}
}

// adaLossRef is Σ R⊙y + reg for the model's first layer alone, computed
// from the math: y = x·Wᵀ + b + s·x·(P·diag(λ)·Q)ᵀ.
func adaLossRef(a *adalora.AdaLoRA, l *peft.Linear, x, rw *mat.Dense) float64 {
	al := a.Layers[0]
	var w, y mat.Dense
	w.Add(l.W.Value, al.DeltaWeight())
	y.Mul(x, w.T())
	n, out := y.Dims()
	var loss float64
	for i := 0; i < n; i++ {
		for j := 0; j < out; j++ {
			loss += rw.At(i, j) * (y.At(i, j) + l.B.Value.At(0, j))
		}
	}
	return loss + adaRegRef(a)
}

// TestAdaLoRAGradients checks the gradients of P, λ and Q through the
// forward pass and the orthogonality regularizer against central
// differences.
func TestAdaLoRAGradients(t *testing.T) {
	m := peft.NewMLP([]int{5, 4}, 14)
	a, err := adalora.Add(m, adalora.Config{InitR: 3, TargetR: 1, Alpha: 2, TotalStep: 10, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(14, 14))
	al := a.Layers[0]
	fill(rng, al.E.Value, 1)
	fill(rng, al.P.Value, 0.5)
	fill(rng, al.Q.Value, 0.5)
	x, rw := randNormal(rng, 3, 5), randNormal(rng, 3, 4)
	l := m.Layers[0]
	y := l.Forward(peft.NewConst(x))
	loss := peft.Add(peft.SumAll(peft.Mul(y, peft.NewConst(rw))), a.Regularizer(1))
	if want := adaLossRef(a, l, x, rw); math.Abs(loss.Scalar()-want) > 1e-12*math.Abs(want) {
		t.Fatalf("loss %g, reference %g", loss.Scalar(), want)
	}
	loss.Backward()
	const h = 1e-6
	var worst float64
	for _, p := range al.Params() {
		v, g := p.Value.RawMatrix().Data, p.Grad.RawMatrix().Data
		for i := range v {
			old := v[i]
			v[i] = old + h
			fp := adaLossRef(a, l, x, rw)
			v[i] = old - h
			fm := adaLossRef(a, l, x, rw)
			v[i] = old
			fd := (fp - fm) / (2 * h)
			rel := math.Abs(fd-g[i]) / max(1, math.Abs(fd))
			worst = max(worst, rel)
			if rel > 1e-7 {
				t.Errorf("%s[%d]: grad %.10g, central difference %.10g", p.Name, i, g[i], fd)
			}
		}
	}
	t.Logf("max relative error of AdaLoRA's gradients: %.2g", worst)
}

// adaTask returns a classification batch labelled by a random teacher.
func adaTask(seed uint64, n, d, classes int) peft.Batch {
	rng := rand.New(rand.NewPCG(seed, seed))
	x := randNormal(rng, n, d)
	teacher := randNormal(rng, classes, d)
	var logits mat.Dense
	logits.Mul(x, teacher.T())
	labels := make([]int, n)
	for i := range labels {
		best := 0
		for j := 1; j < classes; j++ {
			if logits.At(i, j) > logits.At(i, best) {
				best = j
			}
		}
		labels[i] = best
	}
	return peft.Batch{X: x, Labels: labels}
}

// adaTrain runs steps of full-batch Adam with the controller as a hook (the
// loop every trainer runs) and returns the first and last loss.
func adaTrain(m *peft.MLP, a *adalora.AdaLoRA, b peft.Batch, steps int, lr float64) (first, last float64) {
	return adaTrainObserved(m, a, b, steps, lr, observer{})
}

// observer is called at points of adaTrainObserved's step, for tests that
// follow the controller with a reference: after the backward pass (before
// the hook's AfterBackward), after the optimizer's update (before
// AfterStep), and at the end of the step. Nil functions are skipped.
type observer struct {
	backward, update, done func(step int)
}

func call(f func(int), step int) {
	if f != nil {
		f(step)
	}
}

// adaTrainObserved is adaTrain calling o.
func adaTrainObserved(m *peft.MLP, a *adalora.AdaLoRA, b peft.Batch, steps int, lr float64, o observer) (first, last float64) {
	params := a.Params()
	m.SetTraining(true)
	mom := map[*peft.Tensor][2][]float64{}
	for _, p := range params {
		n := len(p.Value.RawMatrix().Data)
		mom[p] = [2][]float64{make([]float64, n), make([]float64, n)}
	}
	for step := 1; step <= steps; step++ {
		for _, p := range params {
			p.ZeroGrad()
		}
		loss := m.Loss(b)
		if step == 1 {
			first = loss.Scalar()
		}
		last = loss.Scalar()
		peft.Add(loss, a.Regularizer(step)).Backward()
		call(o.backward, step)
		a.AfterBackward(step)
		for _, p := range params { // Adam, β = (0.9, 0.999), ε = 1e-8
			v, g, mv := p.Value.RawMatrix().Data, p.Grad.RawMatrix().Data, mom[p]
			bc := math.Sqrt(1-math.Pow(0.999, float64(step))) / (1 - math.Pow(0.9, float64(step)))
			for i := range v {
				mv[0][i] = 0.9*mv[0][i] + 0.1*g[i]
				mv[1][i] = 0.999*mv[1][i] + 0.001*g[i]*g[i]
				v[i] -= lr * bc * mv[0][i] / (math.Sqrt(mv[1][i]) + 1e-8)
			}
		}
		call(o.update, step)
		if err := a.AfterStep(step); err != nil {
			panic(err)
		}
		call(o.done, step)
	}
	return first, last
}

// TestAdaLoRATraining trains a four-layer MLP: the loss falls, ranks move
// between layers, at every allocation they add up to the budget, and after
// T − t_f the zeroed λ stay zero and the total is b_T.
func TestAdaLoRATraining(t *testing.T) {
	m, a := adaModel(t, adalora.Config{InitR: 4, TargetR: 2, Alpha: 8, TotalStep: 60, TInit: 10, TFinal: 15, DeltaT: 5, Seed: 3})
	first, last := adaTrain(m, a, adaTask(15, 64, 8, 8), 60, 0.02)
	if !(last < 0.9*first) {
		t.Errorf("loss %g → %g, want a fall", first, last)
	}
	tr := a.Trace()
	wantSteps := []int{15, 20, 25, 30, 35, 40, 45}
	if !slices.Equal(tr.Steps, wantSteps) {
		t.Errorf("allocation steps %v, want %v", tr.Steps, wantSteps)
	}
	for j, s := range tr.Steps {
		sum := 0
		for i := range tr.Modules {
			sum += tr.Ranks[i][j]
		}
		if b, _ := a.Budget(s); sum != b || tr.Budget[j] != b {
			t.Errorf("step %d: ranks add to %d, trace budget %d, b(t) = %d", s, sum, tr.Budget[j], b)
		}
	}
	ranks := a.Ranks()
	total := 0
	for _, r := range ranks {
		total += r
	}
	if total != a.TargetBudget() {
		t.Errorf("final ranks %v add to %d, want b_T = %d", ranks, total, a.TargetBudget())
	}
	if slices.Min(ranks) == slices.Max(ranks) {
		t.Errorf("final ranks %v: the budget did not move between layers", ranks)
	}
	for li, l := range a.Layers {
		kept := l.Kept()
		for i, k := range kept {
			if !k && l.E.Value.At(i, 0) != 0 {
				t.Errorf("%s: pruned λ_%d = %g after the final phase", l.Module, i, l.E.Value.At(i, 0))
			}
		}
		if got := peft.Ranks(m)[l.Module]; got != ranks[li] {
			t.Errorf("peft.Ranks(%s) = %d, want %d", l.Module, got, ranks[li])
		}
	}
	t.Logf("ranks %v, loss %.4f → %.4f", ranks, first, last)
}

func TestAdaLoRABadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg  adalora.Config
		want []string
	}{
		{adalora.Config{InitR: 5, TotalStep: 10, TargetR: 1, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "InitR = 5", "[1, 4]"}},
		{adalora.Config{InitR: -1, TotalStep: 10, Targets: []string{"fc2"}}, []string{"InitR = -1"}},
		{adalora.Config{InitR: 3, TargetR: 4, TotalStep: 10, Targets: []string{"fc2"}}, []string{"TargetR = 4", "[1, InitR = 3]"}},
		{adalora.Config{InitR: 3, TargetR: 1, Targets: []string{"fc2"}}, []string{"TotalStep = 0"}},
		{adalora.Config{InitR: 3, TargetR: 1, TotalStep: 10, TInit: 5, TFinal: 5, Targets: []string{"fc2"}}, []string{"TInit = 5", "TFinal = 5", "TotalStep = 10"}},
		{adalora.Config{InitR: 3, TargetR: 1, TotalStep: 10, Beta1: 1, Targets: []string{"fc2"}}, []string{"Beta1 = 1"}},
		{adalora.Config{InitR: 3, TargetR: 1, TotalStep: 10, Targets: []string{"mlp"}}, []string{"mlp", "fc1", "fc2"}},
	} {
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		_, err := adalora.Add(m, tc.cfg)
		if e := adaptertest.ErrorMentions(err, tc.want...); e != nil {
			t.Errorf("%+v: %v", tc.cfg, e)
		}
		if len(m.Layers[0].Adapters)+len(m.Layers[1].Adapters) != 0 {
			t.Errorf("%+v: a failed adalora.Add left adapters", tc.cfg)
		}
	}
}

// BenchmarkAdaLoRA measures the controller's work per step (importance
// EMAs and an allocation, "hook") against the forward and backward pass of
// the same model on a batch of 32 ("fwd-bwd"), on four 64×64 layers at
// r_init = 12.
func BenchmarkAdaLoRA(b *testing.B) {
	m := peft.NewMLP([]int{64, 64, 64, 64, 64}, 1)
	a, err := adalora.Add(m, adalora.Config{TotalStep: 1 << 30, Targets: []string{"fc1", "fc2", "fc3", "fc4"}})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, l := range a.Layers {
		fill(rng, l.E.Value, 1)
	}
	batch := adaTask(1, 32, 64, 64)
	b.Run("fwd-bwd", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			for _, p := range a.Params() {
				p.Grad = nil
			}
			peft.Add(m.Loss(batch), a.Regularizer(i+1)).Backward()
		}
	})
	adaRandomGrads(rng, a)
	b.Run("hook", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			a.AfterBackward(i + 1)
			_ = a.AfterStep(i + 1)
		}
	})
}

// ExampleAdaLoRA trains a small classifier with AdaLoRA on all four layers
// and prints how the rank budget was shared out at each allocation.
func ExampleAdaLoRA() {
	m := peft.NewMLP([]int{8, 8, 8, 8, 8}, 11)
	a, err := adalora.Add(m, adalora.Config{
		InitR: 4, TargetR: 2, Alpha: 8, Seed: 3,
		TotalStep: 60, TInit: 10, TFinal: 15, DeltaT: 5,
		Targets: []string{"fc1", "fc2", "fc3", "fc4"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	first, last := adaTrain(m, a, adaTask(15, 64, 8, 8), 60, 0.02)
	tr := a.Trace()
	fmt.Println("step budget ranks")
	for j, s := range tr.Steps {
		r := make([]int, len(tr.Modules))
		for i := range r {
			r[i] = tr.Ranks[i][j]
		}
		fmt.Printf("%4d %6d %v\n", s, tr.Budget[j], r)
	}
	fmt.Printf("loss %.4f → %.4f\n", first, last)
	// Output:
	// step budget ranks
	//   15     13 [3 4 3 3]
	//   20     10 [2 4 3 1]
	//   25      9 [2 2 3 2]
	//   30      8 [2 2 3 1]
	//   35      8 [2 1 3 2]
	//   40      8 [2 1 3 2]
	//   45      8 [2 1 3 2]
	// loss 2.1073 → 1.5847
}

// ExampleLayer shows one layer's SVD-form update: its parameters in
// PEFT's names and shapes, its scale, and that ΔW's rank is the number of
// nonzero λ.
func ExampleLayer() {
	m := peft.NewMLP([]int{6, 5}, 2)
	a, err := adalora.Add(m, adalora.Config{InitR: 3, TargetR: 1, Alpha: 3, TotalStep: 100, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	l := a.Layers[0]
	for _, p := range l.Params() {
		r, c := p.Dims()
		fmt.Printf("%s %d×%d\n", p.Name, r, c)
	}
	fmt.Printf("scale = %.6f\n", l.Scaling())
	l.E.Value.Set(0, 0, 1.5)
	l.E.Value.Set(2, 0, -0.5)
	s, _ := accel.SingularValues(context.Background(), l.DeltaWeight())
	rank := 0
	for _, v := range s {
		if v > 1e-12*s[0] {
			rank++
		}
	}
	fmt.Println("rank of ΔW with two nonzero λ:", rank)
	// Output:
	// fc1.lora_B.default 5×3
	// fc1.lora_E.default 3×1
	// fc1.lora_A.default 3×6
	// scale = 0.999997
	// rank of ΔW with two nonzero λ: 2
}

// TestAdaLoRATrainDigits runs AdaLoRA as a Hook of Train on the digits, in
// both orders: the loss falls, every recorded allocation adds up to its
// budget, the last allocation is at schedule step T − t_f (Train's step
// T − t_f, or T − t_f + 1 with PEFTOrder, which counts from 0), and the
// final ranks add up to b_T.
func TestAdaLoRATrainDigits(t *testing.T) {
	for _, order := range []adalora.Order{adalora.PaperOrder, adalora.PEFTOrder} {
		t.Run(order.String(), func(t *testing.T) {
			data := peft.DigitsData(0.2, 2)
			m := peft.NewMLP([]int{64, 32, 32, 10}, 2)
			const steps = 120
			a, err := adalora.Add(m, adalora.Config{InitR: 6, TargetR: 3, Alpha: 48, TotalStep: steps, TInit: 20, TFinal: 30, DeltaT: 10, Targets: []string{"fc1", "fc2", "fc3"}, Order: order})
			if err != nil {
				t.Fatal(err)
			}
			h, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: steps, BatchSize: 32, LR: 0.03, Hooks: []peft.Hook{a}, EvalEvery: steps, Seed: 2})
			if err != nil {
				t.Fatal(err)
			}
			if first, last := h.Loss[0], h.EvalLoss[0]; !(last < 0.5*first) || h.EvalMetric[0] < 0.5 {
				t.Errorf("loss %.4f → eval %.4f, accuracy %.3f; want the loss halved and accuracy > 0.5 (chance 0.1)", first, last, h.EvalMetric[0])
			}
			lastStep := steps - 30
			if order == adalora.PEFTOrder {
				lastStep++
			}
			tr := a.Trace()
			if len(tr.Steps) == 0 || tr.Steps[len(tr.Steps)-1] != lastStep {
				t.Errorf("allocation steps %v, want the last at Train's step %d (schedule step T − t_f = %d)", tr.Steps, lastStep, steps-30)
			}
			for j, s := range tr.Steps {
				sum := 0
				for i := range tr.Modules {
					sum += tr.Ranks[i][j]
				}
				if sum != tr.Budget[j] {
					t.Errorf("step %d: ranks add to %d, budget %d", s, sum, tr.Budget[j])
				}
			}
			ranks, total := peft.Ranks(m), 0
			for _, r := range ranks {
				total += r
			}
			if total != a.TargetBudget() {
				t.Errorf("final ranks %v add to %d, want %d", ranks, total, a.TargetBudget())
			}
			t.Logf("ranks %v, loss %.4f → eval %.4f, accuracy %.3f", ranks, h.Loss[0], h.EvalLoss[0], h.EvalMetric[0])
		})
	}
}

// ExampleConfig shows the defaults Add fills in (PEFT's) and
// the budgets they give on four layers.
func ExampleConfig() {
	m := peft.NewMLP([]int{16, 16, 16, 16, 16}, 1)
	a, err := adalora.Add(m, adalora.Config{TotalStep: 1000, TInit: 100, TFinal: 200, Targets: []string{"fc1", "fc2", "fc3", "fc4"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	c := a.Config()
	fmt.Printf("r_init = %d, target_r = %d, ΔT = %d, β = (%g, %g), γ = %g\n", c.InitR, c.TargetR, c.DeltaT, c.Beta1, c.Beta2, c.OrthRegWeight)
	for _, t := range []int{100, 450, 800} {
		b, _ := a.Budget(t)
		fmt.Printf("b(%d) = %d\n", t, b)
	}
	// Output:
	// r_init = 12, target_r = 8, ΔT = 1, β = (0.85, 0.85), γ = 0.5
	// b(100) = 48
	// b(450) = 34
	// b(800) = 32
}

// impRef restates HuggingFace PEFT's RankAllocator
// (peft/tuners/adalora/layer.py: update_ipt, _element_score,
// mask_to_budget) over a controller's layers, without the package's code:
// the reference both orders are checked against. Which weights update
// reads, and when, is up to the caller.
type impRef struct {
	beta1, beta2 float64
	ibar, ubar   map[*peft.Tensor][]float64
}

func newImpRef(cfg adalora.Config) *impRef {
	return &impRef{beta1: cfg.Beta1, beta2: cfg.Beta2, ibar: map[*peft.Tensor][]float64{}, ubar: map[*peft.Tensor][]float64{}}
}

// update is update_ipt: ipt = |p ⊙ p.grad| at p's current value,
// exp_avg_ipt ← β₁·exp_avg_ipt + (1−β₁)·ipt,
// exp_avg_unc ← β₂·exp_avg_unc + (1−β₂)·|ipt − exp_avg_ipt|.
func (r *impRef) update(layers []*adalora.Layer) {
	for _, l := range layers {
		for _, p := range []*peft.Tensor{l.Q, l.E, l.P} {
			rows, cols := p.Dims()
			if r.ibar[p] == nil {
				r.ibar[p], r.ubar[p] = make([]float64, rows*cols), make([]float64, rows*cols)
			}
			ib, ub := r.ibar[p], r.ubar[p]
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					k := i*cols + j
					ipt := math.Abs(p.Value.At(i, j) * p.Grad.At(i, j))
					ib[k] = r.beta1*ib[k] + (1-r.beta1)*ipt
					ub[k] = r.beta2*ub[k] + (1-r.beta2)*math.Abs(ipt-ib[k])
				}
			}
		}
	}
}

// score is _element_score of entry (i, j) of p.
func (r *impRef) score(p *peft.Tensor, i, j int) float64 {
	if r.ibar[p] == nil {
		return 0
	}
	_, cols := p.Dims()
	return r.ibar[p][i*cols+j] * r.ubar[p][i*cols+j]
}

// scores is mask_to_budget's triplet score: the score of lora_E, plus the
// mean over lora_A's row and over lora_B's column.
func (r *impRef) scores(layers []*adalora.Layer) [][]float64 {
	out := make([][]float64, len(layers))
	for li, l := range layers {
		out[li] = make([]float64, l.RInit)
		_, in := l.Q.Dims()
		d, _ := l.P.Dims()
		for i := range out[li] {
			var a, b float64
			for j := 0; j < in; j++ {
				a += r.score(l.Q, i, j)
			}
			for j := 0; j < d; j++ {
				b += r.score(l.P, j, i)
			}
			out[li][i] = r.score(l.E, i, 0) + (a/float64(in) + b/float64(d))
		}
	}
	return out
}

// keptAt is mask_to_budget's mask for budget b: a triplet is dropped if its
// score is at most the (b₀ − b)-th smallest.
func (r *impRef) keptAt(layers []*adalora.Layer, b0, b int) [][]bool {
	sc := r.scores(layers)
	var all []float64
	for _, s := range sc {
		all = append(all, s...)
	}
	sort.Float64s(all)
	thr := math.Inf(-1)
	if b0-b > 0 {
		thr = all[b0-b-1]
	}
	kept := make([][]bool, len(sc))
	for li, s := range sc {
		for _, v := range s {
			kept[li] = append(kept[li], v > thr)
		}
	}
	return kept
}

// budgetRef is PEFT's budget_schedule(step), written from layer.py.
func budgetRef(cfg adalora.Config, b0, bT, step int) (int, bool) {
	switch {
	case step <= cfg.TInit:
		return b0, false
	case step > cfg.TotalStep-cfg.TFinal:
		return bT, true
	}
	mul := 1 - float64(step-cfg.TInit)/float64(cfg.TotalStep-cfg.TFinal-cfg.TInit)
	return int(float64(b0-bT)*math.Pow(mul, 3) + float64(bT)), step%cfg.DeltaT == 0
}

// maxRelDiff returns max |a − b| / max |b| over two score tables.
func maxRelDiff(a, b [][]float64) float64 {
	var d, n float64
	for i := range b {
		for j := range b[i] {
			d = max(d, math.Abs(a[i][j]-b[i][j]))
			n = max(n, math.Abs(b[i][j]))
		}
	}
	return d / n
}

// TestOrder runs the same training twice, with PaperOrder and PEFTOrder, and
// follows each controller with impRef, a re-statement of PEFT's
// RankAllocator. With PaperOrder the reference reads the weights right after
// the backward pass (the paper's Algorithm 1) and the schedule step is
// Train's; with PEFTOrder it reads them after the optimizer's update (PEFT's
// update_and_allocate after optimizer.step()) and the schedule step is
// Train's minus one (PEFT's examples count from 0). Each controller's scores
// must equal its reference's at every step, and its allocations must be
// those of PEFT's budget_schedule and mask_to_budget at its schedule step.
// Up to t_i the two runs are the same run (the controllers mask nothing):
// their weights are equal there, their scores not.
func TestOrder(t *testing.T) {
	cfg := adalora.Config{InitR: 4, TargetR: 2, Alpha: 8, TotalStep: 40, TInit: 6, TFinal: 10, DeltaT: 3, Seed: 3}
	batch := adaTask(15, 64, 8, 8)
	type result struct {
		weights []*mat.Dense // P, λ, Q of every layer at the end of step t_i
		scores  [][]float64  // the controller's scores then
		trace   *peft.RankTrace
	}
	res := map[adalora.Order]*result{}
	for _, order := range []adalora.Order{adalora.PaperOrder, adalora.PEFTOrder} {
		c := cfg
		c.Order = order
		m, a := adaModel(t, c)
		ref := newImpRef(a.Config())
		b0, bT := a.InitialBudget(), a.TargetBudget()
		final := cfg.TotalStep - cfg.TFinal
		sched := func(step int) int {
			if order == adalora.PEFTOrder {
				return step - 1 // PEFT's global_step, from 0
			}
			return step
		}
		fixed := false // the reference's final allocation is made
		scoreRef := func(step int) {
			if !fixed && sched(step) < final {
				ref.update(a.Layers)
			}
		}
		var o observer
		if order == adalora.PaperOrder {
			o.backward = scoreRef // before the optimizer moves the weights
		}
		type alloc struct {
			b    int
			kept [][]bool
		}
		var want *alloc
		var r result
		o.update = func(step int) {
			if order == adalora.PEFTOrder {
				scoreRef(step) // after the optimizer moved the weights
			}
			want = nil
			if fixed {
				return
			}
			t := sched(step)
			b, mask := budgetRef(cfg, b0, bT, t)
			if t == final {
				mask, fixed = true, true // force_mask
			}
			if mask {
				want = &alloc{b, ref.keptAt(a.Layers, b0, b)}
			}
		}
		nAlloc := 0
		o.done = func(step int) {
			tr := a.Trace()
			if want != nil {
				nAlloc++
				if len(tr.Steps) != nAlloc || tr.Steps[nAlloc-1] != step || tr.Budget[nAlloc-1] != want.b {
					t.Fatalf("%v step %d: trace steps %v budgets %v; want an allocation to %d now (schedule step %d)", order, step, tr.Steps, tr.Budget, want.b, sched(step))
				}
				for li, l := range a.Layers {
					if !slices.Equal(l.Kept(), want.kept[li]) {
						t.Fatalf("%v step %d: %s kept %v, PEFT's rule %v", order, step, l.Module, l.Kept(), want.kept[li])
					}
				}
			} else if len(tr.Steps) != nAlloc {
				t.Fatalf("%v step %d: allocated to %d at schedule step %d; PEFT's rule does not", order, step, tr.Budget[len(tr.Budget)-1], sched(step))
			}
			if !fixed {
				if d := maxRelDiff(a.Scores(), ref.scores(a.Layers)); d > 1e-12 {
					t.Fatalf("%v step %d: scores differ from the reference's by %.3g relative", order, step, d)
				}
			}
			if step == cfg.TInit {
				for _, p := range a.Params() {
					r.weights = append(r.weights, mat.DenseCopyOf(p.Value))
				}
				r.scores = a.Scores()
			}
		}
		adaTrainObserved(m, a, batch, cfg.TotalStep, 0.02, o)
		r.trace = a.Trace()
		sum := 0
		for _, l := range a.Layers {
			sum += l.Rank()
			for i, k := range l.Kept() {
				if !k && l.E.Value.At(i, 0) != 0 {
					t.Errorf("%v: %s: pruned λ_%d = %g after the final allocation", order, l.Module, i, l.E.Value.At(i, 0))
				}
			}
		}
		if sum != bT {
			t.Errorf("%v: final ranks %v add to %d, want b_T = %d", order, a.Ranks(), sum, bT)
		}
		res[order] = &r
	}
	paper, peftOrd := res[adalora.PaperOrder], res[adalora.PEFTOrder]
	for i := range paper.weights {
		if !mat.Equal(paper.weights[i], peftOrd.weights[i]) {
			t.Fatalf("the runs differ before t_i: the comparison below would not be of one run")
		}
	}
	d := maxRelDiff(paper.scores, peftOrd.scores)
	if d < 1e-2 {
		t.Errorf("at step t_i = %d the orders' scores differ by only %.3g relative", cfg.TInit, d)
	}
	t.Logf("scores at step t_i = %d: PaperOrder %.3g, PEFTOrder %.3g (relative difference %.3g)", cfg.TInit, paper.scores[0], peftOrd.scores[0], d)
	// PEFT counts from 0: the same schedule steps, one Train step later.
	if len(paper.trace.Steps) != len(peftOrd.trace.Steps) || !slices.Equal(paper.trace.Budget, peftOrd.trace.Budget) {
		t.Errorf("allocations: PaperOrder at %v to %v, PEFTOrder at %v to %v", paper.trace.Steps, paper.trace.Budget, peftOrd.trace.Steps, peftOrd.trace.Budget)
	}
	for j, s := range paper.trace.Steps {
		if j < len(peftOrd.trace.Steps) && peftOrd.trace.Steps[j] != s+1 {
			t.Errorf("allocation %d: PaperOrder at step %d, PEFTOrder at %d; want one step later", j, s, peftOrd.trace.Steps[j])
		}
	}
	if last := paper.trace.Steps[len(paper.trace.Steps)-1]; last != cfg.TotalStep-cfg.TFinal {
		t.Errorf("PaperOrder's final allocation at step %d, want T − t_f = %d", last, cfg.TotalStep-cfg.TFinal)
	}
}

// TestSuite runs the shared adapter suite on AdaLoRA, in both orders.
// AdaLoRA's λ start at zero, as in PEFT, so the output at init is the base
// model's exactly. ChangeRank runs an allocation of the controller Add
// made (random gradients, one scoring, a budget of b₀ − 1 at schedule step
// 1) and returns each layer's number of nonzero λ, the rank of its ΔW.
func TestSuite(t *testing.T) {
	for _, order := range []adalora.Order{adalora.PaperOrder, adalora.PEFTOrder} {
		t.Run(order.String(), func(t *testing.T) {
			ctls := map[*adalora.Layer]*adalora.AdaLoRA{}
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					a, err := adalora.Add(m, adalora.Config{InitR: o.R, TargetR: 1, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed, TotalStep: 10, Order: order})
					if err != nil {
						return nil, err
					}
					ads := make([]peft.Adapter, len(a.Layers))
					for i, l := range a.Layers {
						ads[i] = l
						ctls[l] = a
					}
					return ads, nil
				},
				ZeroAtInit: true,
				ChangeRank: func(ads []peft.Adapter) []int {
					a := ctls[ads[0].(*adalora.Layer)]
					rng := rand.New(rand.NewPCG(4, 4))
					for _, p := range a.Params() {
						r, c := p.Dims()
						p.Grad = randNormal(rng, r, c)
					}
					step := 1 // schedule step 1: b(1) = ⌊b_T + (b₀ − b_T)·0.9³⌋ = b₀ − 1 for b₀ = 4, b_T = 2
					if order == adalora.PEFTOrder {
						step = 2
					}
					a.AfterBackward(step)
					if err := a.AfterStep(step); err != nil {
						t.Error(err)
					}
					ranks := make([]int, len(ads))
					total := 0
					for i, ad := range ads {
						e := ad.(*adalora.Layer).E.Value
						for j := 0; j < e.RawMatrix().Rows; j++ {
							if e.At(j, 0) != 0 {
								ranks[i]++
							}
						}
						total += ranks[i]
					}
					if b, _ := a.Budget(1); total != b || b >= a.InitialBudget() {
						t.Errorf("the allocation kept %d triplets, want b(1) = %d < b₀ = %d", total, b, a.InitialBudget())
					}
					return ranks
				},
			})
		})
	}
}
