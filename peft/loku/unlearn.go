package loku

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/gopeft/gopeft/peft"
)

// Logitser is a model that gives its logits (n×V) for a batch and the
// targets (n) they predict. Unlearn and Evaluate also take *peft.MLP (class
// logits against Batch.Labels) and *peft.GPT (next-token logits against
// Batch.Targets) as they are.
type Logitser interface {
	Logits(b peft.Batch) (logits *peft.Tensor, targets []int)
}

// logitsFunc returns how to get m's logits and targets, or an error if m is
// none of the models that have them.
func logitsFunc(m peft.Model) (func(b peft.Batch) (*peft.Tensor, []int), error) {
	switch mm := m.(type) {
	case Logitser:
		return mm.Logits, nil
	case *peft.MLP:
		return func(b peft.Batch) (*peft.Tensor, []int) { return mm.Forward(peft.NewConst(b.X)), b.Labels }, nil
	case *peft.GPT:
		return func(b peft.Batch) (*peft.Tensor, []int) { return mm.Forward(b.Tokens, b.Seqs), b.Targets }, nil
	}
	return nil, fmt.Errorf("peft: loku: model %T gives no logits: want a *peft.MLP, a *peft.GPT or a loku.Logitser", m)
}

// UnlearnConfig configures Unlearn.
type UnlearnConfig struct {
	// Loss on the forget set: "IHL" (the default when empty), the inverted
	// hinge loss, or "GA", gradient ascent: −CE, the baseline.
	Loss string
	// RetainWeight is λ on the retain set's cross-entropy, ≥ 0; 1 if 0.
	// Pass a nil retain set to Unlearn for no retain term.
	RetainWeight float64
	Steps        int     // optimizer steps, ≥ 1
	BatchSize    int     // forget examples (sequences for text) per step, ≥ 1
	RetainBatch  int     // retain examples per step; BatchSize if 0
	LR           float64 // peak learning rate, > 0
	WarmupSteps  int     // linear warm-up over these steps, in [0, Steps]
	Schedule     string  // after warm-up: "cosine" (default) to MinLR, or "constant"
	MinLR        float64 // the cosine schedule's final rate, in [0, LR]
	WeightDecay  float64 // λ of the default AdamW, ≥ 0
	ClipNorm     float64 // clip the global gradient norm to this if > 0
	// Optimizer updates the trainable parameters; NewAdamW(WeightDecay) if
	// nil.
	Optimizer peft.Optimizer
	Every     int // call Callback every this many steps and at the last (1 if 0)
	// Callback is called with the step just done and the history so far.
	Callback func(step int, h *peft.History)
	Seed     int64  // seeds the minibatch sampling
	Name     string // the History's label
}

// check returns cfg with its defaults filled in, or an error naming the
// field and its value.
func (cfg UnlearnConfig) check() (UnlearnConfig, error) {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: loku.UnlearnConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.Loss != "" && cfg.Loss != "IHL" && cfg.Loss != "GA":
		return cfg, bad("Loss", fmt.Sprintf("%q", cfg.Loss), `"IHL" or "GA"`)
	case cfg.RetainWeight < 0 || math.IsNaN(cfg.RetainWeight) || math.IsInf(cfg.RetainWeight, 0):
		return cfg, bad("RetainWeight", cfg.RetainWeight, "a finite λ ≥ 0 (0: 1)")
	case cfg.Steps < 1:
		return cfg, bad("Steps", cfg.Steps, "≥ 1")
	case cfg.BatchSize < 1:
		return cfg, bad("BatchSize", cfg.BatchSize, "≥ 1")
	case cfg.RetainBatch < 0:
		return cfg, bad("RetainBatch", cfg.RetainBatch, "≥ 1 (0: BatchSize)")
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return cfg, bad("LR", cfg.LR, "a finite rate > 0")
	case cfg.WarmupSteps < 0 || cfg.WarmupSteps > cfg.Steps:
		return cfg, bad("WarmupSteps", cfg.WarmupSteps, fmt.Sprintf("in [0, Steps = %d]", cfg.Steps))
	case cfg.Schedule != "" && cfg.Schedule != "cosine" && cfg.Schedule != "constant":
		return cfg, bad("Schedule", fmt.Sprintf("%q", cfg.Schedule), `"cosine" or "constant"`)
	case cfg.MinLR < 0 || cfg.MinLR > cfg.LR:
		return cfg, bad("MinLR", cfg.MinLR, fmt.Sprintf("in [0, LR = %g]", cfg.LR))
	case cfg.WeightDecay < 0 || math.IsNaN(cfg.WeightDecay):
		return cfg, bad("WeightDecay", cfg.WeightDecay, "≥ 0")
	case cfg.ClipNorm < 0 || math.IsNaN(cfg.ClipNorm):
		return cfg, bad("ClipNorm", cfg.ClipNorm, "≥ 0 (0: no clipping)")
	case cfg.Every < 0:
		return cfg, bad("Every", cfg.Every, "≥ 0")
	}
	if cfg.Loss == "" {
		cfg.Loss = "IHL"
	}
	if cfg.RetainWeight == 0 {
		cfg.RetainWeight = 1
	}
	if cfg.RetainBatch == 0 {
		cfg.RetainBatch = cfg.BatchSize
	}
	if cfg.Every == 0 {
		cfg.Every = 1
	}
	return cfg, nil
}

// Unlearn trains m's trainable parameters (LoRA adapters from Add, or the
// whole model) to forget forget while keeping retain. Each step draws a
// minibatch from each and minimizes
//
//	L = IHL(forget batch) + λ·CE(retain batch)      Loss "IHL"
//	L = −CE(forget batch) + λ·CE(retain batch)      Loss "GA", the baseline
//
// with λ = cfg.RetainWeight, the learning-rate schedule of peft.Train and
// AdamW by default. retain may be nil: no retain term (plain IHL, or the
// plain gradient ascent of the paper's baseline). It returns the history
// of L; measure the result with Evaluate or Measure.
//
// m must give logits (a *peft.MLP, a *peft.GPT or a Logitser). When ctx is
// cancelled Unlearn stops before the next step and returns the history so
// far with an error wrapping ctx's; a NaN or infinite loss or gradient
// stops it with an error naming the step. m is in training mode during the
// run and in evaluation mode after.
func Unlearn(ctx context.Context, m peft.Model, forget, retain peft.Dataset, cfg UnlearnConfig) (*peft.History, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	if forget == nil {
		return nil, fmt.Errorf("peft: loku.Unlearn: no forget set")
	}
	logits, err := logitsFunc(m)
	if err != nil {
		return nil, err
	}
	params := peft.TrainableOf(m)
	if len(params) == 0 {
		return nil, fmt.Errorf("peft: loku.Unlearn: the model has no trainable parameter")
	}
	opt := cfg.Optimizer
	if opt == nil {
		opt = peft.NewAdamW(cfg.WeightDecay)
	}
	if co, ok := opt.(peft.ContextOptimizer); ok {
		co.SetContext(ctx)
		defer co.SetContext(context.Background())
	}
	sched := peft.TrainConfig{Steps: cfg.Steps, LR: cfg.LR, WarmupSteps: cfg.WarmupSteps, Schedule: cfg.Schedule, MinLR: cfg.MinLR}
	name := cfg.Name
	if name == "" {
		name = "LoKU " + cfg.Loss
	}
	h := &peft.History{Name: name}
	rng := rand.New(rand.NewSource(cfg.Seed))
	m.SetTraining(true)
	defer m.SetTraining(false)
	items := 0
	for step := 1; step <= cfg.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return h, fmt.Errorf("peft: loku.Unlearn stopped before step %d: %w", step, err)
		}
		start := time.Now()
		fb := forget.Sample(rng, cfg.BatchSize)
		for _, p := range params {
			p.Grad = nil
		}
		z, t := logits(fb)
		var loss *peft.Tensor
		if cfg.Loss == "IHL" {
			loss = IHL(z, t)
		} else {
			loss = peft.Scale(peft.CrossEntropy(z, t), -1)
		}
		items += fb.Items()
		if retain != nil {
			rb := retain.Sample(rng, cfg.RetainBatch)
			zr, tr := logits(rb)
			loss = peft.Add(loss, peft.Scale(peft.CrossEntropy(zr, tr), cfg.RetainWeight))
			items += rb.Items()
		}
		lv := loss.Scalar()
		if math.IsNaN(lv) || math.IsInf(lv, 0) {
			return h, fmt.Errorf("peft: loku.Unlearn step %d: the loss is %v", step, lv)
		}
		loss.Backward()
		norm2 := 0.0
		for _, p := range params {
			if p.Grad == nil {
				continue
			}
			r, c := p.Dims()
			for i := 0; i < r; i++ {
				for j := 0; j < c; j++ {
					g := p.Grad.At(i, j)
					if math.IsNaN(g) || math.IsInf(g, 0) {
						return h, fmt.Errorf("peft: loku.Unlearn step %d: the gradient of %s %s is %v at (%d, %d)", step, p.Name, peft.ShapeOf(r, c), g, i, j)
					}
					norm2 += g * g
				}
			}
		}
		if cfg.ClipNorm > 0 && math.Sqrt(norm2) > cfg.ClipNorm {
			f := cfg.ClipNorm / math.Sqrt(norm2)
			for _, p := range params {
				if p.Grad != nil {
					p.Grad.Scale(f, p.Grad)
				}
			}
		}
		lr := peft.LRAt(sched, step)
		if err := peft.Maybe(func() { opt.Step(params, lr) }); err != nil {
			return h, fmt.Errorf("peft: loku.Unlearn step %d: %w", step, err)
		}
		h.Steps = append(h.Steps, step)
		h.Tokens = append(h.Tokens, items)
		h.Loss = append(h.Loss, lv)
		h.LR = append(h.LR, lr)
		h.StepTime = append(h.StepTime, time.Since(start).Seconds())
		if cfg.Callback != nil && (step%cfg.Every == 0 || step == cfg.Steps) {
			cfg.Callback(step, h)
		}
	}
	return h, nil
}

// Metrics is how a model does on one set, averaged over its predictions
// (rows for a classifier, tokens for a language model).
type Metrics struct {
	Loss     float64 // cross-entropy, nats
	Accuracy float64 // top-1 accuracy of the logits against the targets
	IHL      float64 // inverted hinge loss, in [0, 2]
	N        int     // predictions counted
}

// Evaluate returns m's metrics on batches, with m as it is (call
// SetTraining(false) first for evaluation behaviour). m must give logits,
// as for Unlearn. Cancelling ctx stops it between batches with ctx's
// error.
func Evaluate(ctx context.Context, m peft.Model, batches []peft.Batch) (Metrics, error) {
	logits, err := logitsFunc(m)
	if err != nil {
		return Metrics{}, err
	}
	var out Metrics
	for _, b := range batches {
		if err := ctx.Err(); err != nil {
			return Metrics{}, err
		}
		z, t := logits(b)
		n := len(t)
		out.Loss += float64(n) * peft.CrossEntropy(z, t).Scalar()
		out.IHL += float64(n) * IHL(z, t).Scalar()
		for i, ti := range t {
			row := z.Value.RawRowView(i)
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			if best == ti {
				out.Accuracy++
			}
		}
		out.N += n
	}
	if out.N == 0 {
		return Metrics{}, fmt.Errorf("peft: loku.Evaluate: no predictions in %d batches", len(batches))
	}
	out.Loss /= float64(out.N)
	out.IHL /= float64(out.N)
	out.Accuracy /= float64(out.N)
	return out, nil
}

// Report is a model's metrics on the forget and the retain set.
type Report struct {
	Forget, Retain Metrics
}

func (r Report) String() string {
	return fmt.Sprintf("forget: acc %.3f loss %.3f IHL %.3f | retain: acc %.3f loss %.3f",
		r.Forget.Accuracy, r.Forget.Loss, r.Forget.IHL, r.Retain.Accuracy, r.Retain.Loss)
}

// Measure evaluates m on the evaluation batches (Dataset.EvalBatches) of
// forget and of retain. It puts m in evaluation mode and leaves it there.
// Errors are Evaluate's.
func Measure(ctx context.Context, m peft.Model, forget, retain peft.Dataset) (Report, error) {
	m.SetTraining(false)
	f, err := Evaluate(ctx, m, forget.EvalBatches())
	if err != nil {
		return Report{}, fmt.Errorf("peft: loku.Measure: forget set: %w", err)
	}
	r, err := Evaluate(ctx, m, retain.EvalBatches())
	if err != nil {
		return Report{}, fmt.Errorf("peft: loku.Measure: retain set: %w", err)
	}
	return Report{Forget: f, Retain: r}, nil
}
