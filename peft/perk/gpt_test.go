package perk_test

import (
	"context"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/perk"
)

// heldOutKV returns the mean question loss and answer accuracy over n
// episodes from seed after PERK's inner loop on each context.
func heldOutKV(t *testing.T, g *peft.GPT, src *perk.KeyValueEpisodes, cfg perk.Config, seed int64, n int) (loss, acc float64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < n; i++ {
		ep := src.Episode(rng)
		restore, _, err := perk.Adapt(context.Background(), g, ep.Context, cfg)
		if err != nil {
			t.Fatal(err)
		}
		loss += g.Loss(ep.Question).Scalar()
		acc += perk.Answers(g, ep)
		restore()
	}
	return loss / float64(n), acc / float64(n)
}

// recallGPT returns the tiny GPT trained on the key=value task in context
// (KeyValueEpisodes.InContext), frozen, with a rank-4 LoRA on its head:
// the setting of the package doc's tiny-GPT figures.
func recallGPT(t *testing.T, src *perk.KeyValueEpisodes, steps int) *peft.GPT {
	t.Helper()
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peft.Train(context.Background(), g, src.InContext(7), peft.TrainConfig{Steps: steps, BatchSize: 8, LR: 3e-3, WarmupSteps: 20, MinLR: 3e-4, Seed: 8}); err != nil {
		t.Fatal(err)
	}
	for _, p := range g.Params() {
		p.Freeze()
	}
	if _, err := lora.Add(g, lora.Config{R: 4, Targets: []string{"head"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGPTKeyValue meta-trains a rank-4 LoRA on the head of the tiny GPT
// (trained on the task in context first) for key=value recall with the
// context gone, with the full truncated meta-gradient (T = N) and with the
// first-order one (T = 0) from the same init, and checks PERK's claim as
// it shows at this scale: after the inner loop on held-out contexts, the
// meta-trained init answers with a lower question loss than the untrained
// one, T = N lower than T = 0, and recall is above twice chance (10%).
func TestGPTKeyValue(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and meta-trains the tiny GPT")
	}
	src := perk.NewKeyValueEpisodes(2)
	start := time.Now()
	g := recallGPT(t, src, 400)
	t.Logf("in-context training: %v", time.Since(start).Round(time.Millisecond))
	ps := peft.AdapterParams(g.Modules())
	init := make([][]float64, len(ps))
	for i, p := range ps {
		init[i] = append([]float64(nil), p.Value.RawMatrix().Data...)
	}
	cfg := perk.Config{InnerSteps: 4, Truncate: 4, InnerLR: 0.3, OuterLR: 5e-3, MetaSteps: 300, EpisodesPerStep: 2, Seed: 3}
	l0, a0 := heldOutKV(t, g, src, cfg, 50, 40)
	type run struct{ loss, acc float64 }
	res := map[int]run{}
	for _, T := range []int{4, 0} {
		for i, p := range ps {
			copy(p.Value.RawMatrix().Data, init[i])
		}
		c := cfg
		c.Truncate = T
		start := time.Now()
		h, err := perk.MetaTrain(context.Background(), g, src, c)
		if err != nil {
			t.Fatal(err)
		}
		l, a := heldOutKV(t, g, src, c, 50, 40)
		res[T] = run{l, a}
		t.Logf("T=%d: %d outer steps in %v (train question loss %.3f → %.3f); held-out question loss %.3f → %.3f, recall %.0f%% → %.0f%%",
			T, c.MetaSteps, time.Since(start).Round(time.Millisecond), h.Loss[0], h.Loss[len(h.Loss)-1], l0, l, 100*a0, 100*a)
	}
	if !(res[4].loss < l0) {
		t.Errorf("meta-training (T = N) did not lower the held-out question loss: %.3f → %.3f", l0, res[4].loss)
	}
	if !(res[4].loss < res[0].loss) {
		t.Errorf("T = N held-out question loss %.3f is not below first-order's %.3f", res[4].loss, res[0].loss)
	}
	if !(res[4].acc > 0.2) {
		t.Errorf("recall after PERK (T = N) is %.0f%%, not above twice chance (20%%)", 100*res[4].acc)
	}
}

// TestMetaGradientGPT checks MetaGradient on the tiny GPT with a rank-2
// LoRA against central differences of the outer loss along random
// directions, for T = N (full unroll) and T < N with the first N − T
// inner steps frozen (their displacement held fixed), as the paper's
// truncated meta-gradient is defined.
func TestMetaGradientGPT(t *testing.T) {
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Add(g, lora.Config{R: 2, Targets: []string{"attn.v", "mlp.fc"}, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	ps := peft.AdapterParams(g.Modules())
	rng := rand.New(rand.NewSource(5))
	// B ≠ 0, so that A's gradient is not zero at θ.
	for _, p := range ps {
		raw := p.Value.RawMatrix().Data
		for i := range raw {
			raw[i] += 0.05 * rng.NormFloat64()
		}
	}
	ep := perk.NewKeyValueEpisodes(2).Episode(rng)
	ctx := context.Background()
	for _, tc := range []struct{ n, T int }{{3, 3}, {3, 1}, {3, 0}} {
		cfg := perk.Config{InnerSteps: tc.n, Truncate: tc.T, InnerLR: 0.5}
		theta := make([][]float64, len(ps))
		for i, p := range ps {
			theta[i] = append([]float64(nil), p.Value.RawMatrix().Data...)
		}
		// The frozen displacement D = φ_{N−T}(θ) − θ.
		free := cfg
		free.InnerSteps, free.Truncate = tc.n-tc.T, 0
		disp := make([][]float64, len(ps))
		for i := range ps {
			disp[i] = make([]float64, len(theta[i]))
		}
		if free.InnerSteps > 0 {
			restore, _, err := perk.Adapt(ctx, g, ep.Context, free)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range ps {
				for j, v := range p.Value.RawMatrix().Data {
					disp[i][j] = v - theta[i][j]
				}
			}
			restore()
		}
		// outer(θ') = L_question after T steps from θ' + D.
		last := cfg
		last.InnerSteps, last.Truncate = tc.T, 0
		outer := func(h float64, dir [][]float64) float64 {
			for i, p := range ps {
				raw := p.Value.RawMatrix().Data
				for j := range raw {
					raw[j] = theta[i][j] + h*dir[i][j] + disp[i][j]
				}
			}
			defer func() {
				for i, p := range ps {
					copy(p.Value.RawMatrix().Data, theta[i])
				}
			}()
			if tc.T == 0 {
				return g.Loss(ep.Question).Scalar()
			}
			r, _, err := perk.Adapt(ctx, g, ep.Context, last)
			if err != nil {
				t.Fatal(err)
			}
			defer r()
			return g.Loss(ep.Question).Scalar()
		}
		loss, grads, err := perk.MetaGradient(ctx, g, ep, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if l0 := outer(0, nil2(theta)); math.Abs(l0-loss) > 1e-12*math.Abs(loss) {
			t.Errorf("N=%d T=%d: MetaGradient's loss %.15g, the unrolled loss %.15g", tc.n, tc.T, loss, l0)
		}
		worst := 0.0
		for trial := 0; trial < 3; trial++ {
			dir := make([][]float64, len(ps))
			var want, got float64
			for i := range ps {
				dir[i] = make([]float64, len(theta[i]))
				gr := grads[i].RawMatrix().Data
				for j := range dir[i] {
					dir[i][j] = rng.NormFloat64()
					got += gr[j] * dir[i][j]
				}
			}
			const h = 1e-5
			want = (outer(h, dir) - outer(-h, dir)) / (2 * h)
			rel := math.Abs(got-want) / math.Max(math.Abs(want), 1e-8)
			worst = math.Max(worst, rel)
		}
		t.Logf("N=%d T=%d: directional meta-gradient against central differences, worst relative error %.2e", tc.n, tc.T, worst)
		if worst > 1e-5 {
			t.Errorf("N=%d T=%d: meta-gradient off by %.2e (relative) from central differences", tc.n, tc.T, worst)
		}
	}
}

func nil2(theta [][]float64) [][]float64 {
	out := make([][]float64, len(theta))
	for i := range theta {
		out[i] = make([]float64, len(theta[i]))
	}
	return out
}
