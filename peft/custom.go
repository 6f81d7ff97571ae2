package peft

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// CustomAdapter is an Adapter made of a function, for defining a new method
// in a notebook cell without declaring a type: ForwardFunc composes this
// package's ops, so gradients reach Tensors with no backward pass written.
//
//	a := &peft.CustomAdapter{
//		Tensors: []*peft.Tensor{s},   // s (1×d), trainable
//		ForwardFunc: func(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
//			return peft.MulRow(base, s) // scale each output feature
//		},
//	}
//	err := layer.Attach("scale", a)
type CustomAdapter struct {
	// ForwardFunc returns the layer's output (n×d) for x (n×k) given the
	// base output base = x·W₀ᵀ + b (n×d), as Adapter.Forward.
	ForwardFunc func(l *Linear, x, base *Tensor) *Tensor
	Tensors     []*Tensor // the trainable parameters
	R           int       // the rank Rank reports (0 if the method has none)
	// MergeFunc returns the merged weight for W₀ (d×k). If nil,
	// MergedWeight finds it by probing ForwardFunc with the identity, which
	// is right for any adapter whose output is linear in x.
	MergeFunc func(w0 *mat.Dense) *mat.Dense
}

var _ Adapter = (*CustomAdapter)(nil)

// Forward calls ForwardFunc.
func (a *CustomAdapter) Forward(l *Linear, x, base *Tensor) *Tensor { return a.ForwardFunc(l, x, base) }

// Params returns Tensors.
func (a *CustomAdapter) Params() []*Tensor { return a.Tensors }

// Rank returns R.
func (a *CustomAdapter) Rank() int { return a.R }

// MergedWeight returns MergeFunc(w0), or else ProbeMergedWeight of the
// adapter on a bias-free layer with weight w0.
func (a *CustomAdapter) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if a.MergeFunc != nil {
		return a.MergeFunc(w0)
	}
	return ProbeMergedWeight(a, w0)
}

// ProbeMergedWeight returns the weight (d×k) that an adapter whose output is
// linear in x gives a bias-free layer with weight w0 (d×k): the adapted
// output for the k unit vectors x = I (k×k), transposed. For an adapter that
// is not linear in x it is not a merged weight.
func ProbeMergedWeight(a Adapter, w0 *mat.Dense) *mat.Dense {
	d, k := w0.Dims()
	l := &Linear{Name: "probe", W: NewConst(w0)}
	eye := mat.NewDense(k, k, nil)
	for i := 0; i < k; i++ {
		eye.Set(i, i, 1)
	}
	x := NewConst(eye)
	y := a.Forward(l, x, l.Base(x)).Value // (k×d): row i is W·e_i
	if r, c := y.Dims(); r != k || c != d {
		panic(ShapeError{Op: "ProbeMergedWeight", Got: fmt.Sprintf("adapter output %s for W %s", ShapeOf(r, c), ShapeOf(d, k)), Want: ShapeOf(k, d)})
	}
	return mat.DenseCopyOf(y.T())
}
