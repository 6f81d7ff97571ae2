package peft

import (
	"context"

	"gonum.org/v1/gonum/mat"
)

// This file holds the interfaces every method plugs into. The training loop
// knows only these, so a new method is one new file with no special case in
// the trainer.

// Adapter is a parameter-efficient change to one Linear layer (LoRA, DoRA,
// AdaLoRA's SVD-form update, …). Several named adapters may sit on one
// layer; Linear.Forward asks the active one for the layer's output.
type Adapter interface {
	// Forward returns the layer's output (n×out) for input x (n×in), given the
	// layer l (whose W is frozen) and its base output base = x·Wᵀ + b
	// (n×out). It is built from this package's ops, so gradients flow to
	// the adapter's parameters with no hand-written backward pass.
	// l.Training says whether dropout and other training-only parts apply.
	Forward(l *Linear, x, base *Tensor) *Tensor
	// Params returns the adapter's trainable tensors.
	Params() []*Tensor
	// Rank returns the adapter's current rank (AdaLoRA changes it while
	// training; methods with no rank return 0).
	Rank() int
	// MergedWeight returns the weight (out×in) which, put in place of w0 with
	// the adapter removed, gives the same output: w0 + s·B·A for LoRA.
	MergedWeight(w0 *mat.Dense) *mat.Dense
}

// Merger is implemented by an Adapter whose update may depend on the input
// (MoRAM's routing), so that no single weight reproduces it: Merge returns
// an error when Mergeable is false, and MergedWeight is not called.
type Merger interface {
	Mergeable() bool
}

// Optimizer updates trainable tensors from their gradients: SGD, AdamW,
// GaLore, ….
type Optimizer interface {
	// Step updates each trainable tensor in params from its Grad at learning
	// rate lr. A tensor whose Grad is nil is left alone.
	Step(params []*Tensor, lr float64)
	// StateBytes returns the size of the optimizer's state in bytes
	// (moments, projectors), for comparing optimizers' memory.
	StateBytes() int
}

// ContextOptimizer is implemented by an Optimizer (or a Hook) whose steps
// run long computations that should stop when a context is cancelled (GaLore's
// SVDs). Train calls SetContext with its own context before the first step,
// and with context.Background() when it returns; a step whose computation
// is cancelled panics with an error wrapping ctx's, which Train returns.
type ContextOptimizer interface {
	// SetContext sets the context of the following steps.
	SetContext(ctx context.Context)
}

// Hook takes part in every training step, for methods whose rules act on the
// whole run rather than one layer's forward pass (AdaLoRA's importance
// scores and rank budget, …).
type Hook interface {
	// Regularizer returns a scalar (1×1) tensor added to the loss at step
	// (counted from 1), or nil.
	Regularizer(step int) *Tensor
	// AfterBackward runs once the step's gradients are computed, before the
	// optimizer uses them.
	AfterBackward(step int)
	// AfterStep runs after the optimizer's update of step.
	AfterStep(step int) error
}

// History is what a training run recorded, step by step: what viz's loss
// curves read.
type History struct {
	Name       string    // the run's label in charts ("LoRA r=4")
	Steps      []int     // step numbers, from 1
	Tokens     []int     // tokens (or samples) seen after each step
	Loss       []float64 // training loss at each step
	LR         []float64 // learning rate used at each step
	StepTime   []float64 // wall time of each step, seconds
	EvalSteps  []int     // steps at which the evaluation ran
	EvalLoss   []float64 // evaluation loss at EvalSteps
	EvalMetric []float64 // evaluation metric at EvalSteps (accuracy, …)
	MetricName string    // what EvalMetric is
}

// RankTrace records the rank of each adapted module at each allocation step
// of an adaptive-rank method (AdaLoRA): the data of viz's rank heatmap.
type RankTrace struct {
	Modules []string // module names, one row each
	Steps   []int    // steps at which ranks were recorded, one column each
	Ranks   [][]int  // Ranks[i][j]: rank of Modules[i] at Steps[j]
	Budget  []int    // total budget b(t) at each of Steps
}

// Clone returns a deep copy of t.
func (t *RankTrace) Clone() *RankTrace {
	c := &RankTrace{
		Modules: append([]string(nil), t.Modules...),
		Steps:   append([]int(nil), t.Steps...),
		Budget:  append([]int(nil), t.Budget...),
		Ranks:   make([][]int, len(t.Ranks)),
	}
	for i, r := range t.Ranks {
		c.Ranks[i] = append([]int(nil), r...)
	}
	return c
}

// Linear is a dense layer y = x·Wᵀ + b with x (n×in), W (out×in), b (1×out),
// the layer PEFT methods adapt. Name is its stable dotted name in the model
// ("blocks.0.attn.q"), by which adapters target it.
type Linear struct {
	Name string
	W    *Tensor // (out×in), frozen once an adapter is attached
	B    *Tensor // (1×out), or nil for no bias

	// Kernel, when set, is the N-d shape of the weight that W holds
	// flattened: a 2-D convolution's kernel (C_out, C_in, kh, kw) is W
	// (C_out × C_in·kh·kw), applied to im2col patches. It is nil for a plain
	// linear layer. Adapters that work on the N-d form (FLoRA's Tucker core,
	// ConvLoRA) read it; the others see W as a matrix.
	Kernel []int

	// Adapters holds the named adapters on this layer; Active names the one
	// in use ("" for none) and Disabled bypasses it, giving the base layer
	// exactly.
	Adapters map[string]Adapter
	Active   string
	Disabled bool

	// Training turns on dropout and other training-only behaviour.
	Training bool

	merged   string     // the adapter merged into W, "" if none
	unmerged *mat.Dense // W before the merge, restored by Unmerge
}
