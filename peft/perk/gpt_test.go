package perk_test

import (
	"context"
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

// TestGPTKeyValue meta-trains, first-order, a rank-4 LoRA on the tiny
// GPT's attention and MLP layers for the key=value recall task, and checks
// that the question loss after the inner loop on held-out contexts falls.
// Whether recall (accuracy above chance, 10%) is learned in this budget is
// reported, not asserted.
func TestGPTKeyValue(t *testing.T) {
	if testing.Short() {
		t.Skip("meta-trains the tiny GPT")
	}
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Add(g, lora.Config{R: 4, Targets: []string{"attn.v", "attn.o", "mlp.fc", "mlp.proj"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	src := perk.NewKeyValueEpisodes(3)
	cfg := perk.Config{InnerSteps: 4, InnerLR: 0.5, OuterLR: 5e-3, MetaSteps: 60, EpisodesPerStep: 2, Seed: 3}
	l0, a0 := heldOutKV(t, g, src, cfg, 50, 20)
	start := time.Now()
	h, err := perk.MetaTrain(context.Background(), g, src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	l1, a1 := heldOutKV(t, g, src, cfg, 50, 20)
	n, _, _ := peft.TrainableParams(g)
	t.Logf("tiny GPT, LoRA r=4 (%d numbers): %d outer steps in %v (train question loss %.3f → %.3f)", n, cfg.MetaSteps, took.Round(time.Millisecond), h.Loss[0], h.Loss[len(h.Loss)-1])
	t.Logf("held-out, after %d inner steps: question loss %.3f → %.3f; recall accuracy %.0f%% → %.0f%% (chance 10%%)", cfg.InnerSteps, l0, l1, 100*a0, 100*a1)
	if !(l1 < l0) {
		t.Errorf("meta-training did not lower the held-out question loss: %.3f → %.3f", l0, l1)
	}
}
