package peft

import (
	"fmt"
	"math/rand"

	"gonum.org/v1/gonum/mat"
)

// MLP is a classifier of stacked Linear layers "fc1", "fc2", … with ReLU
// between them (and optional dropout after each ReLU):
//
//	h₁ = ReLU(x·W₁ᵀ + b₁), …, logits = h_{L−1}·W_Lᵀ + b_L
//	x (n×sizes[0]), logits (n×sizes[L]), W_i (sizes[i]×sizes[i−1])
//
// Its loss is the mean cross-entropy of the logits against Batch.Labels.
type MLP struct {
	Layers  []*Linear // fc1 … fcL
	Dropout float64   // dropout probability after each hidden activation

	training bool
	rng      *rand.Rand
}

// NewMLP returns an MLP with layer widths sizes (input, hidden…, classes),
// initialized as PyTorch's nn.Linear from seed.
func NewMLP(sizes []int, seed int64) *MLP {
	if len(sizes) < 2 {
		panic(ArgError{Op: "NewMLP", Msg: fmt.Sprintf("sizes %v: want at least an input and an output width", sizes)})
	}
	rng := rand.New(rand.NewSource(seed))
	m := &MLP{rng: rand.New(rand.NewSource(seed + 1))}
	for i := 1; i < len(sizes); i++ {
		m.Layers = append(m.Layers, NewLinear(fmt.Sprintf("fc%d", i), sizes[i-1], sizes[i], true, rng))
	}
	return m
}

// Forward returns the logits (n×classes) for x (n×in).
func (m *MLP) Forward(x *Tensor) *Tensor {
	h := x
	for i, l := range m.Layers {
		h = l.Forward(h)
		if i < len(m.Layers)-1 {
			h = Dropout(ReLU(h), m.Dropout, m.rng, m.training)
		}
	}
	return h
}

// Modules returns fc1 … fcL.
func (m *MLP) Modules() []*Linear { return m.Layers }

// Params returns each layer's weight and bias, then the adapters' parameters.
func (m *MLP) Params() []*Tensor {
	var ps []*Tensor
	for _, l := range m.Layers {
		ps = append(ps, l.W)
		if l.B != nil {
			ps = append(ps, l.B)
		}
	}
	return append(ps, AdapterParams(m.Layers)...)
}

// Loss returns the mean cross-entropy of the logits of b.X against b.Labels.
func (m *MLP) Loss(b Batch) *Tensor {
	return CrossEntropy(m.Forward(NewConst(b.X)), b.Labels)
}

// SetTraining switches dropout (the model's and the adapters').
func (m *MLP) SetTraining(training bool) {
	m.training = training
	for _, l := range m.Layers {
		l.Training = training
	}
}

// Predict returns the most likely class of each row of x.
func (m *MLP) Predict(x *mat.Dense) []int {
	return argmaxRows(m.Forward(NewConst(x)).Value)
}

// Metric returns the accuracy on b.
func (m *MLP) Metric(b Batch) float64 {
	pred := m.Predict(b.X)
	correct := 0
	for i, p := range pred {
		if p == b.Labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(pred))
}

// MetricName returns "accuracy".
func (m *MLP) MetricName() string { return "accuracy" }

func argmaxRows(v *mat.Dense) []int {
	n, c := v.Dims()
	out := make([]int, n)
	for i := 0; i < n; i++ {
		best := 0
		for j := 1; j < c; j++ {
			if v.At(i, j) > v.At(i, best) {
				best = j
			}
		}
		out[i] = best
	}
	return out
}
