package peft_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// pissaInput returns an n×k input of N(0,1) entries.
func pissaInput(seed uint64, n, k int) *peft.Tensor {
	return peft.NewConst(galoreRand(rand.New(rand.NewPCG(seed, 99)), n, k))
}

func pissaSingularValues(t *testing.T, a mat.Matrix) []float64 {
	t.Helper()
	s, err := accel.SingularValues(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPiSSAInit checks W_res + s·B·A = W, that W_res's singular values are
// W's tail (σ_{r+1}, …, then r zeros), ‖W_res‖₂ = σ_{r+1}, and that the
// model's output does not change, for the exact and the fast init and both
// scalings.
func TestPiSSAInit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alpha float64
		rs    bool
		niter int
		tol   float64
	}{
		{"exact", 6, false, 0, 1e-12},
		{"rslora", 3, true, 0, 1e-12},
		{"fast", 1, false, 4, 1e-9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const r = 3
			m := peft.NewMLP([]int{8, 12, 6}, 1)
			x := pissaInput(1, 5, 8)
			y0 := mat.DenseCopyOf(m.Forward(x).Value)
			w0 := []*mat.Dense{mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)}
			ads, err := peft.AddPiSSA(m, peft.PiSSAConfig{R: r, Alpha: tc.alpha, RSLoRA: tc.rs, NIter: tc.niter, Targets: []string{"fc1", "fc2"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(ads) != 2 {
				t.Fatalf("%d adapters, want 2", len(ads))
			}
			for i, a := range ads {
				l := m.Layers[i]
				w := w0[i]
				rebuilt := a.MergedWeight(l.W.Value) // W_res + s·B·A
				if d := galoreMaxAbsDiff(rebuilt, w); d > 1e-12 {
					t.Errorf("%s: |W_res + s·B·A − W|max = %g", l.Name, d)
				}
				sw := pissaSingularValues(t, w)
				sr := pissaSingularValues(t, l.W.Value)
				p := len(sw)
				for j := 0; j < p; j++ {
					want := 0.0
					if j+r < p {
						want = sw[j+r]
					}
					if math.Abs(sr[j]-want) > tc.tol*sw[0] {
						t.Errorf("%s: σ_%d(W_res) = %.15g, want %.15g", l.Name, j+1, sr[j], want)
					}
				}
				if math.Abs(sr[0]-sw[r]) > tc.tol*sw[0] {
					t.Errorf("%s: ‖W_res‖₂ = %g, want σ_{r+1} = %g", l.Name, sr[0], sw[r])
				}
				// s·B·A is the best rank-r approximation: B's columns are
				// orthogonal with ‖b_i‖² = σ_i/s, as are A's rows.
				var btb mat.Dense
				btb.Mul(a.B.Value.T(), a.B.Value)
				for j := 0; j < r; j++ {
					for k := 0; k < r; k++ {
						want := 0.0
						if j == k {
							want = sw[j] / a.Scaling()
						}
						if math.Abs(btb.At(j, k)-want) > tc.tol*sw[0] {
							t.Errorf("%s: (BᵀB)_%d%d = %g, want %g", l.Name, j, k, btb.At(j, k), want)
						}
					}
				}
			}
			y := m.Forward(x).Value
			if d := galoreMaxAbsDiff(y, y0); d > 1e-12 {
				t.Errorf("output changed by %g after PiSSA init", d)
			}
		})
	}
}

// TestPiSSAToLoRA trains a PiSSA adapter for a few steps, exports it as a
// rank-2r LoRA on the original W and checks both the weight and the model's
// output against the PiSSA model.
func TestPiSSAToLoRA(t *testing.T) {
	for _, rs := range []bool{false, true} {
		const r = 2
		base := peft.NewMLP([]int{6, 7, 4}, 3)
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		ads, err := peft.AddPiSSA(m, peft.PiSSAConfig{R: r, Alpha: 4, RSLoRA: rs, Targets: []string{"fc1"}})
		if err != nil {
			t.Fatal(err)
		}
		a := ads[0]
		a0, b0 := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value)
		// a few SGD steps on a classification batch
		x := galoreRand(rand.New(rand.NewPCG(4, 4)), 10, 6)
		labels := []int{0, 1, 2, 3, 0, 1, 2, 3, 0, 1}
		for step := 0; step < 5; step++ {
			for _, p := range a.Params() {
				p.ZeroGrad()
			}
			m.Loss(peft.Batch{X: x, Labels: labels}).Backward()
			for _, p := range a.Params() {
				p.Value.Add(p.Value, scaledBy(-0.5, p.Grad))
			}
		}
		if galoreMaxAbsDiff(a.B.Value, b0) < 1e-6 {
			t.Fatal("training did not move B")
		}
		exp := peft.PiSSAToLoRA(a, a0, b0)
		if exp.R != 2*r || exp.Scaling() == 0 || math.Abs(exp.Scaling()-a.Scaling()) > 1e-15 {
			t.Errorf("export: r = %d, s = %g; want r = %d, s = %g", exp.R, exp.Scaling(), 2*r, a.Scaling())
		}
		trained := a.MergedWeight(m.Layers[0].W.Value)       // W_res + s·B_t·A_t
		exported := exp.MergedWeight(base.Layers[0].W.Value) // W + s·B'·A'
		if d := galoreMaxAbsDiff(trained, exported); d > 1e-12 {
			t.Errorf("rsLoRA=%v: exported weight differs by %g", rs, d)
		}
		if err := base.Layers[0].Attach("pissa", exp); err != nil {
			t.Fatal(err)
		}
		xt := peft.NewConst(x)
		if d := galoreMaxAbsDiff(base.Forward(xt).Value, m.Forward(xt).Value); d > 1e-12 {
			t.Errorf("rsLoRA=%v: exported model's output differs by %g", rs, d)
		}
	}
}

func scaledBy(s float64, a mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.Scale(s, a)
	return &d
}

func TestPiSSABadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg  peft.PiSSAConfig
		want []string
	}{
		{peft.PiSSAConfig{R: 0, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "r = 0", "4"}},
		{peft.PiSSAConfig{R: 5, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "r = 5", "4"}},
		{peft.PiSSAConfig{R: 2, Targets: []string{"fc9"}}, []string{"fc9", "fc1", "fc2"}},
		{peft.PiSSAConfig{R: 2, NIter: -1, Targets: []string{"fc1"}}, []string{"NIter = -1"}},
		{peft.PiSSAConfig{R: 2, Dropout: 1, Targets: []string{"fc1"}}, []string{"fc1", "dropout"}},
	} {
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		w1, w2 := mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)
		_, err := peft.AddPiSSA(m, tc.cfg)
		if err == nil {
			t.Errorf("%+v: no error", tc.cfg)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%+v: error %q does not mention %q", tc.cfg, err, s)
			}
		}
		if !mat.Equal(w1, m.Layers[0].W.Value) || !mat.Equal(w2, m.Layers[1].W.Value) {
			t.Errorf("%+v: a failed AddPiSSA changed W", tc.cfg)
		}
	}
	// A module with an adapter already: error, and no W changes.
	m := peft.NewMLP([]int{6, 7, 4}, 3)
	if _, err := peft.AddLoRA(m, peft.LoRAConfig{R: 2, Targets: []string{"fc2"}}); err != nil {
		t.Fatal(err)
	}
	w1 := mat.DenseCopyOf(m.Layers[0].W.Value)
	if _, err := peft.AddPiSSA(m, peft.PiSSAConfig{R: 2, Name: "p", Targets: []string{"fc1", "fc2"}}); err == nil || !strings.Contains(err.Error(), "fc2") {
		t.Errorf("PiSSA on a module with a LoRA: err = %v, want one naming fc2", err)
	}
	if !mat.Equal(w1, m.Layers[0].W.Value) {
		t.Error("a failed AddPiSSA changed fc1's W")
	}
	if len(m.Layers[0].Adapters) != 0 {
		t.Error("a failed AddPiSSA left an adapter on fc1")
	}
}

// ExamplePiSSAConfig initializes a rank-2 PiSSA adapter and shows that the
// frozen residual keeps only W's tail of singular values.
func ExamplePiSSAConfig() {
	m := peft.NewMLP([]int{6, 5, 3}, 7)
	s0, _ := accel.SingularValues(context.Background(), m.Layers[0].W.Value)
	ads, err := peft.AddPiSSA(m, peft.PiSSAConfig{R: 2, Alpha: 4, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	s1, _ := accel.SingularValues(context.Background(), m.Layers[0].W.Value)
	fmt.Printf("σ(W)     = %.4f\n", s0)
	fmt.Printf("σ(W_res) = %.4f\n", s1)
	fmt.Printf("B %d×%d, A %d×%d, s = %g\n", ads[0].B.Value.RawMatrix().Rows, ads[0].R, ads[0].R, ads[0].A.Value.RawMatrix().Cols, ads[0].Scaling())
	// Output:
	// σ(W)     = [0.9978 0.7013 0.3857 0.3537 0.1962]
	// σ(W_res) = [0.3857 0.3537 0.1962 0.0000 0.0000]
	// B 5×2, A 2×6, s = 2
}

// ExamplePiSSAToLoRA exports a trained PiSSA adapter as a plain rank-2r
// LoRA on the original weight W, the form PEFT users load.
func ExamplePiSSAToLoRA() {
	m := peft.NewMLP([]int{6, 5, 3}, 7)
	w := mat.DenseCopyOf(m.Layers[0].W.Value) // the original W
	ads, err := peft.AddPiSSA(m, peft.PiSSAConfig{R: 2, Alpha: 4, Targets: []string{"fc1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := ads[0]
	a0, b0 := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value) // keep the init
	a.B.Value.Set(0, 0, a.B.Value.At(0, 0)+0.3)                      // as if trained
	lora := peft.PiSSAToLoRA(a, a0, b0)
	fmt.Printf("rank %d, α = %g, s = %g\n", lora.R, lora.Alpha, lora.Scaling())
	var d mat.Dense
	d.Sub(lora.MergedWeight(w), a.MergedWeight(m.Layers[0].W.Value))
	fmt.Printf("max |W + s·B'·A' − (W_res + s·B·A)| < 1e-12: %v\n", mat.Norm(&d, math.Inf(1)) < 1e-12)
	// Output:
	// rank 4, α = 8, s = 2
	// max |W + s·B'·A' − (W_res + s·B·A)| < 1e-12: true
}

// TestPiSSACancel: a cancelled context stops the init with its error and
// leaves the model as it was.
func TestPiSSACancel(t *testing.T) {
	m := peft.NewMLP([]int{6, 7, 4}, 3)
	w := mat.DenseCopyOf(m.Layers[0].W.Value)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := peft.AddPiSSAContext(ctx, m, peft.PiSSAConfig{R: 2, Targets: []string{"fc1"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if !mat.Equal(w, m.Layers[0].W.Value) || len(m.Layers[0].Adapters) != 0 {
		t.Error("a cancelled AddPiSSA changed the model")
	}
}

// TestPiSSATrainDigits trains PiSSA through Train, then checks that the
// rank-2r export on the original weights gives the trained model's outputs.
func TestPiSSATrainDigits(t *testing.T) {
	data := peft.DigitsData(0.2, 5)
	base := peft.NewMLP([]int{64, 32, 10}, 5)
	m := peft.NewMLP([]int{64, 32, 10}, 5)
	ads, err := peft.AddPiSSA(m, peft.PiSSAConfig{R: 4, Alpha: 4, Targets: []string{"fc1", "fc2"}})
	if err != nil {
		t.Fatal(err)
	}
	var a0, b0 []*mat.Dense
	for _, a := range ads {
		a0, b0 = append(a0, mat.DenseCopyOf(a.A.Value)), append(b0, mat.DenseCopyOf(a.B.Value))
	}
	h, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 150, BatchSize: 32, LR: 0.03, EvalEvery: 150, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if first, last := h.Loss[0], h.EvalLoss[0]; !(last < 0.5*first) || h.EvalMetric[0] < 0.6 {
		t.Errorf("loss %.4f → eval %.4f, accuracy %.3f; want the loss halved and accuracy > 0.6", first, last, h.EvalMetric[0])
	}
	for i, a := range ads {
		if err := base.Layers[i].Attach("default", peft.PiSSAToLoRA(a, a0[i], b0[i])); err != nil {
			t.Fatal(err)
		}
	}
	x := peft.NewConst(data.EvalX)
	if d := galoreMaxAbsDiff(base.Forward(x).Value, m.Forward(x).Value); d > 1e-10 {
		t.Errorf("exported LoRA on the original weights differs by %g", d)
	}
	t.Logf("loss %.4f → eval %.4f, accuracy %.3f", h.Loss[0], h.EvalLoss[0], h.EvalMetric[0])
}
