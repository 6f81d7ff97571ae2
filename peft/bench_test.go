package peft_test

import (
	"context"
	"testing"
	"time"

	"github.com/gopeft/gopeft/internal/cputime"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
)

// The benchmarks of the training loop. scripts/bench-peft runs them next to
// testdata/torch_peer.py, which times the same models, batches and steps in
// PyTorch, and prints the ratios.

// benchGPTSteps times training steps of the tiny GPT (TinyGPTConfig) on
// batches of 16 sequences of 64 characters, with LoRA (r = 8 on the four
// attention projections) or full fine-tuning.
func benchGPTSteps(b *testing.B, useLoRA bool) {
	g := peft.NewGPT(peft.TinyGPTConfig)
	if useLoRA {
		if _, err := lora.Add(g, lora.Config{R: 8, Alpha: 16, Targets: []string{"attn.q", "attn.k", "attn.v", "attn.o"}}); err != nil {
			b.Fatal(err)
		}
	}
	data, err := peft.NewTextData("sotu", peft.TinyGPTConfig.Context, 0.05)
	if err != nil {
		b.Fatal(err)
	}
	cfg := peft.TrainConfig{Steps: 1, BatchSize: 16, LR: 1e-3, Schedule: "constant"}
	if _, err := peft.Train(context.Background(), g, data, cfg); err != nil { // warm up
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Process()
	cfg.Steps = b.N
	if _, err := peft.Train(context.Background(), g, data, cfg); err != nil {
		b.Fatal(err)
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(16*64*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// reportCPU reports the process's CPU time per op since cpu, which on a
// shared machine tells the code's cost apart from waiting for a core.
func reportCPU(b *testing.B, cpu time.Duration) {
	if c := cputime.Process(); c > 0 {
		b.ReportMetric(float64(c-cpu)/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkGPTStep(b *testing.B) {
	b.Run("lora", func(b *testing.B) { benchGPTSteps(b, true) })
	b.Run("full", func(b *testing.B) { benchGPTSteps(b, false) })
}

// BenchmarkDigitsLoRAEpoch times one epoch (ceil(n/64) steps of 64 rows) of
// LoRA (r = 8 on fc1 and fc2) on the shipped digits MLP over the training
// rows of all ten digits.
func BenchmarkDigitsLoRAEpoch(b *testing.B) {
	m := peft.NewMLP(peft.DigitsMLPSizes, 1)
	if _, err := lora.Add(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"fc1", "fc2"}}); err != nil {
		b.Fatal(err)
	}
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	n, _ := data.X.Dims()
	steps := (n + 63) / 64
	cfg := peft.TrainConfig{Steps: steps, BatchSize: 64, LR: 1e-3, Schedule: "constant"}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Process()
	for i := 0; i < b.N; i++ {
		if _, err := peft.Train(context.Background(), m, data, cfg); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}
