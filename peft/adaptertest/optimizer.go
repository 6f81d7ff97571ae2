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
	// Name labels the optimizer in failure messages ("AdamW").
	Name string
	// New returns a fresh optimizer.
	New func() peft.Optimizer
	// Decay is the decoupled weight decay λ it was built with: a step with
	// zero gradient must scale every weight by exactly (1 − lr·λ).
	Decay float64
	// Stateful says it keeps state (moments, projectors): StateBytes is 0
	// before the first step and positive after it. Otherwise StateBytes
	// stays 0.
	Stateful bool
	// StateBytesOf, if set, returns the bytes of state the optimizer keeps
	// for one trainable m×n tensor that has had a gradient: StateBytes must
	// be their sum over the tensors stepped, after one step and after more.
	StateBytesOf func(m, n int) int
	// CancelsInStep says a step stops when the context set with
	// SetContext is cancelled: the optimizer is a peft.ContextOptimizer and
	// such a step panics with an error wrapping the context's.
	CancelsInStep bool
}

// RunOptimizer runs every optimizer check of the suite on c, each a
// subtest, on a 9×6 weight w (which a projecting optimizer of rank < 6,
// GaLore's, projects), a 1×6 row b and a frozen 3×3 matrix:
//
//   - StateBytes: 0 before the first step; then positive if c.Stateful,
//     else 0; and the sum c.StateBytesOf gives, if set.
//   - ZeroGradient: three steps with zero gradients scale w and b by
//     (1 − lr·λ)³ to 1e-15 relative; a trainable tensor with a nil Grad and
//     a frozen tensor with a Grad keep their bits.
//   - Deterministic: two fresh optimizers given the same parameters and
//     gradients end with the same bits.
//   - Descends: steps on ½‖W − T‖²_F reduce it.
//   - Cancel, if the optimizer is a peft.ContextOptimizer or
//     c.CancelsInStep: under a cancelled context a step either completes
//     (only if not c.CancelsInStep) or panics with an error value wrapping
//     context.Canceled and changes no weight, as peft.Train expects; after
//     SetContext(context.Background()) steps run again.
func RunOptimizer(t *testing.T, c OptimizerCase) {
	run := func(name string, checkFn func(OptimizerCase) error) {
		t.Run(name, func(t *testing.T) {
			err := checkFn(c)
			if err != nil && c.Name != "" {
				err = fmt.Errorf("%s: %w", c.Name, err)
			}
			check(t, err)
		})
	}
	run("StateBytes", checkStateBytes)
	run("ZeroGradient", checkZeroGradient)
	run("Deterministic", checkDeterministic)
	run("Descends", checkDescends)
	if _, ok := c.New().(peft.ContextOptimizer); ok || c.CancelsInStep {
		run("Cancel", checkCancel)
	}
}

// optParams returns the suite's parameters, drawn from seed: w (9×6) and
// b (1×6), trainable, and a frozen 3×3 matrix.
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

// values returns copies of the parameters' values.
func values(ps []*peft.Tensor) []*mat.Dense {
	vs := make([]*mat.Dense, len(ps))
	for i, p := range ps {
		vs[i] = mat.DenseCopyOf(p.Value)
	}
	return vs
}

// checkStateBytes: the state is reported, and grows from 0 with the first
// step of a stateful optimizer to the sum the case gives.
func checkStateBytes(c OptimizerCase) error {
	o := c.New()
	if n := o.StateBytes(); n != 0 {
		return fmt.Errorf("StateBytes = %d before any step, want 0", n)
	}
	ps := optParams(3)
	rng := rand.New(rand.NewSource(4))
	want := 0
	if c.StateBytesOf != nil {
		for _, p := range ps {
			if p.Trainable {
				want += c.StateBytesOf(p.Dims())
			}
		}
	}
	for step := 1; step <= 3; step++ {
		setGrads(ps, rng)
		o.Step(ps, 0.01)
		n := o.StateBytes()
		switch {
		case c.Stateful && n <= 0:
			return fmt.Errorf("StateBytes = %d after step %d of a stateful optimizer, want > 0", n, step)
		case !c.Stateful && n != 0:
			return fmt.Errorf("StateBytes = %d after step %d of an optimizer said to keep no state, want 0", n, step)
		case c.StateBytesOf != nil && n != want:
			return fmt.Errorf("StateBytes = %d after step %d on w (9×6), b (1×6) and a frozen 3×3, want %d", n, step, want)
		}
	}
	return nil
}

// checkZeroGradient: with zero gradients a step changes weights by the
// decay alone; a trainable tensor with no gradient, or a frozen one with a
// gradient, is left alone.
func checkZeroGradient(c OptimizerCase) error {
	const lr, steps = 0.1, 3
	ps := optParams(1)
	setGrads(ps, nil)
	nograd := peft.NewParam("nograd", RandDense(rand.New(rand.NewSource(2)), 2, 4))
	ps = append(ps, nograd)
	ps[2].Grad = RandDense(rand.New(rand.NewSource(2)), 3, 3) // frozen
	before := values(ps)
	o := c.New()
	for step := 0; step < steps; step++ {
		o.Step(ps, lr)
	}
	for k, p := range ps[:2] {
		r, cc := p.Dims()
		for i := 0; i < r; i++ {
			for j := 0; j < cc; j++ {
				want := before[k].At(i, j)
				for step := 0; step < steps; step++ {
					want *= 1 - lr*c.Decay // decoupled weight decay
				}
				if got := p.Value.At(i, j); math.Abs(got-want) > 1e-15*math.Abs(want) {
					return fmt.Errorf("zero gradient: %s[%d,%d] = %v after %d steps at lr %g, want %v (decay λ = %g only)", p.Name, i, j, got, steps, lr, want, c.Decay)
				}
			}
		}
	}
	if !mat.Equal(nograd.Value, before[3]) {
		return fmt.Errorf("a trainable tensor with a nil Grad changed")
	}
	if !mat.Equal(ps[2].Value, before[2]) {
		return fmt.Errorf("a frozen tensor changed")
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

// checkDescends: 60 steps on ½‖W − T‖²_F reduce it by a tenth at least (a
// projecting optimizer moves in a subspace at a time, so not more).
func checkDescends(c OptimizerCase) error {
	ps := optParams(7)[:2]
	rng := rand.New(rand.NewSource(8))
	targets := []*mat.Dense{RandDense(rng, 9, 6), RandDense(rng, 1, 6)}
	// loss returns ½‖W − T‖²_F over ps and sets each gradient W − T.
	loss := func() float64 {
		var l float64
		for i, p := range ps {
			var d mat.Dense
			d.Sub(p.Value, targets[i])
			p.Grad = mat.DenseCopyOf(&d)
			f := mat.Norm(&d, 2) // Frobenius
			l += 0.5 * f * f
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
		return fmt.Errorf("60 steps on ½‖W − T‖²_F took the loss from %.4g to %.4g, want below %.4g", l0, l, 0.9*l0)
	}
	return nil
}

// stepRecover runs o.Step(ps, lr) and returns what it panicked with, if
// anything.
func stepRecover(o peft.Optimizer, ps []*peft.Tensor, lr float64) (r any) {
	defer func() { r = recover() }()
	o.Step(ps, lr)
	return nil
}

// checkCancel: a step under a cancelled context either completes or
// panics with an error wrapping context.Canceled (which peft.Train
// returns), and must panic if the case says it cancels; a panicking step
// changes no weight (w, the matrix a projecting optimizer computes on,
// comes first); after SetContext(context.Background()) steps run again.
func checkCancel(c OptimizerCase) error {
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
	before := values(ps)
	r := stepRecover(o, ps, 0.01)
	e, isErr := r.(error)
	switch {
	case r == nil && c.CancelsInStep:
		return fmt.Errorf("a step under a cancelled context completed, want a panic wrapping context.Canceled")
	case r != nil && (!isErr || !errors.Is(e, context.Canceled)):
		return fmt.Errorf("a step under a cancelled context panicked with %v (%T), want an error wrapping context.Canceled", r, r)
	}
	if r != nil {
		for i, p := range ps {
			if !mat.Equal(p.Value, before[i]) {
				return fmt.Errorf("a cancelled step changed %s", p.Name)
			}
		}
	}
	// Train gives the optimizer context.Background() when it returns: the
	// next step runs.
	co.SetContext(context.Background())
	w0 := mat.DenseCopyOf(ps[0].Value)
	if r := stepRecover(o, ps, 0.01); r != nil {
		return fmt.Errorf("a step after SetContext(context.Background()) panicked with %v", r)
	}
	if mat.Equal(ps[0].Value, w0) {
		return fmt.Errorf("a step after SetContext(context.Background()) left w unchanged")
	}
	return nil
}
