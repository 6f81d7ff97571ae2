// Command pretrain makes the pretrained bases shipped in peft/pretrained:
// a tiny GPT and a wider one (C = 64 and 96) trained on Moby-Dick, and an MLP
// trained on the digits 0–4, each from fixed seeds, written as float32
// safetensors. Run it through
//
//	go generate ./peft
//
// It prints the training progress and the final evaluation figures to
// stderr; with the same build it writes the same bytes every time.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/gopeft/gopeft/peft"
)

func main() {
	out := flag.String("out", "pretrained", "directory to write the safetensors files into")
	only := flag.String("only", "", `make only "gpt", "gpt-wide" or "mlp"`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "pretrain:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, only string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if only == "" || only == "mlp" {
		start := time.Now()
		m, h, err := peft.PretrainDigitsMLP(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "digits MLP: %d steps in %.1fs, eval loss %.4f, accuracy %.4f on digits 0–4\n",
			len(h.Loss), time.Since(start).Seconds(), h.EvalLoss[len(h.EvalLoss)-1], h.EvalMetric[len(h.EvalMetric)-1])
		if err := peft.SaveModelAs(filepath.Join(out, peft.DigitsMLPFile), m, "F32"); err != nil {
			return err
		}
	}
	if only == "" || only == "gpt" {
		if err := gpt(ctx, "tiny GPT", peft.PretrainTinyGPT, peft.TinyGPTConfig, filepath.Join(out, peft.TinyGPTFile)); err != nil {
			return err
		}
	}
	if only == "" || only == "gpt-wide" {
		if err := gpt(ctx, "wide tiny GPT", peft.PretrainTinyGPTWide, peft.TinyGPTWideConfig, filepath.Join(out, peft.TinyGPTWideFile)); err != nil {
			return err
		}
	}
	return nil
}

// gpt trains a GPT of config cfg with pretrain, reports its held-out
// Moby-Dick loss, and writes it to path.
func gpt(ctx context.Context, name string, pretrain func(context.Context, int, func(int, *peft.History)) (*peft.GPT, *peft.History, error), cfg peft.GPTConfig, path string) error {
	start := time.Now()
	g, h, err := pretrain(ctx, 100, func(step int, h *peft.History) {
		fmt.Fprintf(os.Stderr, "%s step %4d  loss %.4f  lr %.2e  %.1fs\n", name, step, h.Loss[step-1], h.LR[step-1], time.Since(start).Seconds())
	})
	if err != nil {
		return err
	}
	data, err := peft.NewTextData("moby-dick", cfg.Context, 0.05)
	if err != nil {
		return err
	}
	loss, bpc, err := peft.Evaluate(ctx, g, data)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d steps in %.1fs, held-out Moby-Dick loss %.4f nats (%.3f bits/char)\n",
		name, len(h.Loss), time.Since(start).Seconds(), loss, bpc)
	return peft.SaveModelAs(path, g, "F32")
}
