package peft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestAdamWMatchesTorch replays torch.optim.AdamW's trajectory stored in
// testdata/adamw_torch.json (made by testdata/adamw_golden.py).
func TestAdamWMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile("testdata/adamw_torch.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Theta0, C   [][]float64
		LR          float64
		WeightDecay float64 `json:"weight_decay"`
		Steps       [][][]float64
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	dense := func(x [][]float64) *mat.Dense {
		m := mat.NewDense(len(x), len(x[0]), nil)
		for i, r := range x {
			m.SetRow(i, r)
		}
		return m
	}
	theta, c := NewParam("θ", dense(g.Theta0)), NewConst(dense(g.C))
	opt := NewAdamW(g.WeightDecay)
	for s, want := range g.Steps {
		theta.Grad = nil
		d := Sub(theta, c)
		Scale(SumAll(Mul(d, d)), 0.5).Backward()
		opt.Step([]*Tensor{theta}, g.LR)
		if !mat.EqualApprox(theta.Value, dense(want), 1e-14) {
			t.Fatalf("step %d: θ =\n%v\nwant (torch)\n%v", s+1, mat.Formatted(theta.Value), mat.Formatted(dense(want)))
		}
	}
	if got := opt.StateBytes(); got != 2*6*8 {
		t.Errorf("StateBytes = %d, want 96", got)
	}
}

func TestSGDMomentum(t *testing.T) {
	p := NewParam("p", mat.NewDense(1, 2, []float64{1, -2}))
	o := &SGD{Momentum: 0.5}
	for s := 0; s < 2; s++ {
		p.Grad = mat.NewDense(1, 2, []float64{1, 1})
		o.Step([]*Tensor{p}, 0.1)
	}
	// v₁ = 1, θ₁ = θ₀ − 0.1; v₂ = 1.5, θ₂ = θ₁ − 0.15.
	if want := []float64{0.75, -2.25}; math.Abs(p.Value.At(0, 0)-want[0]) > 1e-15 || math.Abs(p.Value.At(0, 1)-want[1]) > 1e-15 {
		t.Errorf("θ = %v, want %v", p.Value.RawRowView(0), want)
	}
	if o.StateBytes() != 16 {
		t.Errorf("StateBytes = %d", o.StateBytes())
	}
}

func TestLRSchedule(t *testing.T) {
	cfg := TrainConfig{Steps: 110, LR: 1, WarmupSteps: 10, MinLR: 0.1}
	for _, c := range []struct {
		step int
		want float64
	}{{1, 0.1}, {5, 0.5}, {10, 1}, {60, 0.55}, {110, 0.1}} {
		if got := LRAt(cfg, c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("step %d: lr %g, want %g", c.step, got, c.want)
		}
	}
	cfg.Schedule = "constant"
	if got := LRAt(cfg, 100); got != 1 {
		t.Errorf("constant: %g", got)
	}
}

func smallDigits() *Classification {
	d := DigitsData(0.2, 1)
	d.X, d.Labels = mat.DenseCopyOf(d.X.Slice(0, 300, 0, 64)), d.Labels[:300]
	return d
}

func TestTrainDeterministic(t *testing.T) {
	data := smallDigits()
	run := func(seed int64) (*History, *MLP) {
		m := NewMLP([]int{64, 16, 10}, 1)
		m.Dropout = 0.1
		if _, err := addLowRank(m, lowRank{R: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"fc1", "fc2"}, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		h, err := Train(context.Background(), m, data, TrainConfig{Steps: 30, BatchSize: 16, LR: 1e-2, WarmupSteps: 3, ClipNorm: 1, EvalEvery: 10, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return h, m
	}
	h1, m1 := run(5)
	h2, m2 := run(5)
	h3, _ := run(6)
	for i := range h1.Loss {
		if h1.Loss[i] != h2.Loss[i] {
			t.Fatalf("step %d: loss %v vs %v with the same seed", i+1, h1.Loss[i], h2.Loss[i])
		}
	}
	for i, p := range m1.Params() {
		if !mat.Equal(p.Value, m2.Params()[i].Value) {
			t.Errorf("%s differs between runs with the same seed", p.Name)
		}
	}
	if h1.Loss[29] == h3.Loss[29] {
		t.Error("a different seed gave the same run")
	}
	if len(h1.EvalSteps) != 3 || h1.EvalSteps[2] != 30 || h1.MetricName != "accuracy" || len(h1.StepTime) != 30 || h1.Tokens[29] != 30*16 {
		t.Errorf("history: eval at %v, metric %q, %d times, %v items", h1.EvalSteps, h1.MetricName, len(h1.StepTime), h1.Tokens[29])
	}
}

func TestTrainCancel(t *testing.T) {
	m := NewMLP([]int{64, 8, 10}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	h, err := Train(ctx, m, smallDigits(), TrainConfig{Steps: 100, BatchSize: 8, LR: 1e-3, Every: 1, Callback: func(step int, _ *History) {
		calls++
		if step == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(h.Loss) != 3 || calls != 3 || !strings.Contains(err.Error(), "step 4") {
		t.Errorf("stopped after %d steps (%d callbacks): %v", len(h.Loss), calls, err)
	}
}

// nanHook poisons the loss or a gradient at a given step.
type nanHook struct {
	step  int
	loss  bool
	param *Tensor
}

func (h nanHook) Regularizer(step int) *Tensor {
	if h.loss && step == h.step {
		return NewConst(newScalar(math.NaN()))
	}
	return nil
}
func (h nanHook) AfterBackward(step int) {
	if h.param != nil && step == h.step {
		h.param.Grad.Set(0, 1, math.Inf(1))
	}
}
func (h nanHook) AfterStep(int) error { return nil }

func TestTrainNonFinite(t *testing.T) {
	m := NewMLP([]int{64, 8, 10}, 1)
	cfg := TrainConfig{Steps: 10, BatchSize: 4, LR: 1e-3, Hooks: []Hook{nanHook{step: 4, loss: true}}}
	h, err := Train(context.Background(), m, smallDigits(), cfg)
	if err == nil || !strings.Contains(err.Error(), "step 4") || !strings.Contains(err.Error(), "loss is NaN") || len(h.Loss) != 3 {
		t.Errorf("NaN loss: %v after %d steps", err, len(h.Loss))
	}
	cfg.Hooks = []Hook{nanHook{step: 2, param: m.Layers[1].W}}
	h, err = Train(context.Background(), m, smallDigits(), cfg)
	if err == nil || !strings.Contains(err.Error(), "step 2") || !strings.Contains(err.Error(), "fc2.weight") || !strings.Contains(err.Error(), "+Inf") {
		t.Errorf("Inf gradient: %v after %d steps", err, len(h.Loss))
	}
}

// panicOpt is an SGD whose step panics with err at step n, as GaLore's
// does when an SVD fails.
type panicOpt struct {
	n, calls int
	err      error
}

func (o *panicOpt) Step(params []*Tensor, lr float64) {
	o.calls++
	if o.calls == o.n {
		panic(o.err)
	}
	(&SGD{}).Step(params, lr)
}
func (o *panicOpt) StateBytes() int { return 0 }

// TestTrainOptimizerPanic checks that an optimizer step panicking with an
// error ends Train with an error naming the step, not a crash.
func TestTrainOptimizerPanic(t *testing.T) {
	m := NewMLP([]int{64, 8, 10}, 1)
	bad := errors.New("SVD did not converge")
	opt := &panicOpt{n: 3, err: bad}
	var h *History
	var err error
	if perr := Maybe(func() {
		h, err = Train(context.Background(), m, smallDigits(), TrainConfig{Name: "svd", Steps: 10, BatchSize: 4, LR: 1e-3, Optimizer: opt})
	}); perr != nil {
		t.Fatalf("Train panicked: %v", perr)
	}
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), `peft: training "svd" step 3: `) {
		t.Fatalf("err = %v, want one naming step 3 and wrapping %q", err, bad)
	}
	if h == nil || len(h.Loss) != 2 || opt.calls != 3 {
		t.Errorf("history of %d steps after %d optimizer calls, want 2 and 3", len(h.Loss), opt.calls)
	}
}

func TestTrainConfigErrors(t *testing.T) {
	m := NewMLP([]int{64, 8, 10}, 1)
	ok := TrainConfig{Steps: 2, BatchSize: 2, LR: 1e-3}
	for field, mod := range map[string]func(*TrainConfig){
		"Steps":       func(c *TrainConfig) { c.Steps = 0 },
		"BatchSize":   func(c *TrainConfig) { c.BatchSize = -1 },
		"LR":          func(c *TrainConfig) { c.LR = math.NaN() },
		"WarmupSteps": func(c *TrainConfig) { c.WarmupSteps = 3 },
		"Schedule":    func(c *TrainConfig) { c.Schedule = "linear" },
		"MinLR":       func(c *TrainConfig) { c.MinLR = 1 },
		"ClipNorm":    func(c *TrainConfig) { c.ClipNorm = -1 },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := Train(context.Background(), m, smallDigits(), cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
	FreezeBase(m)
	if _, err := Train(context.Background(), m, smallDigits(), ok); err == nil {
		t.Error("training a fully frozen model succeeded")
	}
}

// TestTeacherRecovery checks the teacher task's lesson: LoRA at rank ≥
// rank(ΔW*) recovers W*, and below it gets no closer than the Eckart–Young
// floor, though close to it.
func TestTeacherRecovery(t *testing.T) {
	task := NewTeacherTask(12, 10, []float64{3, 2, 1}, 200, 1)
	if r := task.RecoveryError(task.Model()); math.Abs(r-1) > 1e-12 {
		t.Fatalf("untrained student's error %g, want 1", r)
	}
	var sv mat.SVD
	sv.Factorize(task.Delta, mat.SVDNone)
	if s := sv.Values(nil); math.Abs(s[0]-3) > 1e-12 || math.Abs(s[2]-1) > 1e-12 || s[3] > 1e-12 {
		t.Fatalf("ΔW* singular values %v, want 3, 2, 1, 0…", s)
	}
	for _, r := range []int{1, 2, 3, 5} {
		m := task.Model()
		if _, err := addLowRank(m, lowRank{R: r, Alpha: float64(r), Targets: []string{"proj"}, Seed: 2}); err != nil {
			t.Fatal(err)
		}
		_, err := Train(context.Background(), m, task, TrainConfig{Steps: 1500, BatchSize: 64, LR: 2e-2, MinLR: 1e-4, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		got, floor := task.RecoveryError(m), task.BestRankError(r)
		t.Logf("r=%d: recovery error %.2e, Eckart–Young floor %.2e", r, got, floor)
		if r >= 3 && got > 1e-3 {
			t.Errorf("r=%d ≥ rank 3: error %.2e, want < 1e-3", r, got)
		}
		if r < 3 && (got < floor-1e-9 || got > floor*1.02) {
			t.Errorf("r=%d < rank 3: error %.4f, want just above the floor %.4f", r, got, floor)
		}
	}
}

func TestFullFineTune(t *testing.T) {
	task := NewTeacherTask(6, 5, []float64{2, 1}, 100, 3)
	m := task.Model()
	if _, err := FullFineTune(context.Background(), m, task, TrainConfig{Steps: 600, BatchSize: 32, LR: 2e-2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if r := task.RecoveryError(m); r > 1e-3 {
		t.Errorf("full fine-tuning recovery error %.2e", r)
	}
	if _, err := addLowRank(m, lowRank{R: 1, Targets: []string{"proj"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := FullFineTune(context.Background(), m, task, TrainConfig{Steps: 1, BatchSize: 1, LR: 1}); err == nil {
		t.Error("FullFineTune accepted a model with an adapter")
	}
}

func TestTrainCallbackAndEval(t *testing.T) {
	task := NewTeacherTask(4, 3, []float64{1}, 50, 1)
	var calls []int
	h, err := Train(context.Background(), task.Model(), task, TrainConfig{Steps: 10, BatchSize: 5, LR: 1e-2, Schedule: "constant", EvalEvery: 4, Every: 3,
		Callback: func(step int, h *History) {
			if len(h.Loss) != step {
				t.Errorf("callback at step %d sees %d losses", step, len(h.Loss))
			}
			calls = append(calls, step)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(calls); got != "[3 6 9 10]" {
		t.Errorf("callbacks at %s, want [3 6 9 10]", got)
	}
	if got := fmt.Sprint(h.EvalSteps); got != "[4 8 10]" {
		t.Errorf("evaluations at %s, want [4 8 10]", got)
	}
	if h.MetricName != "" || !math.IsNaN(h.EvalMetric[0]) || h.EvalLoss[2] >= h.EvalLoss[0] {
		t.Errorf("metric %q %v, eval loss %v", h.MetricName, h.EvalMetric, h.EvalLoss)
	}
	for i, lr := range h.LR {
		if lr != 1e-2 {
			t.Errorf("constant schedule: lr[%d] = %g", i, lr)
		}
	}
}
