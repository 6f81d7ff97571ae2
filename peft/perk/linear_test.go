package perk_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/perk"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// toy returns a linear toy (W₀ 5×7, LoRA r = 3 with B₀ random) and an
// episode with 6 context and 8 question examples.
func toy(t *testing.T) (*perk.LinearToy, perk.Episode, *perk.RegressionEpisodes) {
	t.Helper()
	task := peft.NewTeacherTask(5, 7, []float64{2, 1}, 4, 1)
	tt, err := perk.NewLinearToy(task.Model(), 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	tt.LoRA.B.Value.Copy(adaptertest.RandDense(rand.New(rand.NewSource(3)), 5, 3))
	src := &perk.RegressionEpisodes{Base: task, Spread: 0.5, Context: 6, Question: 8}
	return tt, src.Episode(rand.New(rand.NewSource(4))), src
}

// fdGrad returns the central-difference gradient of f at b (d×r).
func fdGrad(b *mat.Dense, f func(*mat.Dense) float64) []float64 {
	r, c := b.Dims()
	return fd.Gradient(nil, func(v []float64) float64 {
		return f(mat.NewDense(r, c, append([]float64(nil), v...)))
	}, append([]float64(nil), mat.DenseCopyOf(b).RawMatrix().Data...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
}

func relErr(got *mat.Dense, want []float64) float64 {
	w := mat.NewDense(got.RawMatrix().Rows, got.RawMatrix().Cols, want)
	return adaptertest.RelDiffMax(got, w)
}

// TestMetaGradientFullUnroll: with T = N the exact meta-gradient equals
// the central difference of the outer loss L_question(B_N(B₀)) in B₀, to
// 1e-7 relative, for N = 1, 3, 6.
func TestMetaGradientFullUnroll(t *testing.T) {
	tt, ep, _ := toy(t)
	for _, n := range []int{1, 3, 6} {
		cfg := perk.Config{InnerSteps: n, Truncate: n, InnerLR: 0.3}
		mg, err := tt.MetaGradient(ep, cfg)
		if err != nil {
			t.Fatal(err)
		}
		num := fdGrad(tt.LoRA.B.Value, func(b *mat.Dense) float64 {
			bN, _ := tt.Run(b, ep, n, cfg.InnerLR)
			return tt.QuestionLoss(bN, ep)
		})
		e := relErr(mg.Grad, num)
		gap := relErr(mg.FirstOrder, num)
		t.Logf("N = T = %d: exact vs finite differences %.2g; first-order vs finite differences %.2g (the first-order gap)", n, e, gap)
		if e > 1e-7 {
			t.Errorf("N = T = %d: meta-gradient off the finite difference by %.3g relative", n, e)
		}
	}
}

// TestMetaGradientTruncated: with T < N the exact meta-gradient equals the
// central difference of the outer loss when the first N − T steps are
// frozen (their increment B_{N−T} − B₀ held at its value for the
// unperturbed B₀), to 1e-7, and differs from the full-unroll difference.
func TestMetaGradientTruncated(t *testing.T) {
	tt, ep, _ := toy(t)
	const n, lr = 5, 0.3
	b0 := mat.DenseCopyOf(tt.LoRA.B.Value)
	full := fdGrad(b0, func(b *mat.Dense) float64 {
		bN, _ := tt.Run(b, ep, n, lr)
		return tt.QuestionLoss(bN, ep)
	})
	for _, T := range []int{0, 1, 2, 4} {
		mg, err := tt.MetaGradient(ep, perk.Config{InnerSteps: n, Truncate: T, InnerLR: lr})
		if err != nil {
			t.Fatal(err)
		}
		prefix, _ := tt.Run(b0, ep, n-T, lr)
		var delta mat.Dense
		delta.Sub(prefix, b0) // the frozen increment of the first N − T steps
		num := fdGrad(b0, func(b *mat.Dense) float64 {
			var start mat.Dense
			start.Add(b, &delta)
			bN, _ := tt.Run(&start, ep, T, lr)
			return tt.QuestionLoss(bN, ep)
		})
		e := relErr(mg.Grad, num)
		t.Logf("N = %d, T = %d: exact vs frozen-prefix finite differences %.2g; vs the full unroll's %.2g", n, T, e, relErr(mg.Grad, full))
		if e > 1e-7 {
			t.Errorf("T = %d: truncated meta-gradient off the frozen-prefix finite difference by %.3g", T, e)
		}
		if relErr(mg.Grad, full) < 1e-4 {
			t.Errorf("T = %d: truncated gradient equals the full one (%.3g): the check proves nothing", T, relErr(mg.Grad, full))
		}
	}
}

// TestInnerLossDecreases: with η below 1/λ_max of the inner loss's
// Hessian (λ_max from the Jacobian M: η·λ_max = 1 − λ_min(M)), each of 30
// inner steps lowers the context loss; with η far above it the loss grows.
func TestInnerLossDecreases(t *testing.T) {
	tt, ep, _ := toy(t)
	var eig mat.EigenSym
	M := tt.Jacobian(ep, 1)
	eig.Factorize(mat.NewSymDense(3, mat.DenseCopyOf(M).RawMatrix().Data), false)
	lamMax := 1 - eig.Values(nil)[0] // η = 1: M = I − H, so λ_max(H) = 1 − λ_min(M)
	small := 0.5 / lamMax
	_, losses := tt.Run(tt.LoRA.B.Value, ep, 30, small)
	for i := 1; i < len(losses); i++ {
		if !(losses[i] < losses[i-1]) {
			t.Errorf("η = %.3g (λ_max = %.3g): loss rose at step %d: %.6g → %.6g", small, lamMax, i, losses[i-1], losses[i])
		}
	}
	t.Logf("η = %.3g = 0.5/λ_max: context loss %.4f → %.4f in 30 steps", small, losses[0], losses[len(losses)-1])
	_, big := tt.Run(tt.LoRA.B.Value, ep, 30, 3/lamMax)
	if !(big[len(big)-1] > big[0]) {
		t.Errorf("η = 3/λ_max: loss did not grow (%.4g → %.4g): the small-η check proves nothing", big[0], big[len(big)-1])
	}
}

// TestLinearMetaTrain: meta-training B₀ with the exact gradient lowers the
// held-out question loss after the inner loop; the first-order run is
// reported next to it.
func TestLinearMetaTrain(t *testing.T) {
	score := func(tt *perk.LinearToy, src perk.EpisodeSource, cfg perk.Config) float64 {
		rng := rand.New(rand.NewSource(77))
		var s float64
		for i := 0; i < 40; i++ {
			ep := src.Episode(rng)
			bN, _ := tt.Run(tt.LoRA.B.Value, ep, cfg.InnerSteps, cfg.InnerLR)
			s += tt.QuestionLoss(bN, ep)
		}
		return s / 40
	}
	cfg := perk.Config{InnerSteps: 4, Truncate: 4, InnerLR: 0.2, OuterLR: 0.05, MetaSteps: 150, EpisodesPerStep: 4, Seed: 5}
	res := map[bool]float64{}
	var before float64
	for _, fo := range []bool{false, true} {
		tt, _, src := toy(t)
		tt.LoRA.B.Value.Zero()
		before = score(tt, src, cfg)
		if _, err := tt.MetaTrain(context.Background(), src, cfg, fo); err != nil {
			t.Fatal(err)
		}
		res[fo] = score(tt, src, cfg)
	}
	t.Logf("held-out question loss after %d inner steps: B₀ = 0 %.4f; meta-trained exact %.4f, first-order %.4f", cfg.InnerSteps, before, res[false], res[true])
	if !(res[false] < 0.7*before) {
		t.Errorf("exact meta-training: %.4f, from %.4f: want ≥ 30%% lower", res[false], before)
	}
}

func TestBadConfig(t *testing.T) {
	tt, ep, _ := toy(t)
	for _, c := range []struct {
		cfg  perk.Config
		want string
	}{
		{perk.Config{InnerSteps: 0, InnerLR: 0.1}, "InnerSteps = 0"},
		{perk.Config{InnerSteps: 2, Truncate: 3, InnerLR: 0.1}, "Truncate = 3"},
		{perk.Config{InnerSteps: 2, InnerLR: math.NaN()}, "InnerLR = NaN"},
	} {
		if _, err := tt.MetaGradient(ep, c.cfg); adaptertest.ErrorMentions(err, c.want, "PERK") != nil {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
	m := peft.NewTeacherTask(3, 4, []float64{1}, 2, 1).Model()
	_, err := perk.MetaTrain(context.Background(), m, nil, perk.DefaultConfig())
	if err == nil || !strings.Contains(err.Error(), "no trainable adapter") {
		t.Errorf("MetaTrain without a LoRA: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("PERK")
	if !ok || m.Kind != peft.HookMethod || m.Format != nil || !strings.Contains(m.Paper, "arXiv:2507.06415") {
		t.Errorf("registered %+v (found %v)", m, ok)
	}
}

// TestGeneralMetaGradientMatchesLinearToy: the general MetaGradient
// (Hessian-vector products by differences of gradients) equals the linear
// toy's closed form ∇L_question(B_N)·M^T for every T ≤ N, to 1e-7
// relative: the inner loss is quadratic in B there, so the differences
// are exact up to rounding.
func TestGeneralMetaGradientMatchesLinearToy(t *testing.T) {
	tt, ep, _ := toy(t)
	const n = 4
	for T := 0; T <= n; T++ {
		cfg := perk.Config{InnerSteps: n, Truncate: T, InnerLR: 0.3}
		want, err := tt.MetaGradient(ep, cfg)
		if err != nil {
			t.Fatal(err)
		}
		loss, got, err := perk.MetaGradient(context.Background(), tt.Model, ep, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("T = %d: %d gradients for the toy's one memory tensor B", T, len(got))
		}
		e := adaptertest.RelDiffMax(got[0], want.Grad)
		t.Logf("N = %d, T = %d: general vs closed form %.2g (loss %.6g vs %.6g)", n, T, e, loss, want.Outer)
		if e > 1e-7 || math.Abs(loss-want.Outer) > 1e-12*math.Abs(want.Outer) {
			t.Errorf("N = %d, T = %d: general meta-gradient off the closed form by %.3g (loss %.15g vs %.15g)", n, T, e, loss, want.Outer)
		}
	}
}
