package peft

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"time"
)

// TrainConfig configures Train.
type TrainConfig struct {
	Steps       int     // optimizer steps, ≥ 1
	BatchSize   int     // examples (sequences for text) per step, ≥ 1
	LR          float64 // peak learning rate, > 0
	WarmupSteps int     // linear warm-up from LR/WarmupSteps to LR over these steps
	// Schedule after warm-up: "cosine" (the default when empty) decays from
	// LR to MinLR over the remaining steps; "constant" keeps LR.
	Schedule    string
	MinLR       float64   // the cosine schedule's final rate, in [0, LR]
	WeightDecay float64   // λ of the default AdamW optimizer
	ClipNorm    float64   // clip the global gradient norm to this if > 0
	Optimizer   Optimizer // NewAdamW(WeightDecay) if nil
	Hooks       []Hook    // run at every step (AdaLoRA's budget, …)
	EvalEvery   int       // evaluate every this many steps and at the last (0: never)
	Every       int       // call Callback every this many steps and at the last (1 if 0)
	// Callback is called with the step just done and the history so far
	// (for live charts and progress bars).
	Callback func(step int, h *History)
	Seed     int64  // seeds the minibatch sampling
	Name     string // the History's label
}

// LRAt returns the learning rate cfg's schedule gives at step (from 1).
func LRAt(cfg TrainConfig, step int) float64 {
	if cfg.WarmupSteps > 0 && step <= cfg.WarmupSteps {
		return cfg.LR * float64(step) / float64(cfg.WarmupSteps)
	}
	if cfg.Schedule == "constant" {
		return cfg.LR
	}
	span := cfg.Steps - cfg.WarmupSteps
	if span <= 0 {
		return cfg.LR
	}
	p := float64(step-cfg.WarmupSteps) / float64(span) // progress in (0, 1]
	return cfg.MinLR + (cfg.LR-cfg.MinLR)*0.5*(1+math.Cos(math.Pi*p))
}

func (cfg TrainConfig) check() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: TrainConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.Steps < 1:
		return bad("Steps", cfg.Steps, "≥ 1")
	case cfg.BatchSize < 1:
		return bad("BatchSize", cfg.BatchSize, "≥ 1")
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return bad("LR", cfg.LR, "a finite rate > 0")
	case cfg.WarmupSteps < 0 || cfg.WarmupSteps > cfg.Steps:
		return bad("WarmupSteps", cfg.WarmupSteps, fmt.Sprintf("in [0, Steps = %d]", cfg.Steps))
	case cfg.Schedule != "" && cfg.Schedule != "cosine" && cfg.Schedule != "constant":
		return bad("Schedule", fmt.Sprintf("%q", cfg.Schedule), `"cosine" or "constant"`)
	case cfg.MinLR < 0 || cfg.MinLR > cfg.LR:
		return bad("MinLR", cfg.MinLR, fmt.Sprintf("in [0, LR = %g]", cfg.LR))
	case cfg.WeightDecay < 0 || math.IsNaN(cfg.WeightDecay):
		return bad("WeightDecay", cfg.WeightDecay, "≥ 0")
	case cfg.ClipNorm < 0 || math.IsNaN(cfg.ClipNorm):
		return bad("ClipNorm", cfg.ClipNorm, "≥ 0 (0: no clipping)")
	case cfg.EvalEvery < 0:
		return bad("EvalEvery", cfg.EvalEvery, "≥ 0")
	case cfg.Every < 0:
		return bad("Every", cfg.Every, "≥ 0")
	}
	return nil
}

// TrainableOf returns m's trainable parameters, each once.
func TrainableOf(m Model) []*Tensor {
	seen := map[*Tensor]bool{}
	var ps []*Tensor
	for _, p := range m.Params() {
		if p.Trainable && !seen[p] {
			seen[p] = true
			ps = append(ps, p)
		}
	}
	return ps
}

// Train trains m's trainable parameters on minibatches of data for
// cfg.Steps steps and returns what it recorded. Each step samples a batch,
// computes the loss (plus the hooks' regularizers), backpropagates, clips,
// and lets the optimizer update at the scheduled rate.
//
// Full fine-tuning is Train on a model with every parameter trainable and no
// adapter (see FullFineTune); a PEFT method is Train after its Add
// (lora.Add, dora.Add, …), which freezes the base.
//
// When ctx is cancelled Train stops before the next step and returns the
// history so far with an error wrapping ctx's. An optimizer that is a
// ContextOptimizer is given ctx first, so that its own long computations
// (GaLore's SVDs) stop too. A NaN or infinite loss or gradient stops Train
// with an error naming the step and the parameter; so does an optimizer
// step that panics with an error value (an SVD that does not converge, or
// is cancelled): Train returns the history of the steps before it and an
// error naming the step and wrapping the panic's. The same model, data,
// config and seed give the same history and weights.
func Train(ctx context.Context, m Model, data Dataset, cfg TrainConfig) (*History, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	params := TrainableOf(m)
	if len(params) == 0 {
		return nil, fmt.Errorf("peft: Train: the model has no trainable parameter")
	}
	opt := cfg.Optimizer
	if opt == nil {
		opt = NewAdamW(cfg.WeightDecay)
	}
	every := cfg.Every
	if every == 0 {
		every = 1
	}
	h := &History{Name: cfg.Name}
	if mm, ok := m.(Metricer); ok && cfg.EvalEvery > 0 {
		h.MetricName = mm.MetricName()
	}
	if co, ok := opt.(ContextOptimizer); ok {
		co.SetContext(ctx)
		defer co.SetContext(context.Background())
	}
	for _, hk := range cfg.Hooks {
		// A hook whose steps run long computations (TRP's and Maestro's
		// SVDs) stops with the run, as a ContextOptimizer does.
		if co, ok := hk.(ContextOptimizer); ok {
			co.SetContext(ctx)
			defer co.SetContext(context.Background())
		}
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	m.SetTraining(true)
	defer m.SetTraining(false)
	items := 0
	for step := 1; step <= cfg.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return h, fmt.Errorf("peft: training %sstopped before step %d: %w", label(cfg.Name), step, err)
		}
		start := time.Now()
		b := data.Sample(rng, cfg.BatchSize)
		for _, p := range params {
			p.Grad = nil
		}
		loss := m.Loss(b)
		for _, hk := range cfg.Hooks {
			if reg := hk.Regularizer(step); reg != nil {
				loss = Add(loss, reg)
			}
		}
		lv := loss.Scalar()
		if math.IsNaN(lv) || math.IsInf(lv, 0) {
			return h, fmt.Errorf("peft: training %sstep %d: the loss is %v", label(cfg.Name), step, lv)
		}
		loss.Backward()
		for _, hk := range cfg.Hooks {
			hk.AfterBackward(step)
		}
		norm2 := 0.0
		for _, p := range params {
			if p.Grad == nil {
				continue
			}
			for i, g := range vals(p.Grad) {
				if math.IsNaN(g) || math.IsInf(g, 0) {
					r, c := p.Dims()
					return h, fmt.Errorf("peft: training %sstep %d: the gradient of %s %s is %v at element %d", label(cfg.Name), step, paramName(p), ShapeOf(r, c), g, i)
				}
				norm2 += g * g
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
		lr := LRAt(cfg, step)
		if err := Maybe(func() { opt.Step(params, lr) }); err != nil {
			return h, fmt.Errorf("peft: training %sstep %d: %w", label(cfg.Name), step, err)
		}
		for _, hk := range cfg.Hooks {
			if err := hk.AfterStep(step); err != nil {
				return h, fmt.Errorf("peft: training %sstep %d: %w", label(cfg.Name), step, err)
			}
		}
		items += b.Items()
		h.Steps = append(h.Steps, step)
		h.Tokens = append(h.Tokens, items)
		h.Loss = append(h.Loss, lv)
		h.LR = append(h.LR, lr)
		h.StepTime = append(h.StepTime, time.Since(start).Seconds())
		if cfg.EvalEvery > 0 && (step%cfg.EvalEvery == 0 || step == cfg.Steps) {
			m.SetTraining(false)
			el, em, err := Evaluate(ctx, m, data)
			m.SetTraining(true)
			if err != nil {
				return h, fmt.Errorf("peft: training %sstopped while evaluating at step %d: %w", label(cfg.Name), step, err)
			}
			h.EvalSteps = append(h.EvalSteps, step)
			h.EvalLoss = append(h.EvalLoss, el)
			h.EvalMetric = append(h.EvalMetric, em)
		}
		if cfg.Callback != nil && (step%every == 0 || step == cfg.Steps) {
			cfg.Callback(step, h)
		}
	}
	return h, nil
}

func label(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf("%q ", name)
}

func paramName(p *Tensor) string {
	if p.Name == "" {
		return "an unnamed parameter"
	}
	return p.Name
}

// Evaluate returns m's loss and metric (NaN if m has none, see Metricer)
// averaged over data's evaluation batches, weighted by their sizes, with m
// as it is (call SetTraining(false) first for evaluation behaviour).
func Evaluate(ctx context.Context, m Model, data Dataset) (loss, metric float64, err error) {
	bs := data.EvalBatches()
	if len(bs) == 0 {
		return math.NaN(), math.NaN(), nil
	}
	mm, hasMetric := m.(Metricer)
	both, hasBoth := m.(interface {
		LossAndMetric(b Batch) (loss, metric float64)
	})
	total := 0
	for _, b := range bs {
		if err := ctx.Err(); err != nil {
			return math.NaN(), math.NaN(), err
		}
		w := b.Items()
		switch {
		case hasBoth && hasMetric:
			l, mt := both.LossAndMetric(b) // one forward pass for both
			loss += float64(w) * l
			metric += float64(w) * mt
		case hasMetric:
			loss += float64(w) * m.Loss(b).Scalar()
			metric += float64(w) * mm.Metric(b)
		default:
			loss += float64(w) * m.Loss(b).Scalar()
		}
		total += w
	}
	loss /= float64(total)
	if !hasMetric {
		return loss, math.NaN(), nil
	}
	return loss, metric / float64(total), nil
}

// FullFineTune trains every parameter of m (the baseline every PEFT method
// is compared with): it makes them all trainable and calls Train. It is an
// error if m has an adapter attached.
func FullFineTune(ctx context.Context, m Model, data Dataset, cfg TrainConfig) (*History, error) {
	for _, l := range m.Modules() {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: FullFineTune: %s has adapters %s; full fine-tuning trains a model without adapters", l.Name, quoteList(l.AdapterNames()))
		}
	}
	UnfreezeAll(m)
	return Train(ctx, m, data, cfg)
}
