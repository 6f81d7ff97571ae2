package peft

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// This file is the continual-learning lab: a sequence of tasks learned one
// after another by the same model, and the accuracy matrix that measures
// what each new task makes the model forget (Lopez-Paz & Ranzato 2017,
// "Gradient Episodic Memory for Continual Learning", arXiv:1706.08840;
// Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning",
// arXiv:1801.10112, for the forgetting measure).
//
// A continual method (OSF, EWC-LoRA, CoSO, …) takes part through
// ContinualMethod: it is told before and after each task, so that it can
// set the optimizer or hooks the task trains with and record what the task
// learned (a Fisher information, protected subspaces).

// ContinualTask is one task of a ContinualSequence.
type ContinualTask struct {
	Name string  // the task's label ("digits 2,3", "sotu")
	Data Dataset // its training and evaluation data
	// Classes are the labels the task holds, for a classification task
	// (nil otherwise). ContinualConfig.TaskIncremental evaluates the task
	// with the prediction restricted to them.
	Classes []int
}

// ContinualSequence is a list of tasks a model learns in order.
type ContinualSequence struct {
	Name  string
	Tasks []ContinualTask
}

// DigitsSequence returns the digits (see DigitsData, split with evalFrac
// and seed) as one task per group of classes, in order: groups {0,1},
// {2,3}, … make the usual "split digits" benchmark, groups {0…4}, {5…9} two
// tasks of five classes. Every task keeps the ten-way labels, so a model
// with one ten-way head learns them class-incrementally. It panics with an
// ArgError if a group is empty, a class is outside 0…9, or a class is in
// two groups.
func DigitsSequence(evalFrac float64, seed int64, groups ...[]int) *ContinualSequence {
	if len(groups) == 0 {
		panic(ArgError{Op: "DigitsSequence", Msg: "no group of classes; want at least one, e.g. []int{0, 1}, []int{2, 3}"})
	}
	seen := map[int]int{}
	s := &ContinualSequence{Name: "split digits"}
	for gi, g := range groups {
		if len(g) == 0 {
			panic(ArgError{Op: "DigitsSequence", Msg: fmt.Sprintf("group %d is empty", gi)})
		}
		names := make([]string, len(g))
		for i, c := range g {
			if c < 0 || c > 9 {
				panic(ArgError{Op: "DigitsSequence", Msg: fmt.Sprintf("group %d: class %d outside 0…9", gi, c)})
			}
			if prev, ok := seen[c]; ok {
				panic(ArgError{Op: "DigitsSequence", Msg: fmt.Sprintf("class %d is in groups %d and %d", c, prev, gi)})
			}
			seen[c] = gi
			names[i] = fmt.Sprint(c)
		}
		s.Tasks = append(s.Tasks, ContinualTask{
			Name:    "digits " + strings.Join(names, ","),
			Data:    DigitsData(evalFrac, seed, g...),
			Classes: append([]int(nil), g...),
		})
	}
	return s
}

// SplitDigits returns DigitsSequence with the classes 0…9 cut in order into
// groups of size (the last group takes what remains): size 2 gives the five
// tasks {0,1}, {2,3}, {4,5}, {6,7}, {8,9}.
func SplitDigits(evalFrac float64, seed int64, size int) *ContinualSequence {
	if size < 1 || size > 10 {
		panic(ArgError{Op: "SplitDigits", Msg: fmt.Sprintf("size = %d; want 1 ≤ size ≤ 10", size)})
	}
	var groups [][]int
	for c := 0; c < 10; c += size {
		var g []int
		for k := c; k < min(c+size, 10); k++ {
			g = append(g, k)
		}
		groups = append(groups, g)
	}
	return DigitsSequence(evalFrac, seed, groups...)
}

// TextSequence returns the shipped texts named (see Texts; "moby-dick" then
// "sotu" when none is named) as language-modelling domains in order, each
// with windows of T tokens and its last evalFrac held out (NewTextData).
func TextSequence(T int, evalFrac float64, names ...string) (*ContinualSequence, error) {
	if len(names) == 0 {
		names = []string{"moby-dick", "sotu"}
	}
	s := &ContinualSequence{Name: "text domains"}
	for _, n := range names {
		d, err := NewTextData(n, T, evalFrac)
		if err != nil {
			return nil, err
		}
		s.Tasks = append(s.Tasks, ContinualTask{Name: n, Data: d})
	}
	return s, nil
}

// ContinualMethod is a continual-learning method's part in RunContinual,
// besides the optimizer and hooks of each task's training.
type ContinualMethod interface {
	// BeforeTask is called before task (from 0) is trained, with the
	// configuration it will be trained with; it returns the configuration to
	// use, typically with the method's Optimizer or Hooks set.
	BeforeTask(ctx context.Context, m Model, task int, cfg TrainConfig) (TrainConfig, error)
	// AfterTask is called once task is trained, before the evaluations,
	// with the task's data: a method records here what the task learned
	// (EWC's Fisher information, OSF's protected singular vectors).
	AfterTask(ctx context.Context, m Model, task int, data Dataset) error
}

// ContinualFuncs is a ContinualMethod made of functions, for a method
// written in a notebook cell; a nil function does nothing.
type ContinualFuncs struct {
	Before func(ctx context.Context, m Model, task int, cfg TrainConfig) (TrainConfig, error)
	After  func(ctx context.Context, m Model, task int, data Dataset) error
}

// BeforeTask calls f.Before, if set.
func (f ContinualFuncs) BeforeTask(ctx context.Context, m Model, task int, cfg TrainConfig) (TrainConfig, error) {
	if f.Before == nil {
		return cfg, nil
	}
	return f.Before(ctx, m, task, cfg)
}

// AfterTask calls f.After, if set.
func (f ContinualFuncs) AfterTask(ctx context.Context, m Model, task int, data Dataset) error {
	if f.After == nil {
		return nil
	}
	return f.After(ctx, m, task, data)
}

// ContinualConfig configures RunContinual.
type ContinualConfig struct {
	// Train is each task's training configuration; task i trains with
	// Seed + i, so tasks draw different minibatches, and with Name set to
	// the task's if empty.
	Train TrainConfig
	// Method takes part before and after every task; nil is plain
	// sequential fine-tuning (the baseline that forgets).
	Method ContinualMethod
	// TaskIncremental evaluates a classification task with the prediction
	// restricted to the task's own Classes (the "task-incremental" setting,
	// in which the task's identity is known at test time), for models with
	// a Forward(x) giving logits (MLP). Otherwise the prediction is over all
	// classes ("class-incremental"), the harder setting.
	TaskIncremental bool
	// Callback, if set, is called after each task's evaluations with the
	// result so far (rows 0…task of R filled).
	Callback func(task int, r *ContinualResult)
}

// ContinualResult is what RunContinual measured. With T tasks, R and Loss
// are T×T: row i after training task i, column j evaluated on task j
// (columns j > i measure transfer to tasks not yet trained).
type ContinualResult struct {
	Tasks      []string    // the tasks' names
	MetricName string      // what R holds: "accuracy", "bits/char", or "loss"
	Higher     bool        // whether a higher metric is better (accuracy)
	Initial    []float64   // the metric on each task before any training
	R          [][]float64 // R[i][j]: the metric on task j after training task i
	Loss       [][]float64 // Loss[i][j]: the evaluation loss, likewise
	Histories  []*History  // each task's training history
}

// Average returns the mean of the last row of R: the metric averaged over
// every task once all are trained (average accuracy).
func (r *ContinualResult) Average() float64 { return ContinualAverage(r.R) }

// Forgetting returns ContinualForgetting of R: how much, on average, the
// earlier tasks lost by the end (positive: forgotten).
func (r *ContinualResult) Forgetting() float64 { return ContinualForgetting(r.R, r.Higher) }

// BackwardTransfer returns the mean over the earlier tasks j < T−1 of
// R[T−1][j] − R[j][j] (Lopez-Paz & Ranzato), sign-flipped for a metric where
// lower is better: negative when learning later tasks hurt earlier ones.
func (r *ContinualResult) BackwardTransfer() float64 {
	T := len(r.R)
	if T < 2 {
		return 0
	}
	s := 0.0
	for j := 0; j < T-1; j++ {
		d := r.R[T-1][j] - r.R[j][j]
		if !r.Higher {
			d = -d
		}
		s += d
	}
	return s / float64(T-1)
}

// String returns R as a table, with the average and the forgetting.
func (r *ContinualResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s", "trained \\ on")
	for _, n := range r.Tasks {
		fmt.Fprintf(&b, " %12.12s", n)
	}
	b.WriteByte('\n')
	for i, row := range r.R {
		fmt.Fprintf(&b, "%-14.14s", r.Tasks[i])
		for _, v := range row {
			fmt.Fprintf(&b, " %12.4f", v)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "average %s %.4f, forgetting %.4f", r.MetricName, r.Average(), r.Forgetting())
	return b.String()
}

// ContinualAverage returns the mean of the last row of R (T×T).
func ContinualAverage(R [][]float64) float64 {
	if len(R) == 0 {
		return math.NaN()
	}
	last := R[len(R)-1]
	s := 0.0
	for _, v := range last {
		s += v
	}
	return s / float64(len(last))
}

// ContinualForgetting returns the average forgetting of the T×T matrix R
// (Chaudhry et al. 2018): for each task j < T−1, the best metric it had
// after any earlier training stage, max over l < T−1 of R[l][j], minus its
// final R[T−1][j]; averaged over those T−1 tasks. For a metric where lower
// is better (higher false: a loss, bits/char) the best is the minimum and
// the difference is final − best, so forgetting is positive when a task got
// worse either way. It is 0 for fewer than two tasks. It panics with a
// ShapeError if R is not square.
func ContinualForgetting(R [][]float64, higher bool) float64 {
	T := len(R)
	for i, row := range R {
		if len(row) != T {
			panic(ShapeError{Op: "ContinualForgetting", Got: fmt.Sprintf("row %d of length %d", i, len(row)), Want: fmt.Sprintf("(%d×%d)", T, T)})
		}
	}
	if T < 2 {
		return 0
	}
	s := 0.0
	for j := 0; j < T-1; j++ {
		best := R[0][j]
		for l := 1; l < T-1; l++ {
			if (higher && R[l][j] > best) || (!higher && R[l][j] < best) {
				best = R[l][j]
			}
		}
		if higher {
			s += best - R[T-1][j]
		} else {
			s += R[T-1][j] - best
		}
	}
	return s / float64(T-1)
}

// RunContinual trains m on the tasks of seq one after another with
// cfg.Train (see Train), the method cfg.Method told before and after each
// task, and evaluates m on every task before any training and after each:
// the result's R[i][j] is the metric on task j after training task i. The
// metric is the model's (accuracy for an MLP, bits/char for a GPT; the
// loss if it has none). The same model, sequence and config give the same
// result.
//
// When ctx is cancelled RunContinual stops and returns the result so far
// (the rows of the tasks completed) with an error wrapping ctx's; so it
// does with the error of a task's training or of the method.
func RunContinual(ctx context.Context, m Model, seq *ContinualSequence, cfg ContinualConfig) (*ContinualResult, error) {
	if seq == nil || len(seq.Tasks) == 0 {
		return nil, fmt.Errorf("peft: RunContinual: the sequence has no task")
	}
	for i, t := range seq.Tasks {
		if t.Data == nil {
			return nil, fmt.Errorf("peft: RunContinual: task %d (%q) has no Data", i, t.Name)
		}
	}
	res := &ContinualResult{MetricName: "loss"}
	if mm, ok := m.(Metricer); ok {
		res.MetricName = mm.MetricName()
	}
	res.Higher = res.MetricName == "accuracy"
	for _, t := range seq.Tasks {
		res.Tasks = append(res.Tasks, t.Name)
	}
	evalAll := func() (metric, loss []float64, err error) {
		m.SetTraining(false)
		for _, t := range seq.Tasks {
			l, mt, err := continualEval(ctx, m, t, cfg.TaskIncremental)
			if err != nil {
				return nil, nil, err
			}
			if res.MetricName == "loss" {
				mt = l
			}
			metric, loss = append(metric, mt), append(loss, l)
		}
		return metric, loss, nil
	}
	var err error
	if res.Initial, _, err = evalAll(); err != nil {
		return res, fmt.Errorf("peft: RunContinual: evaluating before training: %w", err)
	}
	for i, t := range seq.Tasks {
		tc := cfg.Train
		tc.Seed += int64(i)
		if tc.Name == "" {
			tc.Name = t.Name
		}
		if cfg.Method != nil {
			if tc, err = cfg.Method.BeforeTask(ctx, m, i, tc); err != nil {
				return res, fmt.Errorf("peft: RunContinual: before task %d (%q): %w", i, t.Name, err)
			}
		}
		h, err := Train(ctx, m, t.Data, tc)
		res.Histories = append(res.Histories, h)
		if err != nil {
			return res, fmt.Errorf("peft: RunContinual: task %d (%q): %w", i, t.Name, err)
		}
		if cfg.Method != nil {
			if err := cfg.Method.AfterTask(ctx, m, i, t.Data); err != nil {
				return res, fmt.Errorf("peft: RunContinual: after task %d (%q): %w", i, t.Name, err)
			}
		}
		metric, loss, err := evalAll()
		if err != nil {
			return res, fmt.Errorf("peft: RunContinual: evaluating after task %d (%q): %w", i, t.Name, err)
		}
		res.R, res.Loss = append(res.R, metric), append(res.Loss, loss)
		if cfg.Callback != nil {
			cfg.Callback(i, res)
		}
	}
	return res, nil
}

// logitModel is a classifier whose Forward gives logits (MLP).
type logitModel interface {
	Forward(x *Tensor) *Tensor
}

// continualEval returns m's evaluation loss and metric on task t; with
// taskIL and a classifier, the accuracy counts the argmax over t.Classes
// alone.
func continualEval(ctx context.Context, m Model, t ContinualTask, taskIL bool) (loss, metric float64, err error) {
	lm, ok := m.(logitModel)
	if !taskIL || !ok || len(t.Classes) == 0 {
		return Evaluate(ctx, m, t.Data)
	}
	bs := t.Data.EvalBatches()
	if len(bs) == 0 {
		return math.NaN(), math.NaN(), nil
	}
	total, correct := 0, 0
	for _, b := range bs {
		if err := ctx.Err(); err != nil {
			return math.NaN(), math.NaN(), err
		}
		logits := lm.Forward(NewConst(b.X))
		w := b.Size()
		loss += float64(w) * CrossEntropy(logits, b.Labels).Scalar()
		_, c := logits.Dims()
		for r, y := range b.Labels {
			row := logits.Value.RawRowView(r)
			best := -1
			for _, k := range t.Classes {
				if k < c && (best < 0 || row[k] > row[best]) {
					best = k
				}
			}
			if best == y {
				correct++
			}
		}
		total += w
	}
	return loss / float64(total), float64(correct) / float64(total), nil
}
