package peft

import (
	"fmt"
	"math"
	"math/rand"

	"gonum.org/v1/gonum/mat"
)

// TeacherTask is a regression task with a known answer, for showing what
// rank an adapter needs: a teacher weight
//
//	W* = W₀ + ΔW*,   ΔW* = U·diag(σ)·Vᵀ,   W₀, ΔW*: d×k,  U: d×r,  V: k×r
//
// with U, V random orthonormal columns and σ the chosen spectrum, so that
// rank(ΔW*) = r = len(σ). Inputs x (1×k) are standard normal and targets are
// y = x·W*ᵀ (1×d), noise-free. The student (Model) starts from W₀; LoRA of
// rank ≥ r on it can reach W* exactly, while at rank r′ < r no update does
// better than the Eckart–Young floor √(Σ_{i>r′} σᵢ²) (BestRankError).
type TeacherTask struct {
	W0    *mat.Dense // (d×k) the base weight the student starts from
	Delta *mat.Dense // (d×k) ΔW*
	WStar *mat.Dense // (d×k) W₀ + ΔW*
	Sigma []float64  // singular values of ΔW*, descending
	X     *mat.Dense // (n×k) training inputs
	Y     *mat.Dense // (n×d) training targets
	EvalX *mat.Dense // (n×k) evaluation inputs
	EvalY *mat.Dense // (n×d) evaluation targets
}

// NewTeacherTask returns a teacher task with W₀ (d×k) of N(0, 1/k) entries,
// ΔW* of singular values sigma (positive, at most min(d, k) of them) and n
// training and n evaluation examples, all drawn from seed.
func NewTeacherTask(d, k int, sigma []float64, n int, seed int64) *TeacherTask {
	r := len(sigma)
	if d < 1 || k < 1 || n < 1 || r < 1 || r > min(d, k) {
		panic(ArgError{Op: "NewTeacherTask", Msg: fmt.Sprintf("d = %d, k = %d, n = %d, rank %d: want d, k, n ≥ 1 and 1 ≤ len(sigma) ≤ min(d, k)", d, k, n, r)})
	}
	s := append([]float64(nil), sigma...)
	for i, v := range s {
		if !(v > 0) || math.IsInf(v, 0) || (i > 0 && v > s[i-1]) {
			panic(ArgError{Op: "NewTeacherTask", Msg: fmt.Sprintf("sigma = %v: want positive, finite, descending values", sigma)})
		}
	}
	rng := rand.New(rand.NewSource(seed))
	gauss := func(r, c int, std float64) *mat.Dense {
		m := mat.NewDense(r, c, nil)
		for i := 0; i < r; i++ {
			for j := 0; j < c; j++ {
				m.Set(i, j, std*rng.NormFloat64())
			}
		}
		return m
	}
	t := &TeacherTask{W0: gauss(d, k, 1/math.Sqrt(float64(k))), Sigma: s}
	U, V := orthonormalCols(gauss(d, r, 1)), orthonormalCols(gauss(k, r, 1))
	var us mat.Dense
	us.Apply(func(_, j int, v float64) float64 { return v * s[j] }, U)
	t.Delta = mat.NewDense(d, k, nil)
	t.Delta.Mul(&us, V.T())
	t.WStar = mat.NewDense(d, k, nil)
	t.WStar.Add(t.W0, t.Delta)
	t.X, t.EvalX = gauss(n, k, 1), gauss(n, k, 1)
	t.Y, t.EvalY = mat.NewDense(n, d, nil), mat.NewDense(n, d, nil)
	t.Y.Mul(t.X, t.WStar.T())
	t.EvalY.Mul(t.EvalX, t.WStar.T())
	return t
}

// orthonormalCols returns the Q of a's thin QR factorization: orthonormal
// columns spanning a's (r×c, r ≥ c).
func orthonormalCols(a *mat.Dense) *mat.Dense {
	var qr mat.QR
	qr.Factorize(a)
	var q mat.Dense
	qr.QTo(&q)
	r, c := a.Dims()
	return mat.DenseCopyOf(q.Slice(0, r, 0, c))
}

// Model returns a fresh student: a LinearModel whose layer "proj" holds a
// copy of W₀.
func (t *TeacherTask) Model() *LinearModel {
	return &LinearModel{Layer: &Linear{Name: "proj", W: NewParam("proj.weight", mat.DenseCopyOf(t.W0))}}
}

// Sample returns size random training examples.
func (t *TeacherTask) Sample(rng *rand.Rand, size int) Batch {
	n, k := t.X.Dims()
	_, d := t.Y.Dims()
	b := Batch{X: mat.NewDense(size, k, nil), Y: mat.NewDense(size, d, nil)}
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		b.X.SetRow(i, t.X.RawRowView(j))
		b.Y.SetRow(i, t.Y.RawRowView(j))
	}
	return b
}

// EvalBatches returns the evaluation set as one batch.
func (t *TeacherTask) EvalBatches() []Batch { return []Batch{{X: t.EvalX, Y: t.EvalY}} }

// RecoveryError returns ‖W − W*‖_F / ‖ΔW*‖_F for the student's effective
// weight W (its active adapter merged in, if any): 0 when the student found
// the teacher, 1 when it did not move from W₀.
func (t *TeacherTask) RecoveryError(m *LinearModel) float64 {
	w := m.Layer.W.Value // holds the adapter if it is merged
	if a := m.Layer.ActiveAdapter(); a != nil && m.Layer.Merged() == "" {
		w = a.MergedWeight(mat.DenseCopyOf(w))
	}
	var diff mat.Dense
	diff.Sub(w, t.WStar)
	return mat.Norm(&diff, 2) / mat.Norm(t.Delta, 2)
}

// BestRankError returns the smallest RecoveryError any update of rank ≤ r
// can reach (Eckart–Young): √(Σ_{i>r} σᵢ²) / √(Σ σᵢ²).
func (t *TeacherTask) BestRankError(r int) float64 {
	var tail, all float64
	for i, s := range t.Sigma {
		all += s * s
		if i >= r {
			tail += s * s
		}
	}
	return math.Sqrt(tail / all)
}

// LinearModel is a single Linear layer "proj" trained by mean squared error,
// y = x·Wᵀ (+ b): the student of a TeacherTask.
type LinearModel struct {
	Layer *Linear
}

// Forward returns x·Wᵀ (+ b), adapted.
func (m *LinearModel) Forward(x *Tensor) *Tensor { return m.Layer.Forward(x) }

// Modules returns the one layer.
func (m *LinearModel) Modules() []*Linear { return []*Linear{m.Layer} }

// Params returns W (and b), then the adapters' parameters.
func (m *LinearModel) Params() []*Tensor {
	ps := []*Tensor{m.Layer.W}
	if m.Layer.B != nil {
		ps = append(ps, m.Layer.B)
	}
	return append(ps, AdapterParams(m.Modules())...)
}

// Loss returns the mean over the elements of (ŷ − y)².
func (m *LinearModel) Loss(b Batch) *Tensor {
	d := Sub(m.Forward(NewConst(b.X)), NewConst(b.Y))
	return Mean(Mul(d, d))
}

// SetTraining switches the adapters' dropout.
func (m *LinearModel) SetTraining(training bool) { m.Layer.Training = training }
