package peft

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// Adam's first bias-corrected step is sign(g) (up to ε), whatever |g|.
func TestAdamDirectionFirstStepIsSign(t *testing.T) {
	g := mat.NewDense(2, 2, []float64{2, -3e-3, 5e2, -1})
	m, v := mat.NewDense(2, 2, nil), mat.NewDense(2, 2, nil)
	d := AdamDirection(m, v, g, 0.9, 0.999, 1e-12, AdamBiasCorrection(1, 0.9, 0.999))
	for i := 0; i < 2; i++ {
		for j := 0; j < 2; j++ {
			if want := math.Copysign(1, g.At(i, j)); math.Abs(d.At(i, j)-want) > 1e-6 {
				t.Errorf("direction[%d,%d] = %v, want %v", i, j, d.At(i, j), want)
			}
		}
	}
	if math.Abs(m.At(0, 0)-0.2) > 1e-15 || math.Abs(v.At(0, 0)-0.004) > 1e-17 {
		t.Errorf("moments after one step: m = %v, v = %v; want 0.2, 0.004", m.At(0, 0), v.At(0, 0))
	}
	defer func() {
		if recover() == nil {
			t.Error("moments of another shape: no panic")
		}
	}()
	AdamDirection(mat.NewDense(1, 2, nil), mat.NewDense(1, 2, nil), g, 0.9, 0.999, 1e-8, 1)
}
