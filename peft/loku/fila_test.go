package loku_test

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
	"github.com/gopeft/gopeft/peft/loku"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

var chainTargets = []string{"fc1", "fc2"}

// chainBatches returns count regression batches of rows rows for the
// suite's Chain (5 → 4 → 3), drawn from seed.
func chainBatches(seed int64, count, rows int) []peft.Batch {
	rng := rand.New(rand.NewSource(seed))
	bs := make([]peft.Batch, count)
	for i := range bs {
		bs[i] = peft.Batch{X: adaptertest.RandDense(rng, rows, 5), Y: adaptertest.RandDense(rng, rows, 3)}
	}
	return bs
}

// TestSuite runs the shared adapter suite on FILA's adapters, with the
// relative Fisher measured on two random regression sets of the suite's
// Chain. FILA rewrites W to W_res = W − s·B·A (ChangesBase); at init the
// output is the original's to rounding: measured 1.3e-16 relative on the
// suite's case, at worst 3.6e-16 over model seeds 1–50 and α ∈ {0.01, 3,
// 100}, so InitTol 1e-14 leaves a factor of 30 while the faults it guards
// against (W not rewritten, another s) are O(1).
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			imp, err := loku.Importance(context.Background(), m, chainBatches(11, 3, 4), chainBatches(12, 3, 4), chainTargets)
			if err != nil {
				return nil, err
			}
			ls, err := loku.Add(m, loku.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed, Importance: imp})
			return adaptertest.Adapters(ls), err
		},
		ChangesBase: true,
		ZeroAtInit:  true,
		InitTol:     1e-14,
	})
}

// orthonormal returns an r×c matrix with orthonormal columns (c ≤ r).
func orthonormal(rng *rand.Rand, r, c int) *mat.Dense {
	var qr mat.QR
	qr.Factorize(adaptertest.RandDense(rng, r, r))
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, r, 0, c))
}

// TestFILAKnownAnswer builds W (4×5) = diag(w)⁻¹·Q₁·diag(σ)·Q₂ᵀ with
// σ = (4, 3, 2, 1), row weights w = (0.25, 4, 1, 2) and a relative Fisher
// F_ij = w_i²/5 (so √(Σ_j F_ij) = w_i). Then diag(w)·W has the SVD
// Q₁·diag(σ)·Q₂ᵀ, and FILA at r = 2 must give s·B·A =
// diag(w)⁻¹·Q₁[:, :2]·diag(4, 3)·Q₂[:, :2]ᵀ, the weighted error
// ‖diag(w)·(W − s·B·A)‖²_F = 2² + 1² = 5 (the weighted Eckart–Young
// optimum), and W_res + s·B·A = W. The unweighted best rank-2
// approximation of W (PiSSA's) must do worse in the weighted norm:
// measured 6.25 against 5.
func TestFILAKnownAnswer(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	q1, q2 := orthonormal(rng, 4, 4), orthonormal(rng, 5, 4)
	sigma := []float64{4, 3, 2, 1}
	w := []float64{0.25, 4, 1, 2}
	// low(r) = diag(w)⁻¹·Q₁[:, :r]·diag(σ[:r])·Q₂[:, :r]ᵀ
	low := func(r int) *mat.Dense {
		qs := mat.DenseCopyOf(q1.Slice(0, 4, 0, r))
		for i := 0; i < 4; i++ {
			for j := 0; j < r; j++ {
				qs.Set(i, j, qs.At(i, j)*sigma[j]/w[i])
			}
		}
		var l mat.Dense
		l.Mul(qs, q2.Slice(0, 5, 0, r).T())
		return &l
	}
	W := low(4)
	f := mat.NewDense(4, 5, nil)
	for i := 0; i < 4; i++ {
		for j := 0; j < 5; j++ {
			f.Set(i, j, w[i]*w[i]/5)
		}
	}
	m := adaptertest.NewChain(1, chainTargets, 5, 4, 3)
	l := m.Mods[0]
	l.W.Value.Copy(W)
	ls, err := loku.Add(m, loku.Config{R: 2, Alpha: 3, Targets: []string{"fc1"}, Eps: 1e-300,
		Importance: map[string]*mat.Dense{"fc1": f}})
	if err != nil {
		t.Fatal(err)
	}
	sba := ls[0].Delta() // s·B·A
	if d := maxAbs(sub(sba, low(2))); d > 1e-14 {
		t.Errorf("s·B·A differs from diag(w)⁻¹·SVD₂(diag(w)·W) by %.3g", d)
	}
	var back mat.Dense
	back.Add(l.W.Value, sba)
	if d := maxAbs(sub(&back, W)); d > 1e-15 {
		t.Errorf("W_res + s·B·A differs from W by %.3g", d)
	}
	weighted := func(e *mat.Dense) float64 { // ‖diag(w)·e‖²_F
		var s float64
		for i := 0; i < 4; i++ {
			for j := 0; j < 5; j++ {
				s += w[i] * w[i] * e.At(i, j) * e.At(i, j)
			}
		}
		return s
	}
	if got := weighted(sub(W, sba)); math.Abs(got-5) > 1e-13 {
		t.Errorf("weighted error ‖diag(w)(W − s·B·A)‖² = %.17g, want σ₃² + σ₄² = 5", got)
	}
	svd, err := accel.ThinSVD(context.Background(), W)
	if err != nil {
		t.Fatal(err)
	}
	var us mat.Dense
	us.Mul(svd.U.Slice(0, 4, 0, 2), mat.NewDiagDense(2, svd.S[:2]))
	var plain mat.Dense
	plain.Mul(&us, svd.VT.Slice(0, 2, 0, 5))
	pe := weighted(sub(W, &plain))
	t.Logf("unweighted rank-2 approximation: weighted error %.4g", pe)
	if !(pe > 5.5) {
		t.Errorf("the unweighted rank-2 approximation has weighted error %.4g, want well above FILA's 5", pe)
	}
}

// TestFILAOnDigits puts FILA on both layers of the shipped digits MLP
// with the relative Fisher of forgetting the 0s, and checks the output is
// unchanged at init (measured 9.4e-16 relative; asserted 1e-12), that
// W_res + s·B·A = W, and the count of trained numbers.
func TestFILAOnDigits(t *testing.T) {
	ctx := context.Background()
	m, forget, retain := digits(t)
	x := peft.NewConst(forget.EvalX)
	before := mat.DenseCopyOf(m.Forward(x).Value)
	w0 := mat.DenseCopyOf(m.Layers[1].W.Value)
	imp, err := loku.Importance(ctx, m, classBatches(forget, 8), classBatches(retain, 8), []string{"fc1", "fc2"})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := loku.Add(m, loku.Config{R: 4, Alpha: 8, Targets: []string{"fc1", "fc2"}, Importance: imp})
	if err != nil {
		t.Fatal(err)
	}
	d := relDiff(m.Forward(x).Value, before)
	t.Logf("output at init differs by %.3g relative", d)
	if d > 1e-12 {
		t.Errorf("output at init differs from the model's by %.3g relative", d)
	}
	var back mat.Dense
	back.Add(m.Layers[1].W.Value, ls[1].Delta())
	if e := relDiff(&back, w0); e > 1e-14 {
		t.Errorf("fc2: W_res + s·B·A differs from W by %.3g relative", e)
	}
	if n, _, _ := peft.TrainableParams(m); n != 4*(64+64)+4*(64+10) {
		t.Errorf("trainable parameters %d, want r·(d + k) summed = %d", n, 4*(64+64)+4*(64+10))
	}
}

// TestFisher checks Fisher against squared central-difference gradients
// (F = Σ_b n_b·g_b²/Σ_b n_b over two batches of 3 and 5 rows), and that
// it leaves the model as it was: a frozen weight stays frozen, and
// gradients are not touched.
func TestFisher(t *testing.T) {
	m := adaptertest.NewChain(1, chainTargets, 5, 4, 3)
	bs := append(chainBatches(1, 1, 3), chainBatches(2, 1, 5)...)
	m.Mods[1].W.Freeze()
	sentinel := mat.NewDense(1, 4, []float64{7, 7, 7, 7})
	m.Mods[0].B.Grad = sentinel
	fs, err := loku.Fisher(context.Background(), m, bs, chainTargets)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mods[1].W.Trainable || !m.Mods[0].W.Trainable || m.Mods[0].B.Grad != sentinel || m.Mods[1].W.Grad != nil {
		t.Errorf("Fisher changed the model's state: fc2.W trainable %v, fc1.W trainable %v, fc1.b grad kept %v, fc2.W grad %v",
			m.Mods[1].W.Trainable, m.Mods[0].W.Trainable, m.Mods[0].B.Grad == sentinel, m.Mods[1].W.Grad)
	}
	for _, l := range m.Mods {
		r, c := l.W.Dims()
		want := make([]float64, r*c)
		for _, b := range bs {
			w0 := mat.DenseCopyOf(l.W.Value)
			g := fd.Gradient(nil, func(v []float64) float64 {
				l.W.Value.Copy(mat.NewDense(r, c, v))
				return m.Loss(b).Scalar()
			}, append([]float64(nil), w0.RawMatrix().Data...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
			l.W.Value.Copy(w0)
			for i, gi := range g {
				want[i] += float64(b.Items()) * gi * gi / 8
			}
		}
		got := fs[l.Name].RawMatrix().Data
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-8*math.Max(want[i], 1e-3) {
				t.Errorf("%s: F[%d] = %.10g, squared central differences %.10g", l.Name, i, got[i], want[i])
			}
		}
	}
}

func TestBadFILAConfig(t *testing.T) {
	imp := func() map[string]*mat.Dense {
		return map[string]*mat.Dense{"fc1": mat.NewDense(4, 5, nil), "fc2": mat.NewDense(3, 4, nil)}
	}
	neg := imp()
	neg["fc2"].Set(1, 2, -1)
	shape := imp()
	shape["fc2"] = mat.NewDense(4, 3, nil)
	for _, c := range []struct {
		what string
		cfg  loku.Config
		want []string
	}{
		{"no importance for fc2", loku.Config{R: 1, Targets: chainTargets, Importance: map[string]*mat.Dense{"fc1": mat.NewDense(4, 5, nil)}}, []string{"fc2", "Importance"}},
		{"importance of the wrong shape", loku.Config{R: 1, Targets: chainTargets, Importance: shape}, []string{"fc2", "(4×3)", "(3×4)"}},
		{"a negative importance", loku.Config{R: 1, Targets: chainTargets, Importance: neg}, []string{"fc2", "[1, 2]", "-1"}},
		{"negative Eps", loku.Config{R: 1, Targets: chainTargets, Importance: imp(), Eps: -1e-3}, []string{"Eps", "-0.001"}},
		{"rank 4 on fc2", loku.Config{R: 4, Targets: chainTargets, Importance: imp()}, []string{"fc2", "4"}},
	} {
		m := adaptertest.NewChain(1, chainTargets, 5, 4, 3)
		w0 := mat.DenseCopyOf(m.Mods[0].W.Value)
		_, err := loku.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%s: %v", c.what, e)
		}
		if !mat.Equal(m.Mods[0].W.Value, w0) || len(m.Mods[0].Adapters) != 0 {
			t.Errorf("%s: the failed Add changed fc1", c.what)
		}
	}
	// Importance's own errors: an unknown module, no batches, cancellation.
	m := adaptertest.NewChain(1, chainTargets, 5, 4, 3)
	if _, err := loku.Importance(context.Background(), m, chainBatches(1, 1, 2), chainBatches(2, 1, 2), []string{"nope"}); adaptertest.ErrorMentions(err, "nope", "fc1") != nil {
		t.Errorf("unknown target: %v", err)
	}
	if _, err := loku.Importance(context.Background(), m, chainBatches(1, 1, 2), nil, chainTargets); adaptertest.ErrorMentions(err, "retain", "no batches") != nil {
		t.Errorf("no retain batches: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := loku.Fisher(ctx, m, chainBatches(1, 1, 2), chainTargets); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Fisher: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	mt, ok := peft.LookupMethod("loku")
	if !ok {
		t.Fatal("LoKU is not registered")
	}
	if mt.Name != "LoKU" || mt.Kind != peft.AdapterMethod || mt.Format != nil ||
		mt.Package != "github.com/gopeft/gopeft/peft/loku" || !strings.Contains(mt.Paper, "arXiv:2408.06621") || mt.Summary == "" {
		t.Errorf("registered %+v", mt)
	}
	m := adaptertest.NewChain(1, chainTargets, 5, 4, 3)
	imp, err := loku.Importance(context.Background(), m, chainBatches(1, 2, 3), chainBatches(2, 2, 3), chainTargets)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := loku.Add(m, loku.Config{R: 1, Targets: []string{"fc1"}, Importance: imp})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(ls[0]); !ok || owner.Name != "LoRA" {
		t.Errorf("a LoKU adapter's file format is %q (found %v), want LoRA's", owner.Name, ok)
	}
}

func sub(a, b mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.Sub(a, b)
	return &d
}

// maxAbs returns max |a_ij|.
func maxAbs(a mat.Matrix) float64 {
	r, c := a.Dims()
	var m float64
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			m = math.Max(m, math.Abs(a.At(i, j)))
		}
	}
	return m
}

// relDiff returns max|a − b| / max|b|.
func relDiff(a, b mat.Matrix) float64 { return maxAbs(sub(a, b)) / maxAbs(b) }
