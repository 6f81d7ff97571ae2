package ewclora_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/ewclora"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// TestPenaltyKnownAnswer: Ω = (λ/2)·Σ F⊙(θ − θ*)² on hand-picked numbers,
// and its gradient λ·F⊙(θ − θ*) against the formula and central
// differences.
func TestPenaltyKnownAnswer(t *testing.T) {
	a := peft.NewParam("a", mat.NewDense(1, 3, []float64{1, 2, 3}))
	b := peft.NewParam("b", mat.NewDense(2, 1, []float64{-1, 0.5}))
	fa, sa := mat.NewDense(1, 3, []float64{2, 0, 1}), mat.NewDense(1, 3, []float64{0, 5, 1})
	fb, sb := mat.NewDense(2, 1, []float64{4, 3}), mat.NewDense(2, 1, []float64{1, 0.5})
	e := ewclora.New(ewclora.Config{Lambda: 3})
	e.Anchor([]*peft.Tensor{a, b}, []*mat.Dense{fa, fb}, []*mat.Dense{sa, sb})
	// Σ F(θ−θ*)² = 2·1 + 0·9 + 1·4 + 4·4 + 3·0 = 22; Ω = 3/2·22 = 33
	pen := e.Penalty()
	if got := pen.Scalar(); math.Abs(got-33) > 1e-13 {
		t.Fatalf("Ω = %v, want 33", got)
	}
	pen.Backward()
	wantA := []float64{3 * 2 * 1, 0, 3 * 1 * 2} // λF(θ−θ*)
	wantB := []float64{3 * 4 * -2, 0}
	for i, w := range wantA {
		if got := a.Grad.At(0, i); math.Abs(got-w) > 1e-13 {
			t.Errorf("∂Ω/∂a[%d] = %v, want %v", i, got, w)
		}
	}
	for i, w := range wantB {
		if got := b.Grad.At(i, 0); math.Abs(got-w) > 1e-13 {
			t.Errorf("∂Ω/∂b[%d] = %v, want %v", i, got, w)
		}
	}
	// central differences on random values
	rng := rand.New(rand.NewSource(1))
	p := peft.NewParam("p", adaptertest.RandDense(rng, 3, 2))
	f := adaptertest.RandDense(rng, 3, 2)
	f.Apply(func(_, _ int, v float64) float64 { return v * v }, f) // F ≥ 0
	e.Anchor([]*peft.Tensor{p}, []*mat.Dense{f}, []*mat.Dense{adaptertest.RandDense(rng, 3, 2)})
	theta := append([]float64(nil), p.Value.RawMatrix().Data...)
	loss := func(x []float64) float64 {
		copy(p.Value.RawMatrix().Data, x)
		return e.Penalty().Scalar()
	}
	num := fd.Gradient(nil, loss, theta, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	copy(p.Value.RawMatrix().Data, theta)
	p.Grad = nil
	e.Penalty().Backward()
	for i, g := range p.Grad.RawMatrix().Data {
		if math.Abs(g-num[i]) > 1e-7*math.Max(1, math.Abs(g)) {
			t.Errorf("∂Ω/∂θ[%d] = %v, central difference %v", i, g, num[i])
		}
	}
}

// TestFisherKnownAnswer: on a linear model with loss mean((x·Wᵀ − y)²),
// whose batch gradient is (2/(n·d))·(ŷ − y)ᵀ·x, Fisher is the mean over
// the batches of its square (not the square of the mean).
func TestFisherKnownAnswer(t *testing.T) {
	task := peft.NewTeacherTask(4, 3, []float64{2, 1}, 50, 1)
	m := task.Model()
	m.Layer.W.Value.Scale(0.5, m.Layer.W.Value) // away from the optimum
	const batches, size, seed = 5, 4, 9
	f, err := ewclora.Fisher(context.Background(), m, task, batches, size, seed)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(seed))
	want := mat.NewDense(4, 3, nil)
	var mean mat.Dense
	mean.CloneFrom(want)
	for i := 0; i < batches; i++ {
		b := task.Sample(rng, size)
		var r mat.Dense
		r.Mul(b.X, m.Layer.W.Value.T()) // ŷ (n×d)
		r.Sub(&r, b.Y)
		var g mat.Dense
		g.Mul(r.T(), b.X) // (ŷ − y)ᵀ·x (d×k)
		g.Scale(2/float64(size*4), &g)
		g2 := mat.DenseCopyOf(&g)
		g2.MulElem(g2, &g)
		want.Add(want, g2)
		mean.Add(&mean, &g)
	}
	want.Scale(1/float64(batches), want)
	var d mat.Dense
	d.Sub(f[0], want)
	if e := mat.Norm(&d, math.Inf(1)) / mat.Norm(want, math.Inf(1)); e > 1e-12 {
		t.Errorf("Fisher departs from the mean of squared batch gradients by %.2e (relative)", e)
	}
	mean.Scale(1/float64(batches), &mean)
	mean.MulElem(&mean, &mean)
	d.Sub(f[0], &mean)
	if mat.Norm(&d, math.Inf(1)) < 1e-6 {
		t.Error("Fisher equals the squared mean gradient; the batches should disagree")
	}
	if m.Layer.W.Grad != nil {
		t.Error("Fisher left a gradient on the parameter")
	}
}

func digitsLoRA(t *testing.T) *peft.MLP {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Add(m, lora.Config{R: 8, Seed: 1, Targets: []string{"fc1", "fc2"}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// The split of the digits the lab's tests use: the shipped MLP knows 0–4;
// LoRA then learns 5,6 then 7,8 then 9,0.
var seq = peft.DigitsSequence(0.25, 0, []int{5, 6}, []int{7, 8}, []int{9, 0})

func TestLambdaZeroIsLoRA(t *testing.T) {
	run := func(method peft.ContinualMethod) (*peft.ContinualResult, *peft.MLP) {
		m := digitsLoRA(t)
		res, err := peft.RunContinual(context.Background(), m, seq, peft.ContinualConfig{
			Train:  peft.TrainConfig{Steps: 15, BatchSize: 32, LR: 1e-2, Seed: 1},
			Method: method,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res, m
	}
	e := ewclora.New(ewclora.Config{Lambda: 0})
	a, ma := run(nil)
	b, mb := run(e)
	for i := range a.R {
		for j := range a.R[i] {
			if a.Loss[i][j] != b.Loss[i][j] {
				t.Fatalf("Loss[%d][%d]: %v plain LoRA, %v EWC-LoRA λ=0", i, j, a.Loss[i][j], b.Loss[i][j])
			}
		}
	}
	pa, pb := peft.TrainableOf(ma), peft.TrainableOf(mb)
	for i := range pa {
		if !mat.Equal(pa[i].Value, pb[i].Value) {
			t.Errorf("%s differs", pa[i].Name)
		}
	}
	// the hook did record a Fisher: λ alone switched the penalty off
	if f := e.FisherOf(pb[1]); f == nil || mat.Norm(f, 1) == 0 || e.Tasks() != 3 {
		t.Errorf("EWC λ=0 recorded no Fisher over %d tasks", e.Tasks())
	}
}

// TestOnlineFisherAdds: after two tasks the Fisher is the sum of the two
// tasks' Fishers and θ* the latest values.
func TestOnlineFisherAdds(t *testing.T) {
	m := digitsLoRA(t)
	e := ewclora.New(ewclora.Config{Lambda: 1, Batches: 3, BatchSize: 8, Seed: 5})
	ctx := context.Background()
	ps := peft.TrainableOf(m)
	f0, _ := ewclora.Fisher(ctx, m, seq.Tasks[0].Data, 3, 8, 5)
	if err := e.Consolidate(ctx, m, seq.Tasks[0].Data); err != nil {
		t.Fatal(err)
	}
	ps[0].Value.Set(0, 0, ps[0].Value.At(0, 0)+0.5) // as if trained
	f1, _ := ewclora.Fisher(ctx, m, seq.Tasks[1].Data, 3, 8, 6)
	if err := e.Consolidate(ctx, m, seq.Tasks[1].Data); err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		var want, d mat.Dense
		want.Add(f0[i], f1[i])
		d.Sub(e.FisherOf(p), &want)
		if x := mat.Norm(&d, math.Inf(1)); x > 1e-15*math.Max(1, mat.Norm(&want, math.Inf(1))) {
			t.Errorf("%s: Fisher departs from the sum of the tasks' by %.2e", p.Name, x)
		}
	}
	// θ* = current values: the penalty is 0 now
	if v := e.Penalty().Scalar(); v != 0 {
		t.Errorf("Ω at θ = θ* is %v, want 0", v)
	}
}

// TestEWCForgetsLess: LoRA (r = 8) on the shipped digits MLP learns 5,6 then
// 7,8 then 9,0 (task-incremental); EWC on the LoRA factors forgets less.
// Measured: forgetting 0.02 vs 0.34, average accuracy 0.74 vs 0.48.
func TestEWCForgetsLess(t *testing.T) {
	run := func(method peft.ContinualMethod) *peft.ContinualResult {
		res, err := peft.RunContinual(context.Background(), digitsLoRA(t), seq, peft.ContinualConfig{
			Train:           peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 1e-2, Seed: 1},
			Method:          method,
			TaskIncremental: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	plain, e := run(nil), run(ewclora.New(ewclora.Config{Lambda: 1e4}))
	t.Logf("LoRA:\n%s", plain)
	t.Logf("EWC-LoRA λ = 1e4:\n%s", e)
	if !(e.Forgetting() < plain.Forgetting()-0.1) {
		t.Errorf("forgetting: EWC-LoRA %.3f, LoRA %.3f; want EWC-LoRA lower by 0.1", e.Forgetting(), plain.Forgetting())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  ewclora.Config
		want string
	}{
		{ewclora.Config{Lambda: -1}, "Lambda = -1"},
		{ewclora.Config{Lambda: math.Inf(1)}, "Lambda = +Inf"},
		{ewclora.Config{Batches: -2}, "Batches = -2"},
		{ewclora.Config{BatchSize: -2}, "BatchSize = -2"},
	} {
		err := peft.Maybe(func() { ewclora.New(c.cfg) })
		var ae peft.ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an ArgError naming %s", c.cfg, err, c.want)
		}
	}
	e := ewclora.New(ewclora.Config{Lambda: 1})
	p := peft.NewParam("p", mat.NewDense(2, 3, nil))
	err := peft.Maybe(func() {
		e.Anchor([]*peft.Tensor{p}, []*mat.Dense{mat.NewDense(3, 2, nil)}, []*mat.Dense{mat.NewDense(2, 3, nil)})
	})
	var se peft.ShapeError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "(3×2)") || !strings.Contains(err.Error(), "(2×3)") {
		t.Errorf("a Fisher of the wrong shape: got %v, want a ShapeError naming both shapes", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Consolidate(ctx, digitsLoRA(t), seq.Tasks[0].Data); !errors.Is(err, context.Canceled) || e.Tasks() != 0 {
		t.Errorf("cancelled Consolidate: %v, %d tasks", err, e.Tasks())
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("EWC-LoRA")
	if !ok || m.Kind != peft.HookMethod || !strings.Contains(m.Paper, "2305.10626") {
		t.Errorf("LookupMethod(EWC-LoRA) = %v, %v", m, ok)
	}
}
