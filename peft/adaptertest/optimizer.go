package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// OptimizerCase is one optimizer under test.
type OptimizerCase struct {
	// New returns a fresh optimizer.
	New func() peft.Optimizer
	// Decay is the decoupled weight decay λ it was built with: a step with
	// zero gradient must scale every weight by exactly (1 − lr·λ).
	Decay float64
	// Stateful says it keeps state (moments, projectors): StateBytes is 0
	// before the first step and positive after it.
	Stateful bool
	// CancelsInStep says a step stops when the context set with
	// SetContext is cancelled (peft.ContextOptimizer), panicking with an
	// error that wraps the context's.
	CancelsInStep bool
}

// RunOptimizer runs every optimizer check of the suite on c, each a
// subtest, on a 9×6 weight (which a projecting optimizer of rank < 6
// projects), a 1×6 row and a frozen 3×3 matrix.
func RunOptimizer(t *testing.T, c OptimizerCase) {
	t.Run("ZeroGradient", func(t *testing.T) { check(t, checkZeroGradient(c)) })
	t.Run("StateBytes", func(t *testing.T) { check(t, checkStateBytes(c)) })
	t.Run("Deterministic", func(t *testing.T) { check(t, checkDeterministic(c)) })
	t.Run("Descends", func(t *testing.T) { check(t, checkDescends(c)) })
	if c.CancelsInStep {
		t.Run("Cancel", func(t *testing.T) { check(t, checkCancel(c)) })
	}
}

// optParams returns the suite's parameters, drawn from seed: two trainable
// ones and a frozen one.
func optParams(seed int64) []*peft.Tensor {
	rng := rand.New(rand.NewSource(seed))
	w := peft.NewParam("w", RandDense(rng, 9, 6))
	b := peft.NewParam("b", RandDense(rng, 1, 6))
	f := peft.NewParam("frozen", RandDense(rng, 3, 3))
	f.Freeze()
	return []*peft.Tensor{w, b, f}
}

// setGrads gives every parameter a gradient drawn from rng (zero if rng is nil).
func setGrads(ps []*peft.Tensor, rng *rand.Rand) {
	for _, p := range ps {
		r, c := p.Dims()
		if rng == nil {
			p.Grad = mat.NewDense(r, c, nil)
		} else {
			p.Grad = RandDense(rng, r, c)
		}
	}
}

// checkZeroGradient: with zero gradients a step changes weights by the
// decay alone; a tensor with no gradient, or frozen, is left alone.
func checkZeroGradient(c OptimizerCase) error {
	const lr = 0.1
	ps := optParams(1)
	before := make([]*mat.Dense, len(ps))
	for i, p := range ps {
		before[i] = mat.DenseCopyOf(p.Value)
	}
	setGrads(ps, nil)
	ps[1].Grad = nil // no gradient: untouched even by decay
	ps[2].Grad = RandDense(rand.New(rand.NewSource(2)), 3, 3)
	o := c.New()
	for step := 0; step < 3; step++ {
		o.Step(ps, lr)
	}
	f := math.Pow(1-lr*c.Decay, 3)
	r, cc := before[0].Dims()
	for i := 0; i < r; i++ {
		for j := 0; j < cc; j++ {
			want := before[0].At(i, j) * f
			if got := ps[0].Value.At(i, j); math.Abs(got-want) > 1e-15*math.Abs(want) {
				return fmt.Errorf("zero gradient: w[%d,%d] = %v after 3 steps, want %v (decay %g only)", i, j, got, want, c.Decay)
			}
		}
	}
	if !mat.Equal(ps[1].Value, before[1]) {
		return fmt.Errorf("a tensor with no gradient changed")
	}
	if !mat.Equal(ps[2].Value, before[2]) {
		return fmt.Errorf("a frozen tensor changed")
	}
	return nil
}

// checkStateBytes: the state is reported, and grows from 0 with the first
// step of a stateful optimizer.
func checkStateBytes(c OptimizerCase) error {
	o := c.New()
	if n := o.StateBytes(); n != 0 {
		return fmt.Errorf("StateBytes = %d before any step, want 0", n)
	}
	ps := optParams(3)
	setGrads(ps, rand.New(rand.NewSource(4)))
	o.Step(ps, 0.01)
	n := o.StateBytes()
	if c.Stateful && n <= 0 {
		return fmt.Errorf("StateBytes = %d after a step of a stateful optimizer", n)
	}
	if !c.Stateful && n != 0 {
		return fmt.Errorf("StateBytes = %d for an optimizer said to keep no state", n)
	}
	return nil
}

// checkDeterministic: two fresh optimizers given the same parameters and
// gradients end with the same bits.
func checkDeterministic(c OptimizerCase) error {
	run := func() []*peft.Tensor {
		ps := optParams(5)
		rng := rand.New(rand.NewSource(6))
		o := c.New()
		for step := 0; step < 4; step++ {
			setGrads(ps, rng)
			o.Step(ps, 0.05)
		}
		return ps
	}
	a, b := run(), run()
	for i := range a {
		if !mat.Equal(a[i].Value, b[i].Value) {
			return fmt.Errorf("%s differs between two runs from the same seed", a[i].Name)
		}
	}
	return nil
}

// checkDescends: 60 steps on ½‖W − T‖² reduce it by a tenth at least (a
// projecting optimizer moves in a subspace at a time, so not more).
func checkDescends(c OptimizerCase) error {
	ps := optParams(7)[:2]
	rng := rand.New(rand.NewSource(8))
	targets := []*mat.Dense{RandDense(rng, 9, 6), RandDense(rng, 1, 6)}
	loss := func() float64 {
		var l float64
		for i, p := range ps {
			var d mat.Dense
			d.Sub(p.Value, targets[i])
			p.Grad = mat.DenseCopyOf(&d)
			l += 0.5 * mat.Norm(&d, 2) * mat.Norm(&d, 2)
		}
		return l
	}
	o := c.New()
	l0 := loss()
	for step := 0; step < 60; step++ {
		loss()
		o.Step(ps, 0.05)
	}
	if l := loss(); !(l < 0.9*l0) {
		return fmt.Errorf("60 steps on ½‖W − T‖² took the loss from %.4g to %.4g", l0, l)
	}
	return nil
}

// checkCancel: a step under a cancelled context panics with an error
// wrapping context.Canceled, and leaves the weights as they were.
func checkCancel(c OptimizerCase) (err error) {
	o := c.New()
	co, ok := o.(peft.ContextOptimizer)
	if !ok {
		return fmt.Errorf("%T does not implement peft.ContextOptimizer", o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	co.SetContext(ctx)
	ps := optParams(9)
	setGrads(ps, rand.New(rand.NewSource(10)))
	w0 := mat.DenseCopyOf(ps[0].Value)
	defer func() {
		r := recover()
		e, isErr := r.(error)
		switch {
		case r == nil:
			err = fmt.Errorf("a step under a cancelled context completed")
		case !isErr || !errors.Is(e, context.Canceled):
			err = fmt.Errorf("a cancelled step panicked with %v, want an error wrapping context.Canceled", r)
		case !mat.Equal(ps[0].Value, w0):
			err = fmt.Errorf("a cancelled step changed the weight")
		}
	}()
	o.Step(ps, 0.01)
	return nil
}
