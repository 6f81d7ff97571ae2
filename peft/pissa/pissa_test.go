package pissa_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/pissa"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite on PiSSA. PiSSA rewrites each
// base weight W to W_res = W − s·B·A (ChangesBase), so after init the
// suite's base model is the adapted model with its adapters disabled; at
// init the adapted model must still give the original model's output.
// That holds to rounding only: W_res is W − s·B·A rounded, and the forward
// pass adds s·B·A back in another order. On the suite's case (fc1 4×5,
// fc2 3×4, r = 2, α = 3, seed 1) the output differs from the original's by
// 1.3e-16 relative, measured; over model seeds 1–200, α ∈ {0.01, 3, 100}
// and both scalings the worst was 6.0e-16. InitTol = 1e-14 leaves a factor
// of ten for other summation orders (the assembly GEMM), while the faults
// it guards against are O(1): W not rewritten (the output is that of
// W + s·B·A), or W_res computed with another s than the adapter's.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ls, err := pissa.Add(m, pissa.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
			return adapters(ls), err
		},
		ChangesBase: true,
		ZeroAtInit:  true,
		InitTol:     1e-14,
	})
}

func adapters(ls []*lora.LoRA) []peft.Adapter {
	out := make([]peft.Adapter, len(ls))
	for i, l := range ls {
		out[i] = l
	}
	return out
}

// TestRegistered checks PiSSA's entry in the method registry: an adapter
// method with no file format of its own, since its adapters are LoRA's.
func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("pissa")
	if !ok {
		t.Fatal("PiSSA is not registered")
	}
	if m.Name != "PiSSA" || m.Kind != peft.AdapterMethod || m.Format != nil ||
		m.Package != "github.com/gopeft/gopeft/peft/pissa" || !strings.Contains(m.Paper, "arXiv:2404.02948") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	ls, err := pissa.Add(peft.NewMLP([]int{6, 7, 4}, 3), pissa.Config{R: 2, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(ls[0]); !ok || owner.Name != "LoRA" {
		t.Errorf("a PiSSA adapter's file format is %q (found: %v), want LoRA's", owner.Name, ok)
	}
}

// input returns an n×k input of N(0,1) entries.
func input(seed int64, n, k int) *peft.Tensor {
	return peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(seed)), n, k))
}

// maxAbsDiff returns max |a − b| over the entries.
func maxAbsDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, math.Inf(1))
}

func singularValues(t *testing.T, a mat.Matrix) []float64 {
	t.Helper()
	s, err := accel.SingularValues(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestInit checks W_res + s·B·A = W, that W_res's singular values are W's
// tail (σ_{r+1}, …, then r zeros), ‖W_res‖₂ = σ_{r+1}, and that the model's
// output does not change, for the exact and the fast init and both
// scalings.
func TestInit(t *testing.T) {
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
			x := input(1, 5, 8)
			y0 := mat.DenseCopyOf(m.Forward(x).Value)
			w0 := []*mat.Dense{mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)}
			ads, err := pissa.Add(m, pissa.Config{R: r, Alpha: tc.alpha, RSLoRA: tc.rs, NIter: tc.niter, Targets: []string{"fc1", "fc2"}})
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
				if d := maxAbsDiff(rebuilt, w); d > 1e-12 {
					t.Errorf("%s: |W_res + s·B·A − W|max = %g", l.Name, d)
				}
				sw := singularValues(t, w)
				sr := singularValues(t, l.W.Value)
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
			if d := maxAbsDiff(y, y0); d > 1e-12 {
				t.Errorf("output changed by %g after PiSSA init", d)
			}
		})
	}
}

// TestToLoRA trains a PiSSA adapter for a few steps, exports it as a rank-2r
// LoRA on the original W and checks both the weight and the model's output
// against the PiSSA model.
func TestToLoRA(t *testing.T) {
	for _, rs := range []bool{false, true} {
		const r = 2
		base := peft.NewMLP([]int{6, 7, 4}, 3)
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		ads, err := pissa.Add(m, pissa.Config{R: r, Alpha: 4, RSLoRA: rs, Targets: []string{"fc1"}})
		if err != nil {
			t.Fatal(err)
		}
		a := ads[0]
		a0, b0 := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value)
		// a few SGD steps on a classification batch
		x := adaptertest.RandDense(rand.New(rand.NewSource(4)), 10, 6)
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
		if maxAbsDiff(a.B.Value, b0) < 1e-6 {
			t.Fatal("training did not move B")
		}
		exp := pissa.ToLoRA(a, a0, b0)
		if exp.R != 2*r || exp.Scaling() == 0 || math.Abs(exp.Scaling()-a.Scaling()) > 1e-15 {
			t.Errorf("export: r = %d, s = %g; want r = %d, s = %g", exp.R, exp.Scaling(), 2*r, a.Scaling())
		}
		trained := a.MergedWeight(m.Layers[0].W.Value)       // W_res + s·B_t·A_t
		exported := exp.MergedWeight(base.Layers[0].W.Value) // W + s·B'·A'
		if d := maxAbsDiff(trained, exported); d > 1e-12 {
			t.Errorf("rsLoRA=%v: exported weight differs by %g", rs, d)
		}
		if err := base.Layers[0].Attach("pissa", exp); err != nil {
			t.Fatal(err)
		}
		xt := peft.NewConst(x)
		if d := maxAbsDiff(base.Forward(xt).Value, m.Forward(xt).Value); d > 1e-12 {
			t.Errorf("rsLoRA=%v: exported model's output differs by %g", rs, d)
		}
	}
}

// TestToLoRAWide exports with 2r > min(d, k), which lora.FromFactors would
// refuse: the export still reproduces the PiSSA weight, keeps dropout, and
// names its parameters as the PiSSA adapter's.
func TestToLoRAWide(t *testing.T) {
	const r = 3 // fc1's W is 5×6: 2r = 6 > min(d, k) = 5
	base := peft.NewMLP([]int{6, 5, 3}, 7)
	m := peft.NewMLP([]int{6, 5, 3}, 7)
	ads, err := pissa.Add(m, pissa.Config{R: r, Alpha: 2, Dropout: 0.25, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	a := ads[0]
	a0, b0 := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value)
	a.B.Value.Copy(adaptertest.RandDense(rand.New(rand.NewSource(6)), 5, r)) // as if trained
	exp := pissa.ToLoRA(a, a0, b0)
	if exp.R != 2*r || exp.Rank() != 2*r || exp.Dropout != 0.25 || exp.A.Name != a.A.Name || exp.B.Name != a.B.Name {
		t.Errorf("export: R = %d, Rank() = %d, dropout %g, names %s, %s", exp.R, exp.Rank(), exp.Dropout, exp.A.Name, exp.B.Name)
	}
	if ar, ac := exp.A.Dims(); ar != 2*r || ac != 6 {
		t.Errorf("A' is %s, want (6×6)", peft.ShapeOf(ar, ac))
	}
	if d := maxAbsDiff(exp.MergedWeight(base.Layers[0].W.Value), a.MergedWeight(m.Layers[0].W.Value)); d > 1e-12 {
		t.Errorf("exported weight differs by %g", d)
	}
	// Dropout in training draws from the export's own generator.
	if err := base.Layers[0].Attach("pissa", exp); err != nil {
		t.Fatal(err)
	}
	base.SetTraining(true)
	x := input(8, 4, 6)
	if d := maxAbsDiff(base.Forward(x).Value, base.Forward(x).Value); d == 0 {
		t.Error("two training passes with dropout 0.25 gave the same output")
	}
}

// TestToLoRAShapes: factors of the wrong shape panic with a ShapeError
// naming both shapes.
func TestToLoRAShapes(t *testing.T) {
	m := peft.NewMLP([]int{6, 7, 4}, 3)
	ads, err := pissa.Add(m, pissa.Config{R: 2, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	a := ads[0]
	err = peft.Maybe(func() { pissa.ToLoRA(a, mat.NewDense(2, 6, nil), mat.NewDense(2, 7, nil)) })
	var se peft.ShapeError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "(2×7)") || !strings.Contains(err.Error(), "(7×2)") {
		t.Errorf("B0 (2×7) for B (7×2): err = %v, want a ShapeError naming both", err)
	}
}

func scaledBy(s float64, a mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.Scale(s, a)
	return &d
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg  pissa.Config
		want []string
	}{
		{pissa.Config{R: 0, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "r = 0", "4"}},
		{pissa.Config{R: 5, Targets: []string{"fc2"}}, []string{"fc2", "(4×7)", "r = 5", "4"}},
		{pissa.Config{R: 2, Targets: []string{"fc9"}}, []string{"fc9", "fc1", "fc2"}},
		{pissa.Config{R: 2, NIter: -1, Targets: []string{"fc1"}}, []string{"NIter = -1"}},
		{pissa.Config{R: 2, Dropout: 1, Targets: []string{"fc1"}}, []string{"fc1", "dropout"}},
	} {
		m := peft.NewMLP([]int{6, 7, 4}, 3)
		w1, w2 := mat.DenseCopyOf(m.Layers[0].W.Value), mat.DenseCopyOf(m.Layers[1].W.Value)
		_, err := pissa.Add(m, tc.cfg)
		if e := adaptertest.ErrorMentions(err, tc.want...); e != nil {
			t.Errorf("%+v: %v", tc.cfg, e)
		}
		if !mat.Equal(w1, m.Layers[0].W.Value) || !mat.Equal(w2, m.Layers[1].W.Value) {
			t.Errorf("%+v: a failed pissa.Add changed W", tc.cfg)
		}
	}
	// A module with an adapter already: error, and no W changes.
	m := peft.NewMLP([]int{6, 7, 4}, 3)
	if _, err := lora.Add(m, lora.Config{R: 2, Targets: []string{"fc2"}}); err != nil {
		t.Fatal(err)
	}
	w1 := mat.DenseCopyOf(m.Layers[0].W.Value)
	if _, err := pissa.Add(m, pissa.Config{R: 2, Name: "p", Targets: []string{"fc1", "fc2"}}); err == nil || !strings.Contains(err.Error(), "fc2") {
		t.Errorf("PiSSA on a module with a LoRA: err = %v, want one naming fc2", err)
	}
	if !mat.Equal(w1, m.Layers[0].W.Value) {
		t.Error("a failed pissa.Add changed fc1's W")
	}
	if len(m.Layers[0].Adapters) != 0 {
		t.Error("a failed pissa.Add left an adapter on fc1")
	}
}

// TestCancel: a cancelled context stops the init with its error and leaves
// the model as it was.
func TestCancel(t *testing.T) {
	m := peft.NewMLP([]int{6, 7, 4}, 3)
	w := mat.DenseCopyOf(m.Layers[0].W.Value)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := pissa.AddContext(ctx, m, pissa.Config{R: 2, Targets: []string{"fc1"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if !mat.Equal(w, m.Layers[0].W.Value) || len(m.Layers[0].Adapters) != 0 {
		t.Error("a cancelled pissa.AddContext changed the model")
	}
}

// TestTrainDigits trains PiSSA through Train, then checks that the rank-2r
// export on the original weights gives the trained model's outputs.
func TestTrainDigits(t *testing.T) {
	data := peft.DigitsData(0.2, 5)
	base := peft.NewMLP([]int{64, 32, 10}, 5)
	m := peft.NewMLP([]int{64, 32, 10}, 5)
	ads, err := pissa.Add(m, pissa.Config{R: 4, Alpha: 4, Targets: []string{"fc1", "fc2"}})
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
		if err := base.Layers[i].Attach("default", pissa.ToLoRA(a, a0[i], b0[i])); err != nil {
			t.Fatal(err)
		}
	}
	x := peft.NewConst(data.EvalX)
	if d := maxAbsDiff(base.Forward(x).Value, m.Forward(x).Value); d > 1e-10 {
		t.Errorf("exported LoRA on the original weights differs by %g", d)
	}
	t.Logf("loss %.4f → eval %.4f, accuracy %.3f", h.Loss[0], h.EvalLoss[0], h.EvalMetric[0])
}
