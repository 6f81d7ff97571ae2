// Command pretrain makes the pretrained bases shipped in peft/pretrained:
// a tiny GPT trained on Moby-Dick and an MLP trained on the digits 0–4, each
// from fixed seeds, written as float32 safetensors. Run it through
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
	only := flag.String("only", "", `make only "gpt" or "mlp"`)
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
		start := time.Now()
		g, h, err := peft.PretrainTinyGPT(ctx, 100, func(step int, h *peft.History) {
			fmt.Fprintf(os.Stderr, "tiny GPT step %4d  loss %.4f  lr %.2e  %.1fs\n", step, h.Loss[step-1], h.LR[step-1], time.Since(start).Seconds())
		})
		if err != nil {
			return err
		}
		data, err := peft.NewTextData("moby-dick", peft.TinyGPTConfig.Context, 0.05)
		if err != nil {
			return err
		}
		loss, bpc, err := peft.Evaluate(ctx, g, data)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "tiny GPT: %d steps in %.1fs, held-out Moby-Dick loss %.4f nats (%.3f bits/char)\n",
			len(h.Loss), time.Since(start).Seconds(), loss, bpc)
		if err := peft.SaveModelAs(filepath.Join(out, peft.TinyGPTFile), g, "F32"); err != nil {
			return err
		}
	}
	return nil
}
