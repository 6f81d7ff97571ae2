package loraggpo_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/loraggpo"
	"gonum.org/v1/gonum/mat"
)

// teacherModel returns a teacher task (d×k) and its student with a rank-2
// LoRA whose B is random (so that s·B·A ≠ 0).
func teacherModel(t *testing.T, d, k int) (*peft.TeacherTask, *peft.LinearModel, *lora.LoRA) {
	t.Helper()
	task := peft.NewTeacherTask(d, k, []float64{2, 1}, 64, 1)
	m := task.Model()
	ads, err := lora.Add(m, lora.Config{R: 2, Alpha: 3, Targets: []string{"proj"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	ads[0].B.Value.Apply(func(int, int, float64) float64 { return 0.3 * rng.NormFloat64() }, ads[0].B.Value)
	return task, m, ads[0]
}

// TestPerturbationKnownAnswer rebuilds ε by hand: at the first step
// ε_{ij} = (σ/√k)·√α·‖W'_{i,:}‖·z_{ij} with z the seed's normal stream, row
// by row; after a backward pass the next ε adds β·s²‖(B·g_A + g_B·A)_{i,:}‖²
// to each row's variance and continues the stream. ε is added to W₀ exactly
// and removed exactly.
func TestPerturbationKnownAnswer(t *testing.T) {
	const d, k, sigma, alpha, beta, seed = 5, 7, 0.3, 0.7, 2.5, 11
	task, m, a := teacherModel(t, d, k)
	g, err := loraggpo.New(m, loraggpo.Config{Sigma: sigma, Alpha: alpha, Beta: beta, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	w0 := mat.DenseCopyOf(m.Layer.W.Value)
	z := rand.New(rand.NewSource(seed))
	s := a.Scaling()
	b := task.Sample(rand.New(rand.NewSource(4)), 16)
	g.SetTraining(true)
	var grad2 []float64
	for step := 1; step <= 2; step++ {
		wp := a.MergedWeight(mat.DenseCopyOf(w0)) // W' (d×k)
		want := mat.NewDense(d, k, nil)
		for i := 0; i < d; i++ {
			v := alpha * mat.Dot(wp.RowView(i), wp.RowView(i))
			if grad2 != nil {
				v += beta * grad2[i]
			}
			std := sigma / math.Sqrt(k) * math.Sqrt(v)
			for j := 0; j < k; j++ {
				want.Set(i, j, std*z.NormFloat64())
			}
		}
		for _, p := range m.Params() {
			p.Grad = nil
		}
		loss := g.Loss(b)
		eps := g.Perturbation("proj")
		if r, c := eps.Dims(); r != d || c != k {
			t.Fatalf("step %d: ε is %d×%d, want %d×%d", step, r, c, d, k)
		}
		if !mat.EqualApprox(eps, want, 1e-15) {
			t.Fatalf("step %d: ε differs from the hand-built one by %.3g", step, maxAbsDiff(eps, want))
		}
		var pert mat.Dense
		pert.Add(w0, eps)
		if !mat.Equal(m.Layer.W.Value, &pert) {
			t.Fatalf("step %d: W during the step is not W₀ + ε", step)
		}
		loss.Backward()
		g.AfterBackward(step)
		if !mat.Equal(m.Layer.W.Value, w0) {
			t.Fatalf("step %d: W₀ not restored bit for bit after the backward pass", step)
		}
		// the gradient term of the next step: s²‖B·g_A + g_B·A‖² by row
		var eq, t2 mat.Dense
		eq.Mul(a.B.Value, a.A.Grad)
		t2.Mul(a.B.Grad, a.A.Value)
		eq.Add(&eq, &t2)
		grad2 = make([]float64, d)
		for i := range grad2 {
			grad2[i] = s * s * mat.Dot(eq.RowView(i), eq.RowView(i))
		}
		got := g.GradRowNorms2("proj")
		for i := range grad2 {
			if math.Abs(got[i]-grad2[i]) > 1e-13*math.Abs(grad2[i]) {
				t.Fatalf("step %d: ‖g̃_%d‖² = %v, want %v", step, i, got[i], grad2[i])
			}
		}
	}
}

func maxAbsDiff(x, y *mat.Dense) float64 {
	var d mat.Dense
	d.Sub(x, y)
	return mat.Norm(&d, math.Inf(1))
}

// TestPerturbationVariance: over many draws the mean of ε_{ij}² in row i
// is (σ²/k)·α·‖W'_{i,:}‖² (β's term absent before any backward pass), and
// E‖ε‖²_F = σ²·α·‖W'‖²_F, to within sampling error.
func TestPerturbationVariance(t *testing.T) {
	const d, k, sigma, alpha, draws = 6, 40, 0.2, 1.5, 1500
	task, m, a := teacherModel(t, d, k)
	g, err := loraggpo.New(m, loraggpo.Config{Sigma: sigma, Alpha: alpha, Beta: 1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	wp := a.MergedWeight(mat.DenseCopyOf(m.Layer.W.Value))
	b := task.Sample(rand.New(rand.NewSource(4)), 4)
	g.SetTraining(true)
	rowSq := make([]float64, d)
	total := 0.0
	for n := 0; n < draws; n++ {
		g.Loss(b) // restores the previous ε, draws a new one
		eps := g.Perturbation("proj")
		for i := 0; i < d; i++ {
			v := mat.Dot(eps.RowView(i), eps.RowView(i))
			rowSq[i] += v
			total += v
		}
	}
	g.Restore()
	fw := mat.Norm(wp, 2)
	want := sigma * sigma * alpha * fw * fw
	if got := total / draws; math.Abs(got-want) > 0.02*want {
		t.Errorf("E‖ε‖²_F = %.5g over %d draws, want σ²α‖W'‖²_F = %.5g (±2%%)", got, draws, want)
	}
	for i := 0; i < d; i++ {
		wi := mat.Dot(wp.RowView(i), wp.RowView(i))
		want := sigma * sigma * alpha * wi / k
		if got := rowSq[i] / draws / k; math.Abs(got-want) > 0.05*want {
			t.Errorf("row %d: mean ε² = %.5g, want (σ²/k)α‖W'_%d‖² = %.5g (±5%%)", i, got, i, want)
		}
	}
}

// digitsLoRA returns the pretrained digits MLP with LoRA of rank 4 on fc1
// and fc2, and the ten-digit data.
func digitsLoRA(t *testing.T) (*peft.MLP, peft.Dataset) {
	t.Helper()
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Add(m, lora.Config{R: 4, Alpha: 8, Targets: []string{"fc1", "fc2"}, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	return m, peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
}

// TestZeroSigmaIsLoRA: with σ = 0, LoRA-GGPO's training (the perturbation
// drawn, added, and removed every step) is plain LoRA training, bit for
// bit: same losses, same adapter weights.
func TestZeroSigmaIsLoRA(t *testing.T) {
	cfg := peft.TrainConfig{Steps: 40, BatchSize: 32, LR: 1e-2, Seed: 3, EvalEvery: 20}
	m1, data := digitsLoRA(t)
	h1, err := peft.Train(context.Background(), m1, data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := digitsLoRA(t)
	h2, err := loraggpo.Train(context.Background(), m2, data, cfg, loraggpo.Config{Sigma: 0, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	for i := range h1.Loss {
		if h1.Loss[i] != h2.Loss[i] {
			t.Fatalf("step %d: loss %v with LoRA, %v with LoRA-GGPO at σ = 0", i+1, h1.Loss[i], h2.Loss[i])
		}
	}
	for i := range h1.EvalLoss {
		if h1.EvalLoss[i] != h2.EvalLoss[i] || h1.EvalMetric[i] != h2.EvalMetric[i] {
			t.Fatalf("eval %d: (%v, %v) with LoRA, (%v, %v) with LoRA-GGPO", i, h1.EvalLoss[i], h1.EvalMetric[i], h2.EvalLoss[i], h2.EvalMetric[i])
		}
	}
	if h2.MetricName != h1.MetricName {
		t.Errorf("metric name %q, want %q", h2.MetricName, h1.MetricName)
	}
	p1, p2 := m1.Params(), m2.Params()
	for i := range p1 {
		if !mat.Equal(p1[i].Value, p2[i].Value) {
			t.Errorf("%s differs after training", p1[i].Name)
		}
	}
}

// TestRestoredAfterEveryStep: with σ > 0 the weights W₀ are back to their
// bits after every step (seen from the callback, which runs after the
// optimizer), evaluation during training sees them unperturbed, the
// perturbation was really applied, and a run stopped early leaves W₀
// restored too.
func TestRestoredAfterEveryStep(t *testing.T) {
	m, data := digitsLoRA(t)
	w0 := make([]*mat.Dense, len(m.Layers))
	for i, l := range m.Layers {
		w0[i] = mat.DenseCopyOf(l.W.Value)
	}
	check := func(when string) {
		for i, l := range m.Layers {
			if !mat.Equal(l.W.Value, w0[i]) {
				t.Fatalf("%s: %s's W₀ is not restored", when, l.Name)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := peft.TrainConfig{Steps: 30, BatchSize: 16, LR: 1e-2, Seed: 3, EvalEvery: 10,
		Callback: func(step int, h *peft.History) {
			check("after step")
			if step == 20 {
				cancel()
			}
		}}
	g, err := loraggpo.New(m, loraggpo.Config{Sigma: 0.3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hooks = []peft.Hook{g}
	h, err := peft.Train(ctx, g, data, cfg)
	if !errors.Is(err, context.Canceled) || len(h.Steps) != 20 {
		t.Fatalf("stopped run: %d steps, err = %v; want 20 and context.Canceled", len(h.Steps), err)
	}
	check("after an early stop")
	eps := g.Perturbation("fc1")
	if eps == nil || mat.Norm(eps, 2) == 0 {
		t.Fatalf("no perturbation was applied to fc1")
	}
	// evaluation at step 20 saw the unperturbed model
	m.SetTraining(false)
	el, em, err := peft.Evaluate(context.Background(), m, data)
	if err != nil {
		t.Fatal(err)
	}
	if last := len(h.EvalLoss) - 1; h.EvalLoss[last] != el || h.EvalMetric[last] != em {
		t.Errorf("eval during training (%v, %v) differs from evaluating the unperturbed model (%v, %v)", h.EvalLoss[last], h.EvalMetric[last], el, em)
	}
}

// sharpnessRef returns the mean increase of m's eval loss over n random
// perturbations of its adapted weights W' with per-row scale
// (ρ/√k)·‖W'_{i,:}‖ (the filter-normalized noise of Flat-LoRA's
// evaluation), the same draws for every model.
func sharpnessRef(m peft.Model, data peft.Dataset, rho float64, n int) float64 {
	m.SetTraining(false)
	base, _, _ := peft.Evaluate(context.Background(), m, data)
	rng := rand.New(rand.NewSource(99))
	inc := 0.0
	for t := 0; t < n; t++ {
		var saved []*mat.Dense
		for _, l := range m.Modules() {
			w := l.W.Value
			saved = append(saved, mat.DenseCopyOf(w))
			wp := l.ActiveAdapter().MergedWeight(mat.DenseCopyOf(w))
			std := loraggpo.RowScales(wp, nil, loraggpo.Config{Sigma: rho, Alpha: 1})
			d, k := w.Dims()
			for i := 0; i < d; i++ {
				for j := 0; j < k; j++ {
					w.Set(i, j, w.At(i, j)+std[i]*rng.NormFloat64())
				}
			}
		}
		l, _, _ := peft.Evaluate(context.Background(), m, data)
		inc += l - base
		for i, l := range m.Modules() {
			l.W.Value.Copy(saved[i])
		}
	}
	return inc / float64(n)
}

// TestFlatter: adapting the digits MLP to all ten digits for 300 steps,
// LoRA-GGPO (σ = 0.3) ends in flatter minima than LoRA: summed over four
// seeds, the eval loss rises less under random weight perturbations of
// relative size 0.2. (Its eval loss is higher at this short budget; the
// test logs both.)
func TestFlatter(t *testing.T) {
	var sharpLoRA, sharpGGPO, evLoRA, evGGPO float64
	for _, seed := range []int64{3, 5, 6, 7} {
		cfg := peft.TrainConfig{Steps: 300, BatchSize: 32, LR: 1e-2, Seed: seed, EvalEvery: 300}
		m1, data := digitsLoRA(t)
		h1, err := peft.Train(context.Background(), m1, data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m2, _ := digitsLoRA(t)
		h2, err := loraggpo.Train(context.Background(), m2, data, cfg, loraggpo.Config{Sigma: 0.3, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		s1, s2 := sharpnessRef(m1, data, 0.2, 20), sharpnessRef(m2, data, 0.2, 20)
		t.Logf("seed %d: eval loss LoRA %.4f (acc %.3f), LoRA-GGPO %.4f (acc %.3f); loss rise under ρ = 0.2 noise: LoRA %.4f, LoRA-GGPO %.4f",
			seed, h1.EvalLoss[0], h1.EvalMetric[0], h2.EvalLoss[0], h2.EvalMetric[0], s1, s2)
		sharpLoRA += s1
		sharpGGPO += s2
		evLoRA += h1.EvalLoss[0]
		evGGPO += h2.EvalLoss[0]
	}
	t.Logf("summed over seeds: loss rise LoRA %.4f, LoRA-GGPO %.4f (ratio %.2f); eval loss LoRA %.4f, LoRA-GGPO %.4f", sharpLoRA, sharpGGPO, sharpGGPO/sharpLoRA, evLoRA, evGGPO)
	if !(sharpGGPO < 0.85*sharpLoRA) {
		t.Errorf("LoRA-GGPO's loss rise under perturbation %.4f is not below 0.85× LoRA's %.4f", sharpGGPO, sharpLoRA)
	}
}

func TestConfigErrors(t *testing.T) {
	_, m, _ := teacherModel(t, 5, 4)
	for _, c := range []struct {
		cfg  loraggpo.Config
		want string
	}{
		{loraggpo.Config{Sigma: -0.1}, "Sigma = -0.1"},
		{loraggpo.Config{Sigma: math.Inf(1)}, "Sigma = +Inf"},
		{loraggpo.Config{Alpha: -1, Beta: 1}, "Alpha = -1"},
		{loraggpo.Config{Beta: math.NaN()}, "Beta = NaN"},
	} {
		if _, err := loraggpo.New(m, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) error = %v, want one containing %q", c.cfg, err, c.want)
		}
	}
	task := peft.NewTeacherTask(5, 4, []float64{1}, 8, 1)
	if _, err := loraggpo.New(task.Model(), loraggpo.Config{}); err == nil || !strings.Contains(err.Error(), "LoRA") {
		t.Errorf("a model without LoRA: error = %v", err)
	}
	if g, err := loraggpo.New(m, loraggpo.Config{}); err != nil || g.Config().Alpha != 1 || g.Config().Beta != 1 {
		t.Errorf("defaults: %+v, %v; want α = β = 1", g.Config(), err)
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("LoRA-GGPO")
	if !ok || m.Kind != peft.HookMethod || !strings.Contains(m.Paper, "2502.14538") {
		t.Errorf("LookupMethod(LoRA-GGPO) = %v, %v", m, ok)
	}
}
