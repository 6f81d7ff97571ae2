package lrpretrain

import (
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/blas/blas64"
)

// Adam is AdamW (Loshchilov & Hutter, 2019, arXiv:1711.05101; Adam:
// Kingma & Ba, 2015, arXiv:1412.6980) whose moments can be reset, for the
// momentum reset of Restarter. Its update is peft.AdamW's, as PyTorch's
// torch.optim.AdamW:
//
//	θ ← θ·(1 − η'·λ)                     decoupled weight decay
//	m ← β₁·m + (1−β₁)·g                  first moment
//	v ← β₂·v + (1−β₂)·g²                 second moment
//	θ ← θ − η'·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
//
// with t counted per tensor and η' = η, the rate Step is given, except in
// the Recovery steps after a reset of the tensor: there η' = η·j/Recovery
// at the j-th step after it (the "quick recovery" warm-up of the paper's
// code, which follows each restart; 0 turns it off). ResetState sets m,
// v and t of the tensors it is given to 0, so the next step is exactly a
// fresh optimizer's (at rate η' when recovering).
type Adam struct {
	Beta1, Beta2 float64 // β₁, β₂ in [0, 1)
	Eps          float64 // ε > 0
	WeightDecay  float64 // λ ≥ 0
	Recovery     int     // steps of the linear warm-up after a reset, ≥ 0

	state map[*peft.Tensor]*adamState
}

var _ peft.Optimizer = (*Adam)(nil)

type adamState struct {
	m, v      []float64 // first and second moments, like the tensor (row-major)
	t         int       // steps since the start or the last reset
	recovered bool      // the tensor was reset: its rate warms up again
}

// NewAdam returns Adam with PyTorch's defaults β₁ = 0.9, β₂ = 0.999,
// ε = 1e-8, the given weight decay λ and no recovery warm-up.
func NewAdam(weightDecay float64) *Adam {
	return &Adam{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
}

// Step updates each trainable tensor of params that has a gradient.
func (o *Adam) Step(params []*peft.Tensor, lr float64) {
	if o.state == nil {
		o.state = map[*peft.Tensor]*adamState{}
	}
	b1, b2 := o.Beta1, o.Beta2
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		theta := rowMajor(p.Value.RawMatrix())
		g := rowMajor(p.Grad.RawMatrix())
		s := o.state[p]
		if s == nil {
			s = &adamState{m: make([]float64, len(theta)), v: make([]float64, len(theta))}
			o.state[p] = s
		}
		s.t++
		eta := lr
		if s.recovered && o.Recovery > 0 && s.t < o.Recovery {
			eta = lr * float64(s.t) / float64(o.Recovery) // quick-recovery warm-up
		}
		c1 := 1 - math.Pow(b1, float64(s.t)) // bias corrections of both moments
		c2 := 1 - math.Pow(b2, float64(s.t))
		decay := 1 - eta*o.WeightDecay
		for i, gi := range g {
			theta[i] *= decay                              // decoupled weight decay
			s.m[i] = b1*s.m[i] + (1-b1)*gi                 // update the first moment (momentum)
			s.v[i] = b2*s.v[i] + (1-b2)*gi*gi              // update the second moment
			mh, vh := s.m[i]/c1, s.v[i]/c2                 // bias-correct both moments
			theta[i] -= eta * mh / (math.Sqrt(vh) + o.Eps) // step
		}
		writeBack(p, theta)
	}
}

// StateBytes returns the size of the two moments, 16 bytes per entry of
// each tensor that has had a gradient (a reset zeroes them but keeps
// them).
func (o *Adam) StateBytes() int {
	n := 0
	for _, s := range o.state {
		n += 8 * (len(s.m) + len(s.v))
	}
	return n
}

// ResetState zeroes the moments m and v of the given tensors, and their
// step counts t, so that each one's next step is a fresh Adam step (the
// paper's momentum reset); with no argument, every tensor's (the paper's
// code rebuilds the optimizer). A tensor not yet stepped is left alone.
// The tensors reset then warm up over Recovery steps.
func (o *Adam) ResetState(params ...*peft.Tensor) {
	reset := func(s *adamState) {
		clear(s.m)
		clear(s.v)
		s.t = 0
		s.recovered = true
	}
	if len(params) == 0 {
		for _, s := range o.state {
			reset(s)
		}
		return
	}
	for _, p := range params {
		if s := o.state[p]; s != nil {
			reset(s)
		}
	}
}

// Moments returns copies of p's first and second moments (row-major, like
// p) and its step count since the start or the last reset; ok is false if
// p has not been stepped.
func (o *Adam) Moments(p *peft.Tensor) (m, v []float64, t int, ok bool) {
	s := o.state[p]
	if s == nil {
		return nil, nil, 0, false
	}
	return append([]float64(nil), s.m...), append([]float64(nil), s.v...), s.t, true
}

// rowMajor returns the entries of g row after row: its Data when
// contiguous, else a copy (which writeBack stores back).
func rowMajor(g blas64.General) []float64 {
	if g.Stride == g.Cols {
		return g.Data[:g.Rows*g.Cols]
	}
	out := make([]float64, 0, g.Rows*g.Cols)
	for i := 0; i < g.Rows; i++ {
		out = append(out, g.Data[i*g.Stride:i*g.Stride+g.Cols]...)
	}
	return out
}

// writeBack stores theta into p's value if rowMajor had to copy it.
func writeBack(p *peft.Tensor, theta []float64) {
	rm := p.Value.RawMatrix()
	if rm.Stride == rm.Cols {
		return
	}
	for i := 0; i < rm.Rows; i++ {
		copy(rm.Data[i*rm.Stride:i*rm.Stride+rm.Cols], theta[i*rm.Cols:(i+1)*rm.Cols])
	}
}
