package abmll

import (
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// RegressionTasks is a distribution of related linear-regression tasks
// built on a peft.TeacherTask: every task's teacher shares the base W₀ and
// the singular vectors of the base update ΔW* = U·diag(σ)·Vᵀ, and scales
// its singular values by its own random factors:
//
//	ΔW_i = U·diag(σ ⊙ (1 + Spread·z_i))·Vᵀ,   z_i ~ N(0, I_q)    (d×k, rank q)
//	y = x·(W₀ + ΔW_i)ᵀ,   x ~ N(0, I_k)                            (noise-free)
//
// so the tasks have a common mean update ΔW* (what θ's mean can learn) and
// vary in a q-dimensional family around it (what a task's few support
// examples must pin down). Task returns Support and Query fresh examples
// of one new task.
type RegressionTasks struct {
	Base           *peft.TeacherTask
	U              *mat.Dense // (d×q) left singular vectors of ΔW*
	V              *mat.Dense // (k×q) right singular vectors of ΔW*
	Spread         float64    // relative spread of the singular values across tasks
	Support, Query int        // examples per task in each set
}

// NewRegressionTasks returns related regression tasks on a teacher with W₀
// (d×k) and base update of singular values sigma (see peft.NewTeacherTask),
// each task with support and query examples, all drawn from seed. It
// panics on sizes out of range, as NewTeacherTask does.
func NewRegressionTasks(d, k int, sigma []float64, spread float64, support, query int, seed int64) *RegressionTasks {
	if support < 1 || query < 1 || spread < 0 {
		panic(peft.ArgError{Op: "abmll.NewRegressionTasks", Msg: fmt.Sprintf("support = %d, query = %d, spread = %g: want support, query ≥ 1 and spread ≥ 0", support, query, spread)})
	}
	base := peft.NewTeacherTask(d, k, sigma, 1, seed)
	var svd mat.SVD
	if !svd.Factorize(base.Delta, mat.SVDThin) {
		panic(peft.ArgError{Op: "abmll.NewRegressionTasks", Msg: "SVD of the teacher's ΔW* did not converge"})
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	q := len(sigma)
	return &RegressionTasks{
		Base:    base,
		U:       mat.DenseCopyOf(u.Slice(0, d, 0, q)),
		V:       mat.DenseCopyOf(v.Slice(0, k, 0, q)),
		Spread:  spread,
		Support: support,
		Query:   query,
	}
}

// Model returns a fresh student: a peft.LinearModel holding W₀.
func (t *RegressionTasks) Model() *peft.LinearModel { return t.Base.Model() }

// Teacher returns a new task's update ΔW_i (d×k), drawn from rng.
func (t *RegressionTasks) Teacher(rng *rand.Rand) *mat.Dense {
	q := len(t.Base.Sigma)
	var us mat.Dense
	us.Apply(func(_, j int, v float64) float64 {
		return v * t.Base.Sigma[j]
	}, t.U)
	for j := 0; j < q; j++ {
		f := 1 + t.Spread*rng.NormFloat64()
		for i := 0; i < us.RawMatrix().Rows; i++ {
			us.Set(i, j, us.At(i, j)*f)
		}
	}
	var dw mat.Dense
	dw.Mul(&us, t.V.T())
	return &dw
}

// Task draws one task from rng and returns Support and Query examples of
// it.
func (t *RegressionTasks) Task(rng *rand.Rand) (support, query peft.Batch) {
	dw := t.Teacher(rng)
	var w mat.Dense
	w.Add(t.Base.W0, dw)
	return t.examples(rng, &w, t.Support), t.examples(rng, &w, t.Query)
}

// examples returns n examples x ~ N(0, I), y = x·wᵀ.
func (t *RegressionTasks) examples(rng *rand.Rand, w *mat.Dense, n int) peft.Batch {
	d, k := w.Dims()
	x := mat.NewDense(n, k, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			x.Set(i, j, rng.NormFloat64())
		}
	}
	y := mat.NewDense(n, d, nil)
	y.Mul(x, w.T())
	return peft.Batch{X: x, Y: y}
}
