package peft

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// SGD is stochastic gradient descent with optional momentum and decoupled
// weight decay:
//
//	v ← μ·v + g;   θ ← θ − lr·(v + λ·θ)
//
// (plain θ ← θ − lr·g when μ = λ = 0).
type SGD struct {
	Momentum    float64 // μ in [0, 1)
	WeightDecay float64 // λ ≥ 0

	velocity map[*Tensor][]float64
}

// Step updates each trainable tensor of params that has a gradient.
func (o *SGD) Step(params []*Tensor, lr float64) {
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		theta, g := vals(p.Value), vals(p.Grad)
		var v []float64
		if o.Momentum != 0 {
			if o.velocity == nil {
				o.velocity = map[*Tensor][]float64{}
			}
			if v = o.velocity[p]; v == nil {
				v = make([]float64, len(theta))
				o.velocity[p] = v
			}
		}
		for i := range theta {
			d := g[i]
			if v != nil {
				v[i] = o.Momentum*v[i] + g[i] // accumulate the velocity
				d = v[i]
			}
			theta[i] -= lr * (d + o.WeightDecay*theta[i])
		}
		writeBack(p, theta)
	}
}

// StateBytes returns the size of the momentum buffers.
func (o *SGD) StateBytes() int {
	n := 0
	for _, v := range o.velocity {
		n += 8 * len(v)
	}
	return n
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter, 2019,
// "Decoupled Weight Decay Regularization", arXiv:1711.05101; Adam: Kingma &
// Ba, 2015, arXiv:1412.6980), as PyTorch's torch.optim.AdamW:
//
//	θ ← θ − lr·λ·θ                       decoupled weight decay
//	m ← β₁·m + (1−β₁)·g                  first moment
//	v ← β₂·v + (1−β₂)·g²                 second moment
//	m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)          bias correction
//	θ ← θ − lr·m̂/(√v̂ + ε)
//
// with t counted per tensor (the steps at which it had a gradient).
type AdamW struct {
	Beta1, Beta2 float64 // β₁, β₂ in [0, 1)
	Eps          float64 // ε > 0
	WeightDecay  float64 // λ ≥ 0

	state map[*Tensor]*adamState
}

type adamState struct {
	m, v []float64 // first and second moments, like the tensor
	t    int       // steps taken
}

// NewAdamW returns AdamW with PyTorch's defaults β₁ = 0.9, β₂ = 0.999,
// ε = 1e-8 and the given weight decay λ.
func NewAdamW(weightDecay float64) *AdamW {
	return &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
}

// Step updates each trainable tensor of params that has a gradient.
func (o *AdamW) Step(params []*Tensor, lr float64) {
	if o.state == nil {
		o.state = map[*Tensor]*adamState{}
	}
	b1, b2 := o.Beta1, o.Beta2
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		theta, g := vals(p.Value), vals(p.Grad)
		s := o.state[p]
		if s == nil {
			s = &adamState{m: make([]float64, len(theta)), v: make([]float64, len(theta))}
			o.state[p] = s
		}
		s.t++
		c1 := 1 - math.Pow(b1, float64(s.t)) // bias corrections of both moments
		c2 := 1 - math.Pow(b2, float64(s.t))
		decay := 1 - lr*o.WeightDecay
		for i, gi := range g {
			theta[i] *= decay                             // decoupled weight decay
			s.m[i] = b1*s.m[i] + (1-b1)*gi                // update the first moment (momentum)
			s.v[i] = b2*s.v[i] + (1-b2)*gi*gi             // update the second moment
			mh, vh := s.m[i]/c1, s.v[i]/c2                // bias-correct both moments
			theta[i] -= lr * mh / (math.Sqrt(vh) + o.Eps) // step
		}
		writeBack(p, theta)
	}
}

// StateBytes returns the size of the two moments, 16 bytes per parameter
// that has had a gradient.
func (o *AdamW) StateBytes() int {
	n := 0
	for _, s := range o.state {
		n += 8 * (len(s.m) + len(s.v))
	}
	return n
}

// writeBack stores theta into p's value if vals had to copy it (p.Value a
// view with a wider stride).
func writeBack(p *Tensor, theta []float64) {
	rm := p.Value.RawMatrix()
	if rm.Stride == rm.Cols {
		return
	}
	for i := 0; i < rm.Rows; i++ {
		copy(rm.Data[i*rm.Stride:i*rm.Stride+rm.Cols], theta[i*rm.Cols:(i+1)*rm.Cols])
	}
}

// AdamDirection updates Adam's moments m and v (contiguous, made by
// mat.NewDense, of g's shape) with the gradient g and returns the step
// direction bc·m/(√v + ε) as a new matrix:
//
//	m ← β₁·m + (1−β₁)·g,   v ← β₂·v + (1−β₂)·g²,   out = bc·m/(√v + ε)
//
// where bc is the bias correction through the step size,
// AdamBiasCorrection(t, β₁, β₂), as GaLore's code applies it (1 to leave
// it out). The optimizers that run Adam on projected gradients (GaLore,
// Fira, Q-GaLore, CoSO) share it, so the arithmetic is in one place.
func AdamDirection(m, v *mat.Dense, g mat.Matrix, beta1, beta2, eps, bc float64) *mat.Dense {
	r, c := g.Dims()
	if mr, mc := m.Dims(); mr != r || mc != c {
		panic(ShapeError{Op: "AdamDirection", Got: fmt.Sprintf("moments %s, gradient %s", ShapeOf(mr, mc), ShapeOf(r, c)), Want: "the same shape"})
	}
	md, vd := m.RawMatrix().Data, v.RawMatrix().Data
	gd := mat.DenseCopyOf(g).RawMatrix().Data
	out := mat.NewDense(r, c, nil)
	od := out.RawMatrix().Data
	for i, x := range gd {
		md[i] = beta1*md[i] + (1-beta1)*x   // update the first moment (momentum)
		vd[i] = beta2*vd[i] + (1-beta2)*x*x // update the second moment
		od[i] = bc * md[i] / (math.Sqrt(vd[i]) + eps)
	}
	return out
}

// AdamBiasCorrection returns √(1−β₂ᵗ)/(1−β₁ᵗ): both moments bias-corrected
// through the step size at step t (from 1).
func AdamBiasCorrection(t int, beta1, beta2 float64) float64 {
	return math.Sqrt(1-math.Pow(beta2, float64(t))) / (1 - math.Pow(beta1, float64(t)))
}
