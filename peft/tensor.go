package peft

import (
	"sync"

	"gonum.org/v1/gonum/mat"
)

// Tensor is a node of gopeft's reverse-mode automatic differentiation: a
// float64 matrix Value (r×c), its gradient Grad (r×c) and how to push that
// gradient back to the tensors it was computed from.
//
// Leaves are made by NewParam (trainable) and NewConst (not). Every op
// (MatMul, Add, …) returns a new Tensor whose backward function adds (+=)
// into its inputs' gradients, llm.c style; Backward runs them in reverse
// topological order from a scalar loss. A node that depends on no trainable
// tensor records no backward function, so frozen parts of a model cost only
// their forward pass.
//
// Vectors are matrices too: a bias or a LayerNorm gain is (1×n), a batch of
// n inputs of width k is (n×k), rows are samples.
type Tensor struct {
	Value *mat.Dense // (r×c)
	Grad  *mat.Dense // (r×c); nil until a backward pass reaches it
	Name  string     // a parameter's dotted name ("blocks.0.attn.q.lora_A.default"); "" for intermediates

	// Trainable marks a parameter that optimizers update; Freeze and
	// Unfreeze set it.
	Trainable bool

	inputs   []*Tensor
	backward func(out *Tensor) // adds out.Grad's contribution into inputs' Grad
	needs    bool              // Trainable, or computed from a tensor that needs a gradient
}

// NewParam returns a trainable leaf named name holding v (not copied).
func NewParam(name string, v *mat.Dense) *Tensor {
	return &Tensor{Value: v, Name: name, Trainable: true, needs: true}
}

// NewConst returns a leaf that needs no gradient, holding v (not copied).
func NewConst(v *mat.Dense) *Tensor {
	return &Tensor{Value: v}
}

// Dims returns the shape of t's value.
func (t *Tensor) Dims() (r, c int) { return t.Value.Dims() }

// NeedsGrad reports whether a backward pass computes t's gradient.
func (t *Tensor) NeedsGrad() bool { return t.needs || t.Trainable }

// Freeze stops t from being trained.
func (t *Tensor) Freeze() { t.Trainable = false; t.needs = false }

// Unfreeze makes t trainable.
func (t *Tensor) Unfreeze() { t.Trainable = true; t.needs = true }

// Scalar returns the value of a 1×1 tensor. It panics on any other shape.
func (t *Tensor) Scalar() float64 {
	r, c := t.Dims()
	if r != 1 || c != 1 {
		panic(ShapeError{Op: "Tensor.Scalar", Got: ShapeOf(r, c), Want: "(1×1)"})
	}
	return t.Value.At(0, 0)
}

// ZeroGrad sets t's gradient to zero (allocating it if needed).
func (t *Tensor) ZeroGrad() {
	if t.Grad == nil {
		r, c := t.Dims()
		t.Grad = mat.NewDense(r, c, nil)
		return
	}
	t.Grad.Zero()
}

// grad returns t's gradient, allocated as zeros if it was nil. Backward
// functions call it on each input that needs a gradient before adding.
func (t *Tensor) grad() *mat.Dense {
	if t.Grad == nil {
		r, c := t.Dims()
		t.Grad = mat.NewDense(r, c, getGradBuf(r*c))
	}
	return t.Grad
}

// gradPools recycles the gradient buffers of intermediate nodes, which
// Backward releases as soon as their backward function has run, so that a
// training step does not allocate (and the collector does not sweep) a
// fresh buffer for every intermediate gradient. Keyed by length.
var gradPools sync.Map // int → *sync.Pool of *[]float64

// getGradBuf returns a zeroed slice of length n, recycled if possible.
func getGradBuf(n int) []float64 {
	if p, ok := gradPools.Load(n); ok {
		if b, ok := p.(*sync.Pool).Get().(*[]float64); ok {
			clear(*b)
			return *b
		}
	}
	return make([]float64, n)
}

// putGradBuf gives g's storage back for reuse; g must not be used after.
func putGradBuf(g *mat.Dense) {
	rm := g.RawMatrix()
	if rm.Stride != rm.Cols || len(rm.Data) != rm.Rows*rm.Cols {
		return
	}
	n := len(rm.Data)
	p, ok := gradPools.Load(n)
	if !ok {
		p, _ = gradPools.LoadOrStore(n, &sync.Pool{})
	}
	b := rm.Data
	p.(*sync.Pool).Put(&b)
}

// newOp returns the tensor of an op's result value v computed from inputs.
// backward is kept only when some input needs a gradient.
func newOp(v *mat.Dense, backward func(out *Tensor), inputs ...*Tensor) *Tensor {
	out := &Tensor{Value: v}
	for _, in := range inputs {
		if in != nil && in.NeedsGrad() {
			out.needs = true
			break
		}
	}
	if out.needs {
		out.inputs = inputs
		out.backward = backward
	}
	return out
}

// Backward computes the gradient of the scalar (1×1) t with respect to every
// tensor it was computed from that needs one, adding (+=) into their Grad.
// Intermediate gradients are released afterwards; parameters keep theirs
// until ZeroGrad.
func (t *Tensor) Backward() {
	r, c := t.Dims()
	if r != 1 || c != 1 {
		panic(ShapeError{Op: "Tensor.Backward", Got: ShapeOf(r, c), Want: "(1×1), a scalar loss"})
	}
	if !t.NeedsGrad() {
		return
	}
	order := topoOrder(t)
	t.grad().Set(0, 0, t.Grad.At(0, 0)+1)
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		if n.backward != nil && n.Grad != nil {
			n.backward(n)
			// Every node that adds into n.Grad comes later in order, so
			// n's gradient is complete and now spent: recycle it.
			putGradBuf(n.Grad)
			n.Grad = nil
		}
	}
	// Free the gradients of intermediates so the graph can be collected.
	for _, n := range order {
		if n.backward != nil {
			n.Grad = nil
		}
	}
}

// topoOrder returns the nodes reachable from t that need a gradient, each
// after all of its inputs.
func topoOrder(t *Tensor) []*Tensor {
	var order []*Tensor
	seen := map[*Tensor]bool{}
	// Iterative DFS: a deep Transformer graph must not overflow the stack.
	type frame struct {
		n    *Tensor
		next int
	}
	stack := []frame{{n: t}}
	seen[t] = true
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next < len(f.n.inputs) {
			in := f.n.inputs[f.next]
			f.next++
			if in != nil && in.NeedsGrad() && !seen[in] {
				seen[in] = true
				stack = append(stack, frame{n: in})
			}
			continue
		}
		order = append(order, f.n)
		stack = stack[:len(stack)-1]
	}
	return order
}
