package loralimits_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/loralimits"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// TestLoRAGradients: on a LoRA layer (W₀ 7×5, r = 2, α = 3) with L = 4
// tokens and ℒ = Σ G ⊙ Y (so ∂ℒ/∂Y = G), the factored gradients s·Bᵀ·Gᵀ·X
// and s·Gᵀ·X·Aᵀ equal the autograd gradients to 1e-13 and central
// differences to 1e-7; the dense Gᵀ·X equals the autograd gradient of W.
func TestLoRAGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	m := adaptertest.NewChain(1, []string{"fc"}, 5, 7)
	ls, err := lora.Add(m, lora.Config{R: 2, Alpha: 3, Targets: []string{"fc"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	a := ls[0]
	a.B.Value.Copy(adaptertest.RandDense(rng, 7, 2))
	x := adaptertest.RandDense(rng, 4, 5)
	g := adaptertest.RandDense(rng, 4, 7)
	loss := func() *peft.Tensor { return peft.SumAll(peft.Mul(m.Forward(peft.NewConst(x)), peft.NewConst(g))) }
	m.Mods[0].W.Unfreeze()
	for _, p := range []*peft.Tensor{a.A, a.B, m.Mods[0].W} {
		p.ZeroGrad()
	}
	loss().Backward()
	dA, dB := loralimits.LoRAGradients(x, g, a.A.Value, a.B.Value, a.Scaling())
	if e := adaptertest.RelDiffMax(dA, a.A.Grad); e > 1e-13 {
		t.Errorf("∇A off autograd by %.3g", e)
	}
	if e := adaptertest.RelDiffMax(dB, a.B.Grad); e > 1e-13 {
		t.Errorf("∇B off autograd by %.3g", e)
	}
	if e := adaptertest.RelDiffMax(loralimits.DenseGradient(x, g), m.Mods[0].W.Grad); e > 1e-13 {
		t.Errorf("∇ΔW = GᵀX off autograd's ∇W by %.3g", e)
	}
	var worst float64
	for _, c := range []struct {
		p    *peft.Tensor
		want *mat.Dense
	}{{a.A, dA}, {a.B, dB}} {
		x0 := append([]float64(nil), c.p.Value.RawMatrix().Data...)
		set := func(v []float64) { copy(c.p.Value.RawMatrix().Data, v) }
		num := fd.Gradient(nil, func(v []float64) float64 { set(v); return loss().Scalar() }, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		r, cc := c.want.Dims()
		worst = math.Max(worst, adaptertest.RelDiffMax(c.want, mat.NewDense(r, cc, num)))
	}
	t.Logf("factored gradients vs central differences: %.2g relative", worst)
	if worst > 1e-7 {
		t.Errorf("factored gradients off central differences by %.3g", worst)
	}
}

// TestDenseGradientRank: ∇ΔW = GᵀX (12×10) from L = 3 tokens has exactly
// 3 singular values above 1e-10·σ₁ (rank ≤ L, and generic data reaches it).
func TestDenseGradientRank(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, L := range []int{1, 3, 6} {
		s, err := accel.SingularValues(context.Background(), loralimits.DenseGradient(adaptertest.RandDense(rng, L, 10), adaptertest.RandDense(rng, L, 12)))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range s {
			if v > 1e-10*s[0] {
				n++
			}
		}
		if n != L {
			t.Errorf("L = %d: rank(GᵀX) = %d (σ = %.3g), want %d", L, n, s, L)
		}
	}
}

// gpt returns the shipped tiny GPT with a rank-4 LoRA on attn.q and attn.k
// (B random, as if trained), and a 64-character sequence.
func gpt(t *testing.T) (*peft.GPT, []int) {
	t.Helper()
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := lora.Add(g, lora.Config{R: 4, Targets: []string{"attn.q", "attn.k"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	for _, l := range ls {
		b := adaptertest.RandDense(rng, 64, 4)
		b.Scale(0.05, b)
		l.B.Value.Copy(b)
	}
	text := "Call me Ishmael. Some years ago, never mind how long precisely, h"
	return g, peft.CharVocab().Encode(text)[:64]
}

// TestCaptureLeavesModel: Capture returns inputs with L rows and C
// columns, the same for q and k, and leaves the model's adapters and
// output exactly as they were.
func TestCaptureLeavesModel(t *testing.T) {
	g, toks := gpt(t)
	before := mat.DenseCopyOf(g.Forward(toks, 1).Value)
	xq, xk, err := loralimits.Capture(g, toks)
	if err != nil {
		t.Fatal(err)
	}
	if len(xq) != 2 || len(xk) != 2 {
		t.Fatalf("captured %d, %d inputs, want one per block (2)", len(xq), len(xk))
	}
	for i := range xq {
		if r, c := xq[i].Dims(); r != 64 || c != 64 || !mat.Equal(xq[i], xk[i]) {
			t.Errorf("block %d: q input %d×%d, equal to k's: %v", i, r, c, mat.Equal(xq[i], xk[i]))
		}
	}
	for _, l := range g.Modules() {
		if _, ok := l.Adapters["loralimits.capture"]; ok || (strings.Contains(l.Name, "attn.q") && l.Active != "default") {
			t.Errorf("%s: adapters %v, active %q after Capture", l.Name, l.AdapterNames(), l.Active)
		}
	}
	if !mat.Equal(g.Forward(toks, 1).Value, before) {
		t.Error("output changed by Capture")
	}
}

// TestDiagnoseMonotone: scaling X by c = ½, 1, 2, 4 scales every max-entry
// norm by c exactly (powers of two), so the diagnostic is monotone in ‖X‖.
func TestDiagnoseMonotone(t *testing.T) {
	g, toks := gpt(t)
	rows, err := loralimits.Diagnose(g, toks, loralimits.Options{InputScales: []float64{1, 0.5, 2, 4}, Degree: 2})
	if err != nil {
		t.Fatal(err)
	}
	base := rows[:2]
	for _, r := range rows[2:] {
		b := base[r.Block]
		for _, c := range [][2]float64{{r.QMax, b.QMax}, {r.KMax, b.KMax}, {r.QMaxAdapted, b.QMaxAdapted}, {r.KMaxAdapted, b.KMaxAdapted}} {
			if c[0] != r.InputScale*c[1] {
				t.Errorf("block %d, X·%g: norm %.17g, want exactly %g × %.17g", r.Block, r.InputScale, c[0], r.InputScale, c[1])
			}
		}
	}
	if rows[0].QMaxAdapted == rows[0].QMax {
		t.Error("the adapter does not change ‖X·W_Qᵀ‖_max: the adapted columns prove nothing")
	}
}

// TestPolyErrorGrowsWithNorm: over input scales 1/16 … 4 on the tiny GPT
// (L = 64, √ln L = 2.04; at scale 1 the norms are 3–6), the degree-3
// Taylor approximation's error of exp(S) rises with the max-entry norm
// (until it saturates at 1), is below 1e-3 while the norms are well under
// √ln L and above 0.3 once they are over it.
func TestPolyErrorGrowsWithNorm(t *testing.T) {
	g, toks := gpt(t)
	scales := []float64{1.0 / 16, 0.125, 0.25, 0.5, 1, 2, 4}
	rows, err := loralimits.Diagnose(g, toks, loralimits.Options{InputScales: scales, Degree: 3})
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 2; b++ {
		var prev loralimits.Row
		for i, r := range rows {
			if r.Block != b {
				continue
			}
			t.Log(r)
			if i >= 2 && !(r.ExpErr > prev.ExpErr || prev.ExpErr > 0.999 && r.ExpErr >= prev.ExpErr) {
				t.Errorf("block %d: error %.3g at X·%g not above %.3g at X·%g", b, r.ExpErr, r.InputScale, prev.ExpErr, prev.InputScale)
			}
			prev = r
		}
		first, last := rows[b], rows[len(rows)-2+b]
		if !first.Below || first.ExpErr > 1e-3 {
			t.Errorf("block %d at X/16: below %v, error %.3g; want below the scale with error ≤ 1e-3", b, first.Below, first.ExpErr)
		}
		if last.Below || last.ExpErr < 0.3 {
			t.Errorf("block %d at X·4: below %v, error %.3g; want above the scale with error ≥ 0.3", b, last.Below, last.ExpErr)
		}
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("LoRA limits (diagnostic)")
	if !ok || m.Kind != peft.HookMethod || m.Format != nil || !strings.Contains(m.Paper, "arXiv:2406.03136") {
		t.Errorf("registered %+v (found %v)", m, ok)
	}
}
