package snella_test

import (
	"math"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/snella"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// distRef returns ‖x_i − y_j‖ (m×n) by a direct loop: the tests' oracle.
func distRef(x, y *mat.Dense) *mat.Dense {
	m, p := x.Dims()
	n, _ := y.Dims()
	d := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for t := 0; t < p; t++ {
				s += (x.At(i, t) - y.At(j, t)) * (x.At(i, t) - y.At(j, t))
			}
			d.Set(i, j, math.Sqrt(s))
		}
	}
	return d
}

// TestDistGradient checks Dist's value against a direct loop (bit for
// bit), its gradients against central differences (x 5×3, y 4×3, with
// one pair at zero distance, where the subgradient 0 is also what central
// differences give), and that a second backward pass doubles them.
func TestDistGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(1)) // Always the same seed for reproducible results.
	x := peft.NewParam("x", adaptertest.RandDense(rng, 5, 3))
	y := peft.NewParam("y", adaptertest.RandDense(rng, 4, 3))
	y.Value.SetRow(2, x.Value.RawRowView(1)) // D_12 = 0
	wts := peft.NewConst(adaptertest.RandDense(rng, 5, 4))
	d := snella.Dist(x, y)
	if !mat.Equal(d.Value, distRef(x.Value, y.Value)) {
		t.Fatal("Dist's value differs from the direct loop")
	}
	if d.Value.At(1, 2) != 0 {
		t.Fatalf("D_12 = %g, want 0", d.Value.At(1, 2))
	}
	loss := func() *peft.Tensor { return peft.SumAll(peft.Mul(snella.Dist(x, y), wts)) }
	x.ZeroGrad()
	y.ZeroGrad()
	loss().Backward()
	grads := []*mat.Dense{mat.DenseCopyOf(x.Grad), mat.DenseCopyOf(y.Grad)}
	loss().Backward()
	for i, p := range []*peft.Tensor{x, y} {
		var twice mat.Dense
		twice.Scale(2, grads[i])
		if adaptertest.RelDiffMax(p.Grad, &twice) > 1e-14 {
			t.Errorf("%s: a second backward does not double the gradient", p.Name)
		}
	}
	var worst float64
	for i, p := range []*peft.Tensor{x, y} {
		_, c := p.Dims()
		x0 := append([]float64(nil), mat.DenseCopyOf(p.Value).RawMatrix().Data...)
		set := func(v []float64) {
			for j, e := range v {
				p.Value.Set(j/c, j%c, e)
			}
		}
		num := fd.Gradient(nil, func(v []float64) float64 {
			set(v)
			return loss().Scalar()
		}, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		for j, n := range num {
			a := grads[i].RawMatrix().Data[j]
			worst = math.Max(worst, math.Abs(a-n)/math.Max(math.Max(math.Abs(a), math.Abs(n)), 1e-3))
		}
	}
	t.Logf("max relative error of Dist's gradient against central differences: %.3g", worst)
	if worst > 1e-7 {
		t.Errorf("Dist's gradient off by %.3g relative", worst)
	}
}

// TestDistZero: at zero distance the gradient is the subgradient 0 (known
// answer, exactly), and a pair of distinct rows gets ±(x − y)/‖x − y‖
// (to 1e-15).
func TestDistZero(t *testing.T) {
	x := peft.NewParam("x", mat.NewDense(2, 2, []float64{1, 2, 4, 6}))
	y := peft.NewParam("y", mat.NewDense(1, 2, []float64{1, 2}))
	peft.SumAll(snella.Dist(x, y)).Backward() // D = [0; 5]
	wantX := []float64{0, 0, 0.6, 0.8}        // row 0 at zero distance; row 1: (3, 4)/5
	wantY := []float64{-0.6, -0.8}
	if !mat.EqualApprox(x.Grad, mat.NewDense(2, 2, wantX), 1e-15) || !mat.EqualApprox(y.Grad, mat.NewDense(1, 2, wantY), 1e-15) || x.Grad.At(0, 0) != 0 || x.Grad.At(0, 1) != 0 {
		t.Errorf("dx = %v, dy = %v; want %v, %v", mat.Formatted(x.Grad), mat.Formatted(y.Grad), wantX, wantY)
	}
}

func TestDistShape(t *testing.T) {
	err := peft.Maybe(func() { snella.Dist(peft.NewConst(mat.NewDense(2, 3, nil)), peft.NewConst(mat.NewDense(4, 2, nil))) })
	if e := adaptertest.ErrorMentions(err, "snella.Dist", "(2×3)", "(4×2)"); e != nil {
		t.Error(e)
	}
}
