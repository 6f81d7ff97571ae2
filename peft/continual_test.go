package peft_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
)

// continualCfg is the per-task training of the digits tests: 60 AdamW steps
// of 32 rows at 3e-3, cosine-decayed.
var continualCfg = peft.TrainConfig{Steps: 60, BatchSize: 32, LR: 3e-3, Seed: 1}

func TestContinualForgettingKnownAnswer(t *testing.T) {
	// R[i][j]: accuracy on task j after training task i.
	R := [][]float64{
		{0.9, 0.1, 0.0},
		{0.5, 0.8, 0.2},
		{0.3, 0.6, 0.7},
	}
	// task 0: best 0.9, final 0.3; task 1: best 0.8, final 0.6.
	if got, want := peft.ContinualForgetting(R, true), ((0.9-0.3)+(0.8-0.6))/2; math.Abs(got-want) > 1e-15 {
		t.Errorf("forgetting = %v, want %v", got, want)
	}
	if got, want := peft.ContinualAverage(R), (0.3+0.6+0.7)/3; math.Abs(got-want) > 1e-15 {
		t.Errorf("average = %v, want %v", got, want)
	}
	r := &peft.ContinualResult{Tasks: []string{"a", "b", "c"}, R: R, Higher: true, MetricName: "accuracy"}
	if got, want := r.BackwardTransfer(), ((0.3-0.9)+(0.6-0.8))/2; math.Abs(got-want) > 1e-15 {
		t.Errorf("backward transfer = %v, want %v", got, want)
	}
	// A loss (lower is better): the best is the minimum over rows 0…T−2.
	L := [][]float64{
		{1.0, 3.0, 3.0},
		{1.5, 0.5, 3.0},
		{2.5, 1.0, 0.4},
	}
	if got, want := peft.ContinualForgetting(L, false), ((2.5-1.0)+(1.0-0.5))/2; math.Abs(got-want) > 1e-15 {
		t.Errorf("loss forgetting = %v, want %v", got, want)
	}
	// The best may come after the task's own row (a later task helped it):
	// column 0 peaks at R[1][0] = 0.9.
	R3 := [][]float64{
		{0.6, 0.0, 0.0},
		{0.9, 0.8, 0.0},
		{0.5, 0.7, 0.9},
	}
	if got, want := peft.ContinualForgetting(R3, true), ((0.9-0.5)+(0.8-0.7))/2; math.Abs(got-want) > 1e-15 {
		t.Errorf("later best: forgetting = %v, want %v", got, want)
	}
	if got := peft.ContinualForgetting([][]float64{{0.7}}, true); got != 0 {
		t.Errorf("one task: forgetting = %v, want 0", got)
	}
	err := peft.Maybe(func() { peft.ContinualForgetting([][]float64{{1, 2}, {3}}, true) })
	var se peft.ShapeError
	if !errors.As(err, &se) {
		t.Errorf("a ragged R: got %v, want a ShapeError", err)
	}
}

func TestDigitsSequence(t *testing.T) {
	s := peft.SplitDigits(0.25, 0, 2)
	if len(s.Tasks) != 5 || s.Tasks[2].Name != "digits 4,5" {
		t.Fatalf("SplitDigits(2): %d tasks, third %q; want 5, \"digits 4,5\"", len(s.Tasks), s.Tasks[2].Name)
	}
	for i, task := range s.Tasks {
		c := task.Data.(*peft.Classification)
		for _, y := range append(append([]int(nil), c.Labels...), c.EvalLabels...) {
			if y != 2*i && y != 2*i+1 {
				t.Fatalf("task %d holds label %d", i, y)
			}
		}
	}
	for _, groups := range [][][]int{{}, {{0, 1}, {}}, {{0, 10}}, {{0, 1}, {1, 2}}} {
		err := peft.Maybe(func() { peft.DigitsSequence(0.25, 0, groups...) })
		var ae peft.ArgError
		if !errors.As(err, &ae) {
			t.Errorf("DigitsSequence(%v): got %v, want an ArgError", groups, err)
		}
	}
}

func TestRunContinualShapeAndDeterminism(t *testing.T) {
	run := func() *peft.ContinualResult {
		m := peft.NewMLP([]int{64, 16, 10}, 3)
		var calls []string
		cfg := peft.ContinualConfig{
			Train: peft.TrainConfig{Steps: 5, BatchSize: 16, LR: 1e-2, Seed: 2},
			Method: peft.ContinualFuncs{
				Before: func(ctx context.Context, m peft.Model, task int, c peft.TrainConfig) (peft.TrainConfig, error) {
					calls = append(calls, fmt.Sprintf("before %d seed %d", task, c.Seed))
					return c, nil
				},
				After: func(ctx context.Context, m peft.Model, task int, d peft.Dataset) error {
					calls = append(calls, fmt.Sprintf("after %d", task))
					return nil
				},
			},
		}
		res, err := peft.RunContinual(context.Background(), m, peft.SplitDigits(0.25, 0, 4), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(calls, "; "); got != "before 0 seed 2; after 0; before 1 seed 3; after 1; before 2 seed 4; after 2" {
			t.Errorf("method calls: %s", got)
		}
		return res
	}
	a, b := run(), run()
	if len(a.R) != 3 || len(a.Loss) != 3 || len(a.Initial) != 3 || len(a.Histories) != 3 {
		t.Fatalf("3 tasks: R %d rows, Loss %d, Initial %d, Histories %d", len(a.R), len(a.Loss), len(a.Initial), len(a.Histories))
	}
	for i := range a.R {
		if len(a.R[i]) != 3 || len(a.Loss[i]) != 3 {
			t.Fatalf("row %d: R %d, Loss %d columns, want 3", i, len(a.R[i]), len(a.Loss[i]))
		}
		for j := range a.R[i] {
			if a.R[i][j] != b.R[i][j] || a.Loss[i][j] != b.Loss[i][j] {
				t.Fatalf("R[%d][%d] differs between two runs: %v, %v", i, j, a.R[i][j], b.R[i][j])
			}
		}
	}
	if a.MetricName != "accuracy" || !a.Higher {
		t.Errorf("metric %q higher=%v, want accuracy, true", a.MetricName, a.Higher)
	}
}

// TestContinualPlainForgets: sequential fine-tuning of a fresh MLP on the
// five split-digits pairs forgets (measured: 0.76 class-incremental, 0.28
// task-incremental), and the task-incremental accuracy is never below the
// class-incremental one (restricting the argmax can only help).
func TestContinualPlainForgets(t *testing.T) {
	run := func(til bool) *peft.ContinualResult {
		m := peft.NewMLP([]int{64, 64, 10}, 1)
		res, err := peft.RunContinual(context.Background(), m, peft.SplitDigits(0.25, 0, 2), peft.ContinualConfig{Train: continualCfg, TaskIncremental: til})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	ci, ti := run(false), run(true)
	t.Logf("class-incremental:\n%s", ci)
	t.Logf("task-incremental:\n%s", ti)
	if f := ci.Forgetting(); !(f > 0.3) {
		t.Errorf("class-incremental forgetting %.3f, want > 0.3", f)
	}
	if f := ti.Forgetting(); !(f > 0.1) {
		t.Errorf("task-incremental forgetting %.3f, want > 0.1", f)
	}
	for i := range ci.R {
		for j := range ci.R[i] {
			if ti.R[i][j] < ci.R[i][j] {
				t.Errorf("R[%d][%d]: task-incremental %.4f below class-incremental %.4f", i, j, ti.R[i][j], ci.R[i][j])
			}
			if ti.Loss[i][j] != ci.Loss[i][j] {
				t.Errorf("Loss[%d][%d]: %v and %v; the loss does not depend on the setting", i, j, ti.Loss[i][j], ci.Loss[i][j])
			}
		}
	}
}

func TestContinualTextDomains(t *testing.T) {
	seq, err := peft.TextSequence(32, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq.Tasks) != 2 || seq.Tasks[0].Name != "moby-dick" || seq.Tasks[1].Name != "sotu" {
		t.Fatalf("tasks %v", seq.Tasks)
	}
	for _, task := range seq.Tasks {
		d := task.Data.(*peft.TextData)
		d.EvalSeqs, d.EvalBatch = 8, 8
	}
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	res, err := peft.RunContinual(context.Background(), g, seq, peft.ContinualConfig{
		Train: peft.TrainConfig{Steps: 30, BatchSize: 8, LR: 3e-3, Seed: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res)
	if res.MetricName != "bits/char" || res.Higher {
		t.Fatalf("metric %q higher=%v, want bits/char, false", res.MetricName, res.Higher)
	}
	// the GPT was pretrained on Moby-Dick: the State of the Union improves
	// with training on it, and Moby-Dick gets worse.
	if !(res.R[1][1] < res.R[0][1]) {
		t.Errorf("sotu: %.3f bits/char after training on it, %.3f before", res.R[1][1], res.R[0][1])
	}
	if f := res.Forgetting(); !(f > 0) || f != res.R[1][0]-res.R[0][0] {
		t.Errorf("forgetting %.4f, want R[1][0] − R[0][0] = %.4f > 0", f, res.R[1][0]-res.R[0][0])
	}
	if _, err := peft.TextSequence(32, 0.05, "nope"); err == nil {
		t.Error("TextSequence of an unknown text: no error")
	}
}

func TestRunContinualCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := peft.RunContinual(ctx, peft.NewMLP([]int{64, 8, 10}, 1), peft.SplitDigits(0.25, 0, 5), peft.ContinualConfig{Train: continualCfg})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want an error wrapping context.Canceled", err)
	}
	if _, err := peft.RunContinual(context.Background(), peft.NewMLP([]int{64, 8, 10}, 1), &peft.ContinualSequence{}, peft.ContinualConfig{Train: continualCfg}); err == nil {
		t.Error("an empty sequence: no error")
	}
}

// ExampleRunContinual learns the digits in two halves, 0–4 then 5–9, by
// plain sequential fine-tuning of an MLP, and prints what learning the
// second half did to the first.
func ExampleRunContinual() {
	m := peft.NewMLP([]int{64, 32, 10}, 1)
	seq := peft.DigitsSequence(0.25, 0, []int{0, 1, 2, 3, 4}, []int{5, 6, 7, 8, 9})
	res, err := peft.RunContinual(context.Background(), m, seq, peft.ContinualConfig{
		Train: peft.TrainConfig{Steps: 100, BatchSize: 32, LR: 3e-3, Seed: 1},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("0–4 after learning 0–4: %.2f, after 5–9: %.2f\n", res.R[0][0], res.R[1][0])
	fmt.Printf("forgetting %.2f\n", res.Forgetting())
	// Output:
	// 0–4 after learning 0–4: 0.95, after 5–9: 0.00
	// forgetting 0.95
}
