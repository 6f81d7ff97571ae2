// Package ewclora is EWC-LoRA: elastic weight consolidation on the
// parameters of LoRA adapters, a quadratic penalty that holds the
// parameters earlier tasks found important near the values those tasks
// left.
package ewclora

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// EWC is elastic weight consolidation (Kirkpatrick et al. 2017,
// "Overcoming catastrophic forgetting in neural networks",
// arXiv:1612.00796) on a model's trainable parameters θ, which after
// lora.Add are the LoRA factors A (r×k) and B (d×r), as "Language Models
// Meet World Models: Embodied Experiences Enhance Language Models" (Xiang
// et al. 2023, arXiv:2305.10626, NeurIPS 2023) trains it. After each task it records the diagonal empirical
// Fisher information of θ and θ itself,
//
//	F_i = (1/N)·Σ_b (∂L(batch b)/∂θ_i)²     N minibatches of the task's training data
//	θ*  = θ at the end of the task
//
// and, as a peft.Hook, adds to every later step's loss
//
//	Ω(θ) = (λ/2)·Σ_i F_i·(θ_i − θ*_i)²,   ∂Ω/∂θ_i = λ·F_i·(θ_i − θ*_i)
//
// Over several tasks the Fishers add up and θ* is the latest (online EWC
// with γ = 1, Huszár 2018, arXiv:1712.03847; Schwarz et al. 2018,
// arXiv:1805.06370), so the state stays one F and one θ* per parameter
// however many tasks pass. With λ = 0 the hook adds nothing and training is
// plain LoRA, bit for bit.
//
// # Where gopeft departs from the paper
//
// The paper fine-tunes a pretrained LM once and protects its general
// abilities: F is the Fisher of the pretrained weights W₀ (on 20k Pile
// samples) and the penalty λ·Σ F⊙(s·B·A)² acts on the effective update
// W − W₀ = s·B·A, with λ = 2. gopeft's lab learns a sequence of tasks, so
// it applies EWC to what is trained (the LoRA factors, as the brief of this
// package asks) and anchors them to their values after each task; it
// keeps the usual λ/2 of Kirkpatrick et al. The paper's form is one
// Regularizer away (a Hook over lora adapters' Delta) and is not provided.
//
// EWC implements peft.Hook and peft.ContinualMethod (BeforeTask adds it to
// the task's hooks; AfterTask calls Consolidate).
type EWC struct {
	cfg    Config
	params []*peft.Tensor // the anchored parameters, in TrainableOf order
	fisher []*mat.Dense   // F, like each parameter
	star   []*mat.Dense   // θ*, like each parameter
	tasks  int
}

// Config configures New.
type Config struct {
	// Lambda λ ≥ 0 weighs the penalty (0: none, plain LoRA). Required in
	// the sense that there is no default: the paper's λ = 2 weighs a
	// different penalty (see EWC).
	Lambda float64
	// Batches N is how many minibatches the Fisher averages (0: 20).
	Batches int
	// BatchSize is their size (0: 32).
	BatchSize int
	// Seed seeds the Fisher's minibatch sampling; task t uses Seed + t.
	Seed int64
}

// New returns an EWC hook. A configuration out of range panics with a
// peft.ArgError naming the field and value; peft.Maybe turns it into an
// error.
func New(cfg Config) *EWC {
	if cfg.Batches == 0 {
		cfg.Batches = 20
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 32
	}
	switch {
	case !(cfg.Lambda >= 0) || math.IsInf(cfg.Lambda, 0):
		panic(peft.ArgError{Op: "ewclora.New", Msg: fmt.Sprintf("Config.Lambda = %g: want a finite λ ≥ 0", cfg.Lambda)})
	case cfg.Batches < 0:
		panic(peft.ArgError{Op: "ewclora.New", Msg: fmt.Sprintf("Config.Batches = %d: want N ≥ 1 (0 selects 20)", cfg.Batches)})
	case cfg.BatchSize < 0:
		panic(peft.ArgError{Op: "ewclora.New", Msg: fmt.Sprintf("Config.BatchSize = %d: want ≥ 1 (0 selects 32)", cfg.BatchSize)})
	}
	return &EWC{cfg: cfg}
}

// Config returns e's configuration with the defaults filled in.
func (e *EWC) Config() Config { return e.cfg }

// Tasks returns the number of tasks consolidated.
func (e *EWC) Tasks() int { return e.tasks }

// Fisher returns the diagonal empirical Fisher information of m's
// trainable parameters (peft.TrainableOf(m), in that order) on data: the
// mean over batches minibatches of batchSize examples, drawn in turn by
// data.Sample from rand.New(rand.NewSource(seed)), of the squared gradient
// of m's loss. m is evaluated with SetTraining(false) (no dropout) and
// left so; the parameters' Grad are left nil. It returns ctx's error if ctx
// is cancelled between batches.
func Fisher(ctx context.Context, m peft.Model, data peft.Dataset, batches, batchSize int, seed int64) ([]*mat.Dense, error) {
	if batches < 1 || batchSize < 1 {
		panic(peft.ArgError{Op: "ewclora.Fisher", Msg: fmt.Sprintf("batches = %d, batchSize = %d: want both ≥ 1", batches, batchSize)})
	}
	params := peft.TrainableOf(m)
	f := make([]*mat.Dense, len(params))
	for i, p := range params {
		r, c := p.Dims()
		f[i] = mat.NewDense(r, c, nil)
		p.Grad = nil
	}
	m.SetTraining(false)
	rng := rand.New(rand.NewSource(seed))
	for b := 0; b < batches; b++ {
		if err := ctx.Err(); err != nil {
			for _, p := range params {
				p.Grad = nil
			}
			return nil, err
		}
		batch := data.Sample(rng, batchSize)
		m.Loss(batch).Backward()
		for i, p := range params {
			if p.Grad == nil {
				continue
			}
			r, c := p.Dims()
			for y := 0; y < r; y++ {
				for x := 0; x < c; x++ {
					g := p.Grad.At(y, x)
					f[i].Set(y, x, f[i].At(y, x)+g*g) // accumulate the squared gradient
				}
			}
			p.Grad = nil
		}
	}
	for _, fi := range f {
		fi.Scale(1/float64(batches), fi) // the mean over batches
	}
	return f, nil
}

// Consolidate records the end of a task on data: it adds the Fisher of m's
// trainable parameters (Fisher, with e's Batches, BatchSize and Seed plus
// the task count) to e's, and sets θ* to their current values. A parameter
// not anchored before starts with its own Fisher. It returns ctx's error
// if ctx is cancelled, with e unchanged.
func (e *EWC) Consolidate(ctx context.Context, m peft.Model, data peft.Dataset) error {
	f, err := Fisher(ctx, m, data, e.cfg.Batches, e.cfg.BatchSize, e.cfg.Seed+int64(e.tasks))
	if err != nil {
		return err
	}
	index := map[*peft.Tensor]int{}
	for i, p := range e.params {
		index[p] = i
	}
	for i, p := range peft.TrainableOf(m) {
		j, ok := index[p]
		if !ok {
			e.params = append(e.params, p)
			e.fisher = append(e.fisher, f[i])
			e.star = append(e.star, mat.DenseCopyOf(p.Value))
			continue
		}
		e.fisher[j].Add(e.fisher[j], f[i]) // online EWC: the Fishers add up
		e.star[j] = mat.DenseCopyOf(p.Value)
	}
	e.tasks++
	return nil
}

// Anchor sets the penalty's terms directly: for each parameter params[i],
// its Fisher fisher[i] and anchor star[i] (each of the parameter's shape,
// copied). It replaces what Consolidate recorded; for tests and for
// Fishers computed elsewhere. It panics with a peft.ShapeError if a shape
// differs.
func (e *EWC) Anchor(params []*peft.Tensor, fisher, star []*mat.Dense) {
	if len(fisher) != len(params) || len(star) != len(params) {
		panic(peft.ArgError{Op: "EWC.Anchor", Msg: fmt.Sprintf("%d parameters, %d Fishers and %d anchors: want one of each per parameter", len(params), len(fisher), len(star))})
	}
	e.params, e.fisher, e.star = nil, nil, nil
	for i, p := range params {
		r, c := p.Dims()
		for _, d := range []*mat.Dense{fisher[i], star[i]} {
			if dr, dc := d.Dims(); dr != r || dc != c {
				panic(peft.ShapeError{Op: "EWC.Anchor(" + p.Name + ")", Got: peft.ShapeOf(dr, dc), Want: peft.ShapeOf(r, c)})
			}
		}
		e.params = append(e.params, p)
		e.fisher = append(e.fisher, mat.DenseCopyOf(fisher[i]))
		e.star = append(e.star, mat.DenseCopyOf(star[i]))
	}
}

// FisherOf returns the Fisher e holds for p, or nil.
func (e *EWC) FisherOf(p *peft.Tensor) *mat.Dense {
	for i, q := range e.params {
		if q == p {
			return e.fisher[i]
		}
	}
	return nil
}

// Penalty returns Ω(θ) = (λ/2)·Σ F⊙(θ − θ*)² as a scalar (1×1) tensor
// built from peft's ops, so that its gradient λ·F⊙(θ − θ*) flows to θ; nil
// if λ = 0 or nothing is anchored.
func (e *EWC) Penalty() *peft.Tensor {
	if e.cfg.Lambda == 0 || len(e.params) == 0 {
		return nil
	}
	var sum *peft.Tensor
	for i, p := range e.params {
		d := peft.Sub(p, peft.NewConst(e.star[i]))                                // θ − θ*
		term := peft.SumAll(peft.Mul(peft.NewConst(e.fisher[i]), peft.Mul(d, d))) // Σ F⊙(θ − θ*)²
		if sum == nil {
			sum = term
		} else {
			sum = peft.Add(sum, term)
		}
	}
	return peft.Scale(sum, e.cfg.Lambda/2)
}

// Regularizer returns Penalty (peft.Hook).
func (e *EWC) Regularizer(step int) *peft.Tensor { return e.Penalty() }

// AfterBackward does nothing (peft.Hook).
func (e *EWC) AfterBackward(step int) {}

// AfterStep does nothing (peft.Hook).
func (e *EWC) AfterStep(step int) error { return nil }

// BeforeTask adds e to the task's hooks (peft.ContinualMethod).
func (e *EWC) BeforeTask(ctx context.Context, m peft.Model, task int, cfg peft.TrainConfig) (peft.TrainConfig, error) {
	for _, h := range cfg.Hooks {
		if h == peft.Hook(e) {
			return cfg, nil
		}
	}
	cfg.Hooks = append(append([]peft.Hook(nil), cfg.Hooks...), e)
	return cfg, nil
}

// AfterTask consolidates the task (Consolidate).
func (e *EWC) AfterTask(ctx context.Context, m peft.Model, task int, data peft.Dataset) error {
	return e.Consolidate(ctx, m, data)
}

var (
	_ peft.Hook            = (*EWC)(nil)
	_ peft.ContinualMethod = (*EWC)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "EWC-LoRA",
		Kind:    peft.HookMethod,
		Paper:   "Xiang et al. 2023, Language Models Meet World Models: Embodied Experiences Enhance Language Models, arXiv:2305.10626",
		Package: "github.com/gopeft/gopeft/peft/ewclora",
		Summary: "LoRA plus elastic weight consolidation: (λ/2)·Σ F⊙(θ − θ*)² on the LoRA factors, F the diagonal Fisher after each task",
	})
}
