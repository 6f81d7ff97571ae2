package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// optFault is one way a test optimizer breaks a property the suite checks.
type optFault int

const (
	noOptFault     optFault = iota
	doubleDecay             // decays by (1 − lr·λ)² a step
	stepsNoGrad             // takes a nil Grad for zero: decays the tensor
	stepsFrozen             // updates frozen tensors too
	noisy                   // adds noise from the randomly seeded global source
	ascends                 // steps up the gradient
	hidesState              // StateBytes reports 0
	miscounts               // StateBytes counts 4 bytes per velocity entry
	ignoresCancel           // steps through a cancelled context
	panicsPlain             // panics with an error that does not wrap the context's
	changesFirst            // updates the weights, then panics
	staysCancelled          // still panics after SetContext(context.Background())
)

// faultyOptimizer is SGD with momentum μ = 0.5 and decoupled weight decay
// λ, v ← μ·v + g, θ ← θ·(1 − lr·λ) − lr·v, and a peft.ContextOptimizer
// whose step panics at its start under a cancelled context; broken as
// fault says.
type faultyOptimizer struct {
	fault optFault
	decay float64 // λ
	ctx   context.Context
	stuck bool                        // staysCancelled: a cancelled context was seen
	v     map[*peft.Tensor]*mat.Dense // velocities, like the tensors
}

func (o *faultyOptimizer) SetContext(ctx context.Context) { o.ctx = ctx }

func (o *faultyOptimizer) Step(ps []*peft.Tensor, lr float64) {
	var err error
	if o.ctx != nil {
		err = o.ctx.Err()
	}
	if o.fault == staysCancelled {
		if err != nil {
			o.stuck = true
		} else if o.stuck {
			err = context.Canceled
		}
	}
	if err != nil {
		switch o.fault {
		case ignoresCancel:
		case panicsPlain:
			panic(errors.New("faulty: step cancelled"))
		case changesFirst:
			o.update(ps, lr)
			panic(fmt.Errorf("faulty: step cancelled: %w", err))
		default:
			panic(fmt.Errorf("faulty: step cancelled: %w", err))
		}
	}
	o.update(ps, lr)
}

func (o *faultyOptimizer) update(ps []*peft.Tensor, lr float64) {
	if o.v == nil {
		o.v = map[*peft.Tensor]*mat.Dense{}
	}
	for _, p := range ps {
		if !p.Trainable && o.fault != stepsFrozen {
			continue
		}
		r, c := p.Dims()
		g := p.Grad
		if g == nil {
			if o.fault != stepsNoGrad {
				continue
			}
			g = mat.NewDense(r, c, nil)
		}
		v := o.v[p]
		if v == nil {
			v = mat.NewDense(r, c, nil)
			o.v[p] = v
		}
		for i := 0; i < r; i++ {
			for j := 0; j < c; j++ {
				vij := 0.5*v.At(i, j) + g.At(i, j) // accumulate the velocity
				v.Set(i, j, vij)
				if o.fault == ascends {
					vij = -vij
				}
				if o.fault == noisy {
					vij += 1e-9 * rand.Float64()
				}
				w := p.Value.At(i, j) * (1 - lr*o.decay) // decoupled weight decay
				if o.fault == doubleDecay {
					w *= 1 - lr*o.decay
				}
				p.Value.Set(i, j, w-lr*vij)
			}
		}
	}
}

func (o *faultyOptimizer) StateBytes() int {
	n := 0
	for _, v := range o.v {
		r, c := v.Dims()
		n += 8 * r * c
	}
	switch o.fault {
	case hidesState:
		return 0
	case miscounts:
		return n / 2
	}
	return n
}

// faultyOptCase returns the case of a faultyOptimizer broken as f says.
func faultyOptCase(f optFault) OptimizerCase {
	return OptimizerCase{
		Name:          "faulty",
		New:           func() peft.Optimizer { return &faultyOptimizer{fault: f, decay: 0.1} },
		Decay:         0.1,
		Stateful:      true,
		StateBytesOf:  func(m, n int) int { return 8 * m * n },
		CancelsInStep: true,
	}
}

// TestOptimizerSuiteCatchesFaults: each check passes a correct optimizer
// and fails the optimizer broken in the way it guards against.
func TestOptimizerSuiteCatchesFaults(t *testing.T) {
	t.Run("correct", func(t *testing.T) { RunOptimizer(t, faultyOptCase(noOptFault)) })
	for _, c := range []struct {
		f     optFault
		check func(OptimizerCase) error
		want  string
	}{
		{doubleDecay, checkZeroGradient, "zero gradient: w[0,0]"},
		{stepsNoGrad, checkZeroGradient, "nil Grad changed"},
		{stepsFrozen, checkZeroGradient, "frozen tensor changed"},
		{noisy, checkDeterministic, "differs between two runs"},
		{ascends, checkDescends, "took the loss from"},
		{hidesState, checkStateBytes, "of a stateful optimizer, want > 0"},
		{miscounts, checkStateBytes, "StateBytes = 240 after step 1"},
		{ignoresCancel, checkCancel, "completed"},
		{panicsPlain, checkCancel, "want an error wrapping context.Canceled"},
		{changesFirst, checkCancel, "cancelled step changed w"},
		{staysCancelled, checkCancel, "after SetContext(context.Background()) panicked"},
	} {
		err := c.check(faultyOptCase(c.f))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("fault %d: got %v, want an error containing %q", c.f, err, c.want)
		}
	}
	// A step that completes under a cancelled context is fine for an
	// optimizer not said to cancel.
	lax := faultyOptCase(ignoresCancel)
	lax.CancelsInStep = false
	if err := checkCancel(lax); err != nil {
		t.Errorf("an optimizer that finishes a cancelled step, not said to cancel: %v", err)
	}
	// So is an optimizer that keeps no state, said to keep none; one that
	// says it cancels but cannot be given a context is not.
	sgd := OptimizerCase{New: func() peft.Optimizer { return &peft.SGD{} }}
	if err := checkStateBytes(sgd); err != nil {
		t.Errorf("plain SGD: %v", err)
	}
	sgd.CancelsInStep = true
	if err := checkCancel(sgd); err == nil || !strings.Contains(err.Error(), "does not implement peft.ContextOptimizer") {
		t.Errorf("CancelsInStep on an optimizer with no SetContext: got %v", err)
	}
	sgd.CancelsInStep, sgd.Stateful = false, true
	if err := checkStateBytes(sgd); err == nil || !strings.Contains(err.Error(), "want > 0") {
		t.Errorf("plain SGD said to be stateful: got %v", err)
	}
}
