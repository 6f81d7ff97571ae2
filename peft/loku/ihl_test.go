package loku_test

import (
	"math"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/loku"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// TestIHLKnownAnswer checks IHL on logits log p, whose softmax is p: rows
// p = (0.5, 0.3, 0.2) with target 0 give 1 + 0.5 − 0.3 = 1.2, with target
// 2 give 1 + 0.2 − 0.5 = 0.7, so the mean is 0.95.
func TestIHLKnownAnswer(t *testing.T) {
	lp := []float64{math.Log(.5), math.Log(.3), math.Log(.2)}
	z := peft.NewConst(mat.NewDense(2, 3, append(append([]float64(nil), lp...), lp...)))
	if got := loku.IHL(z, []int{0, 2}).Scalar(); math.Abs(got-0.95) > 1e-15 {
		t.Errorf("IHL = %.17g, want 0.95", got)
	}
	if got := loku.IHL(z, []int{1, 1}).Scalar(); math.Abs(got-(1+.3-.5)) > 1e-15 {
		t.Errorf("IHL with the middle token as target = %.17g, want 0.8", got)
	}
}

// TestIHLGradient checks IHL's gradient with respect to the logits
// against central differences and against the closed form
//
//	∂IHL/∂z_ij = (1/n)·[p_t·([j=t] − p_j) − p_v·([j=v] − p_j)]
//
// on random logits (5×4), and that a second backward pass doubles it.
func TestIHLGradient(t *testing.T) {
	const n, V = 5, 4
	rng := rand.New(rand.NewSource(1))
	z0 := adaptertest.RandDense(rng, n, V)
	targets := []int{0, 3, 1, 2, 1}
	z := peft.NewParam("z", mat.DenseCopyOf(z0))
	loku.IHL(z, targets).Backward()
	got := mat.DenseCopyOf(z.Grad)

	num := fd.Gradient(nil, func(x []float64) float64 {
		return loku.IHL(peft.NewConst(mat.NewDense(n, V, x)), targets).Scalar()
	}, append([]float64(nil), z0.RawMatrix().Data...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
	var worst float64
	for i := 0; i < n; i++ {
		p := softmax(z0.RawRowView(i))
		tt, v := targets[i], -1
		for j := range p {
			if j != tt && (v < 0 || p[j] > p[v]) {
				v = j
			}
		}
		for j := range p {
			want := (p[tt]*(delta(j, tt)-p[j]) - p[v]*(delta(j, v)-p[j])) / n
			if d := math.Abs(got.At(i, j) - want); d > 1e-15 {
				t.Errorf("∂IHL/∂z[%d,%d] = %.17g, closed form %.17g", i, j, got.At(i, j), want)
			}
			worst = math.Max(worst, math.Abs(got.At(i, j)-num[i*V+j])/math.Max(math.Abs(want), 1e-3))
		}
	}
	if worst > 1e-7 {
		t.Errorf("gradient off central differences by %.3g relative", worst)
	}
	loku.IHL(z, targets).Backward()
	for i := 0; i < n; i++ {
		for j := 0; j < V; j++ {
			if d := math.Abs(z.Grad.At(i, j) - 2*got.At(i, j)); d > 1e-15 {
				t.Fatalf("second backward: %g at [%d,%d], want twice %g", z.Grad.At(i, j), i, j, got.At(i, j))
			}
		}
	}
}

// TestIHLBounded checks 0 ≤ IHL ≤ 2 on logits of every scale up to 1e3,
// that the bounds are approached (a certain target gives 2, a certain
// other token 0), and that gradient ascent's loss −CE is not bounded: it
// falls without limit as the target's logit does.
func TestIHLBounded(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, scale := range []float64{1e-3, 1, 10, 100, 1e3} {
		for trial := 0; trial < 20; trial++ {
			z := adaptertest.RandDense(rng, 6, 5)
			z.Scale(scale, z)
			targets := make([]int, 6)
			for i := range targets {
				targets[i] = rng.Intn(5)
			}
			if v := loku.IHL(peft.NewConst(z), targets).Scalar(); v < 0 || v > 2 {
				t.Fatalf("scale %g: IHL = %v outside [0, 2]", scale, v)
			}
		}
	}
	sure := peft.NewConst(mat.NewDense(1, 3, []float64{50, 0, 0}))
	if v := loku.IHL(sure, []int{0}).Scalar(); math.Abs(v-2) > 1e-15 {
		t.Errorf("IHL with the target certain = %.17g, want 2", v)
	}
	if v := loku.IHL(sure, []int{1}).Scalar(); math.Abs(v) > 1e-15 {
		t.Errorf("IHL with another token certain = %.17g, want 0", v)
	}
	for _, c := range []float64{10, 100, 1000} {
		z := peft.NewConst(mat.NewDense(1, 3, []float64{-c, 0, 0}))
		ga := -peft.CrossEntropy(z, []int{0}).Scalar()
		if ga > -c+math.Log(3) {
			t.Errorf("z_t = −%g: gradient ascent's loss −CE = %v, want ≤ −%g + ln 3 (unbounded below)", c, ga, c)
		}
		if v := loku.IHL(z, []int{0}).Scalar(); v < 0 {
			t.Errorf("z_t = −%g: IHL = %v < 0", c, v)
		}
	}
}

func softmax(x []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	p := make([]float64, len(x))
	var s float64
	for i, v := range x {
		p[i] = math.Exp(v - mx)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

func delta(a, b int) float64 {
	if a == b {
		return 1
	}
	return 0
}
