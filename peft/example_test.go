package peft_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// This example is the lesson of the package: it loads the shipped tiny GPT
// (pretrained on Moby-Dick), attaches LoRA to its attention projections,
// trains 200 steps on the State of the Union addresses, saves the adapter in
// HuggingFace PEFT's format, merges it, and checks that a fresh copy of the
// base with the saved adapter loaded gives the same outputs.
func Example() {
	ctx := context.Background()
	g, err := peft.LoadTinyGPT()
	if err != nil {
		fmt.Println(err)
		return
	}
	sotu, err := peft.NewTextData("sotu", peft.TinyGPTConfig.Context, 0.05)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := lora.Add(g, lora.Config{R: 8, Alpha: 16, Targets: []string{"attn.q", "attn.k", "attn.v", "attn.o"}, Seed: 1}); err != nil {
		fmt.Println(err)
		return
	}
	n, total, pct := peft.TrainableParams(g)
	fmt.Printf("trainable: %d of %d parameters (%.2f%%)\n", n, total, pct)
	before, _, _ := peft.Evaluate(ctx, g, sotu) // held-out loss, nats per character

	h, err := peft.Train(ctx, g, sotu, peft.TrainConfig{Steps: 200, BatchSize: 8, LR: 1e-2, WarmupSteps: 10, MinLR: 1e-3, EvalEvery: 200, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	first, last := mean(h.Loss[:20]), mean(h.Loss[180:])
	fmt.Println("training loss falls by more than 0.05 nats:", first-last > 0.05)
	fmt.Println("held-out loss falls by more than 0.05 nats:", before-h.EvalLoss[0] > 0.05)

	dir, err := os.MkdirTemp("", "gopeft-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if err := peft.SaveAdapter(dir, g, "default"); err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		_, err := os.Stat(filepath.Join(dir, f))
		fmt.Println("saved", f+":", err == nil)
	}

	tokens := sotu.Eval[:64]
	adapted := mat.DenseCopyOf(g.Forward(tokens, 1).Value)
	if err := peft.MergeAdapters(g); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("merged = adapted to 1e-12:", maxDiff(g.Forward(tokens, 1).Value, adapted) < 1e-12)

	fresh, err := peft.LoadTinyGPT()
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := peft.LoadAdapter(dir, fresh, "default"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("reloaded = adapted to 1e-12:", maxDiff(fresh.Forward(tokens, 1).Value, adapted) < 1e-12)
	// Output:
	// trainable: 8192 of 124672 parameters (6.57%)
	// training loss falls by more than 0.05 nats: true
	// held-out loss falls by more than 0.05 nats: true
	// saved adapter_config.json: true
	// saved adapter_model.safetensors: true
	// merged = adapted to 1e-12: true
	// reloaded = adapted to 1e-12: true
}

func maxDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return math.Max(mat.Max(&d), -mat.Min(&d))
}

// ExampleTargets shows PEFT's target_modules matching on the tiny GPT's
// dotted module names.
func ExampleTargets() {
	g := peft.NewGPT(peft.TinyGPTConfig)
	mods, _ := peft.Targets(g, "attn.q", `^blocks\.1\.mlp\..*$`)
	for _, l := range mods {
		fmt.Println(l.Name)
	}
	_, err := peft.Targets(peft.NewMLP([]int{4, 3, 2}, 1), "attn")
	fmt.Println(err)
	// Output:
	// blocks.0.attn.q
	// blocks.1.attn.q
	// blocks.1.mlp.fc
	// blocks.1.mlp.proj
	// peft: target module "attn" matches no module; the model has "fc1", "fc2"
}

// ExampleTrain fine-tunes the shipped digits MLP, which has only seen the
// digits 0–4, to all ten digits with LoRA on both layers.
func ExampleTrain() {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	if _, err := lora.Add(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"fc1", "fc2"}, Seed: 1}); err != nil {
		fmt.Println(err)
		return
	}
	h, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 300, BatchSize: 64, LR: 1e-2, EvalEvery: 300, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s on all ten digits after LoRA: above 0.9: %v\n", h.MetricName, h.EvalMetric[0] > 0.9)
	// Output:
	// accuracy on all ten digits after LoRA: above 0.9: true
}

// ExampleCharVocab encodes text for the tiny GPT: curly quotes and dashes
// become their ASCII forms.
func ExampleCharVocab() {
	v := peft.CharVocab()
	ids := v.Encode("Call me “Ishmael”—")
	fmt.Println(v.Size(), ids[:4])
	fmt.Println(v.Decode(ids))
	// Output:
	// 96 [36 66 77 77]
	// Call me "Ishmael"-
}
