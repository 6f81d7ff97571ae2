package moram_test

import (
	"math"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/moram"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// opGrad returns the worst relative error between the backward gradient of
// Σ wts ⊙ f(p) with respect to p (n×m) and central differences.
func opGrad(p *mat.Dense, f func(*peft.Tensor) *peft.Tensor, wts *mat.Dense) float64 {
	n, m := p.Dims()
	pt := peft.NewParam("p", mat.DenseCopyOf(p))
	loss := func() *peft.Tensor { return peft.SumAll(peft.Mul(f(pt), peft.NewConst(wts))) }
	loss().Backward()
	g := pt.Grad.RawMatrix().Data
	x0 := mat.DenseCopyOf(p).RawMatrix().Data
	num := fd.Gradient(nil, func(v []float64) float64 {
		for j, e := range v {
			pt.Value.Set(j/m, j%m, e)
		}
		return loss().Scalar()
	}, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
	_ = n
	var worst float64
	for j := range num {
		worst = math.Max(worst, math.Abs(g[j]-num[j])/math.Max(math.Max(math.Abs(g[j]), math.Abs(num[j])), 1e-3))
	}
	return worst
}

// TestNormalizeRows: rows of unit norm, each a positive multiple of the
// input row; a zero row stays zero with a finite gradient (1/ε times the
// upstream one, as F.normalize: p ↦ p̂ is not continuous at 0); and away
// from zero the gradient matches central differences to 1e-7.
func TestNormalizeRows(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	p := adaptertest.RandDense(rng, 5, 4)
	p.SetRow(2, []float64{0, 0, 0, 0})
	ph := moram.NormalizeRows(peft.NewConst(p)).Value
	for i := 0; i < 5; i++ {
		row, in := ph.RawRowView(i), p.RawRowView(i)
		if i == 2 {
			if !floats.Equal(row, in) {
				t.Errorf("zero row normalised to %v, want zeros", row)
			}
			continue
		}
		if nrm := floats.Norm(row, 2); math.Abs(nrm-1) > 1e-15 {
			t.Errorf("row %d has norm %.17g, want 1", i, nrm)
		}
		c := floats.Norm(in, 2)
		for j := range row {
			if math.Abs(row[j]*c-in[j]) > 1e-15*c {
				t.Errorf("row %d: p̂ = %v is not p/‖p‖ for p = %v", i, row, in)
			}
		}
	}
	wts := adaptertest.RandDense(rng, 5, 4)
	pt := peft.NewParam("p", p)
	peft.SumAll(peft.Mul(moram.NormalizeRows(pt), peft.NewConst(wts))).Backward()
	g, want := pt.Grad.RawRowView(2), wts.RawRowView(2)
	for j := range g {
		if math.Abs(g[j]-want[j]*1e12) > 1e-3 {
			t.Errorf("zero row's gradient %v, want 1e12 × %v", g, want)
			break
		}
	}
	p.SetRow(2, []float64{0.3, 0, -0.1, 0})
	if worst := opGrad(p, moram.NormalizeRows, wts); worst > 1e-7 {
		t.Errorf("normalizeRows: gradient off by %.3g relative, want ≤ 1e-7", worst)
	}
}

// TestTopK: exactly min(k, m) kept per row, the largest, ties to the
// lower index.
func TestTopK(t *testing.T) {
	v := mat.NewDense(3, 5, []float64{
		0.1, 0.5, -0.2, 0.5, 0.3,
		1, 1, 1, 1, 1,
		-3, -1, -2, -5, -4,
	})
	for _, c := range []struct {
		k    int
		want [][]bool
	}{
		{2, [][]bool{{false, true, false, true, false}, {true, true, false, false, false}, {false, true, true, false, false}}},
		{1, [][]bool{{false, true, false, false, false}, {true, false, false, false, false}, {false, true, false, false, false}}},
		{3, [][]bool{{false, true, false, true, true}, {true, true, true, false, false}, {true, true, true, false, false}}},
		{9, [][]bool{{true, true, true, true, true}, {true, true, true, true, true}, {true, true, true, true, true}}},
	} {
		got := moram.TopK(v, c.k)
		for i := range got {
			for j := range got[i] {
				if got[i][j] != c.want[i][j] {
					t.Errorf("k=%d: row %d kept %v, want %v", c.k, i, got[i], c.want[i])
					break
				}
			}
		}
	}
}

// TestMaskedSoftmax: zero outside the kept entries, the softmax of the
// kept ones inside, and gradients (which reach the kept entries only)
// that match central differences.
func TestMaskedSoftmax(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	z := adaptertest.RandDense(rng, 4, 5)
	keep := moram.TopK(z, 3)
	w := moram.MaskedSoftmax(peft.NewConst(z), keep).Value
	for i := 0; i < 4; i++ {
		var s float64
		for j := 0; j < 5; j++ {
			if keep[i][j] {
				s += math.Exp(z.At(i, j))
			}
		}
		for j := 0; j < 5; j++ {
			want := 0.0
			if keep[i][j] {
				want = math.Exp(z.At(i, j)) / s
			}
			if math.Abs(w.At(i, j)-want) > 1e-15 {
				t.Errorf("w[%d,%d] = %g, want %g", i, j, w.At(i, j), want)
			}
		}
	}
	wts := adaptertest.RandDense(rng, 4, 5)
	f := func(p *peft.Tensor) *peft.Tensor { return moram.MaskedSoftmax(p, keep) }
	if worst := opGrad(z, f, wts); worst > 1e-7 {
		t.Errorf("maskedSoftmax: gradient off by %.3g relative, want ≤ 1e-7", worst)
	}
	zt := peft.NewParam("z", z)
	peft.SumAll(peft.Mul(f(zt), peft.NewConst(wts))).Backward()
	for i := 0; i < 4; i++ {
		for j := 0; j < 5; j++ {
			if !keep[i][j] && zt.Grad.At(i, j) != 0 {
				t.Errorf("dropped entry [%d,%d] got gradient %g", i, j, zt.Grad.At(i, j))
			}
		}
	}
}
