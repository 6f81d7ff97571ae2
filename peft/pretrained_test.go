package peft

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestDigitsMLPPretrained(t *testing.T) {
	m, err := LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	seen := DigitsData(DigitsEvalFrac, DigitsSeed, DigitsMLPClasses...)
	unseen := DigitsData(DigitsEvalFrac, DigitsSeed, 5, 6, 7, 8, 9)
	accSeen := m.Metric(Batch{X: seen.EvalX, Labels: seen.EvalLabels})
	accUnseen := m.Metric(Batch{X: unseen.EvalX, Labels: unseen.EvalLabels})
	t.Logf("shipped digits MLP: held-out accuracy %.4f on 0–4, %.4f on 5–9", accSeen, accUnseen)
	if accSeen < 0.97 || accUnseen > 0.05 {
		t.Errorf("accuracy %.4f on the digits it learned, %.4f on the others", accSeen, accUnseen)
	}
}

// TestPretrainDeterministic runs the digits MLP's pretraining twice and
// checks that the files are the same bytes.
func TestPretrainDeterministic(t *testing.T) {
	dir := t.TempDir()
	var files [2][]byte
	for i := range files {
		m, _, err := PretrainDigitsMLP(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "mlp.safetensors")
		if err := SaveModelAs(p, m, "F32"); err != nil {
			t.Fatal(err)
		}
		if files[i], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("two pretraining runs wrote different bytes")
	}
}

func TestTinyGPTPretrained(t *testing.T) {
	g, err := LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	var bpc [2]float64
	for i, name := range []string{"moby-dick", "sotu"} {
		d, err := NewTextData(name, TinyGPTConfig.Context, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if _, bpc[i], err = Evaluate(context.Background(), g, d); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("shipped tiny GPT: %.3f bits/char on held-out Moby-Dick, %.3f on the State of the Union", bpc[0], bpc[1])
	// A uniform guess over 96 characters is log₂ 96 ≈ 6.58 bits/char.
	if bpc[0] > 2.8 || bpc[1] <= bpc[0] {
		t.Errorf("bits/char %.3f on Moby-Dick, %.3f on the other text", bpc[0], bpc[1])
	}
}

// TestTinyGPTWidePretrained checks the shipped wide tiny GPT: the tiny
// GPT's vocabulary and context at C = 96, and better than the tiny GPT on
// held-out Moby-Dick (measured 2.591 bits/char against 2.741), worse on the
// State of the Union it never read.
func TestTinyGPTWidePretrained(t *testing.T) {
	g, err := LoadTinyGPTWide()
	if err != nil {
		t.Fatal(err)
	}
	if c := g.Config; c.Vocab != TinyGPTConfig.Vocab || c.Context != TinyGPTConfig.Context || c.Dim != 96 || len(g.Blocks) != 2 {
		t.Errorf("config %+v, want the tiny GPT's V and T with C = 96 and 2 blocks", c)
	}
	var bpc [2]float64
	for i, name := range []string{"moby-dick", "sotu"} {
		d, err := NewTextData(name, TinyGPTWideConfig.Context, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if _, bpc[i], err = Evaluate(context.Background(), g, d); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("shipped wide tiny GPT: %.3f bits/char on held-out Moby-Dick, %.3f on the State of the Union", bpc[0], bpc[1])
	if bpc[0] > 2.65 || bpc[1] <= bpc[0] {
		t.Errorf("bits/char %.3f on Moby-Dick (want ≤ 2.65, below the tiny GPT's 2.741), %.3f on the other text", bpc[0], bpc[1])
	}
}
