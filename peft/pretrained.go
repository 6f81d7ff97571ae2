package peft

import (
	"context"
	"embed"
	"fmt"
)

// The pretrained bases shipped with the package are made by
//
//	go generate ./peft     (runs: go run ./internal/pretrain -out pretrained)
//
// which calls PretrainTinyGPT, PretrainTinyGPTWide and PretrainDigitsMLP
// with their fixed seeds and writes pretrained/tiny-gpt.safetensors,
// pretrained/tiny-gpt-wide.safetensors and pretrained/digits-mlp.safetensors
// (float32, PyTorch state_dict names).
// The same build gives the same bytes every time.
//
//go:generate go run ./internal/pretrain -out pretrained
//go:embed pretrained
var pretrainedFS embed.FS

// TinyGPTConfig is the shape of the shipped tiny GPT: a character model
// over CharVocab (V = 96) with 2 blocks of 4 heads, C = 64, T ≤ 64.
var TinyGPTConfig = GPTConfig{Vocab: 96, Context: 64, Layers: 2, Heads: 4, Dim: 64, Hidden: 256, Seed: 1}

// TinyGPTTrainConfig is how PretrainTinyGPT trains it on Moby-Dick.
var TinyGPTTrainConfig = TrainConfig{Steps: 1200, BatchSize: 16, LR: 3e-3, WarmupSteps: 60, MinLR: 3e-4,
	WeightDecay: 0.01, ClipNorm: 1, Seed: 1, Name: "tiny GPT on moby-dick"}

// TinyGPTWideConfig is the shape of the shipped wide tiny GPT, the tiny
// GPT's wider sibling (SN-Netv2 stitches the two): TinyGPTConfig's
// vocabulary (V = 96), context (T ≤ 64) and 2 blocks, with C = 96 in 6
// heads of 16 (the tiny GPT's head width) and an MLP of 4·C = 384.
var TinyGPTWideConfig = GPTConfig{Vocab: 96, Context: 64, Layers: 2, Heads: 6, Dim: 96, Hidden: 384, Seed: 2}

// TinyGPTWideTrainConfig is how PretrainTinyGPTWide trains it on
// Moby-Dick: TinyGPTTrainConfig's schedule and batches (the same seed, so
// the same windows in the same order).
var TinyGPTWideTrainConfig = TrainConfig{Steps: 1200, BatchSize: 16, LR: 3e-3, WarmupSteps: 60, MinLR: 3e-4,
	WeightDecay: 0.01, ClipNorm: 1, Seed: 1, Name: "wide tiny GPT on moby-dick"}

// DigitsMLPSizes are the layer widths of the shipped digits MLP:
// 64 pixels → 64 → 10 classes (layers fc1, fc2).
var DigitsMLPSizes = []int{64, 64, 10}

// DigitsMLPClasses are the digits the shipped MLP was pretrained on, from
// DigitsData(DigitsEvalFrac, DigitsSeed, DigitsMLPClasses...): it has never
// seen a 5, 6, 7, 8 or 9, which adapting it to all ten digits teaches.
var DigitsMLPClasses = []int{0, 1, 2, 3, 4}

// DigitsEvalFrac and DigitsSeed fix the digits split used for the shipped
// MLP; DigitsData(DigitsEvalFrac, DigitsSeed) gives the matching split of
// all ten classes.
const (
	DigitsEvalFrac = 0.25
	DigitsSeed     = 0
)

// DigitsMLPTrainConfig is how PretrainDigitsMLP trains it.
var DigitsMLPTrainConfig = TrainConfig{Steps: 400, BatchSize: 64, LR: 1e-2, WarmupSteps: 20, MinLR: 1e-4, Seed: 1, Name: "digits MLP on 0–4"}

// Names of the shipped files in pretrained/.
const (
	TinyGPTFile     = "tiny-gpt.safetensors"
	TinyGPTWideFile = "tiny-gpt-wide.safetensors"
	DigitsMLPFile   = "digits-mlp.safetensors"
)

// PretrainTinyGPT trains TinyGPTConfig's GPT from scratch on Moby-Dick (a
// window of TinyGPTConfig.Context characters per sequence, the last 5% held
// out) with TinyGPTTrainConfig, plus every/callback for progress. It is what
// made the shipped tiny-gpt.safetensors.
func PretrainTinyGPT(ctx context.Context, every int, callback func(step int, h *History)) (*GPT, *History, error) {
	return pretrainGPT(ctx, TinyGPTConfig, TinyGPTTrainConfig, every, callback)
}

// PretrainTinyGPTWide trains TinyGPTWideConfig's GPT from scratch on
// Moby-Dick as PretrainTinyGPT does the tiny one, with
// TinyGPTWideTrainConfig. It is what made the shipped
// tiny-gpt-wide.safetensors.
func PretrainTinyGPTWide(ctx context.Context, every int, callback func(step int, h *History)) (*GPT, *History, error) {
	return pretrainGPT(ctx, TinyGPTWideConfig, TinyGPTWideTrainConfig, every, callback)
}

func pretrainGPT(ctx context.Context, gcfg GPTConfig, tcfg TrainConfig, every int, callback func(step int, h *History)) (*GPT, *History, error) {
	data, err := NewTextData("moby-dick", gcfg.Context, 0.05)
	if err != nil {
		return nil, nil, err
	}
	g := NewGPT(gcfg)
	tcfg.Every, tcfg.Callback = every, callback
	h, err := Train(ctx, g, data, tcfg)
	return g, h, err
}

// PretrainDigitsMLP trains DigitsMLPSizes' MLP from scratch on the training
// rows of the digits DigitsMLPClasses with DigitsMLPTrainConfig. It is what
// made the shipped digits-mlp.safetensors.
func PretrainDigitsMLP(ctx context.Context) (*MLP, *History, error) {
	m := NewMLP(DigitsMLPSizes, 1)
	cfg := DigitsMLPTrainConfig
	cfg.EvalEvery = cfg.Steps
	h, err := Train(ctx, m, DigitsData(DigitsEvalFrac, DigitsSeed, DigitsMLPClasses...), cfg)
	return m, h, err
}

func loadPretrained(name string, m Model) error {
	b, err := pretrainedFS.ReadFile("pretrained/" + name)
	if err != nil {
		return fmt.Errorf("peft: the pretrained %s is not built into this binary; run go generate ./peft: %w", name, err)
	}
	f, err := ParseSafetensors(b)
	if err != nil {
		return err
	}
	defer f.Close()
	return LoadModelFrom(f, m)
}

// LoadTinyGPT returns the shipped tiny GPT (TinyGPTConfig), pretrained on
// Moby-Dick, with every parameter trainable. Its tokens are CharVocab's.
func LoadTinyGPT() (*GPT, error) {
	g := NewGPT(TinyGPTConfig)
	if err := loadPretrained(TinyGPTFile, g); err != nil {
		return nil, err
	}
	return g, nil
}

// LoadTinyGPTWide returns the shipped wide tiny GPT (TinyGPTWideConfig),
// pretrained on Moby-Dick, with every parameter trainable. Its tokens are
// CharVocab's, as the tiny GPT's.
func LoadTinyGPTWide() (*GPT, error) {
	g := NewGPT(TinyGPTWideConfig)
	if err := loadPretrained(TinyGPTWideFile, g); err != nil {
		return nil, err
	}
	return g, nil
}

// LoadDigitsMLP returns the shipped digits MLP (DigitsMLPSizes), pretrained
// on the digits 0–4 (DigitsMLPClasses), with every parameter trainable.
func LoadDigitsMLP() (*MLP, error) {
	m := NewMLP(DigitsMLPSizes, 1)
	if err := loadPretrained(DigitsMLPFile, m); err != nil {
		return nil, err
	}
	return m, nil
}
