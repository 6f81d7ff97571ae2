package snnet_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/snnet"
)

// ExampleNew stitches the first layer of the small digits anchor (16 wide)
// to the large one (64 wide) from its second layer on. The least-squares
// stitch M (64×16) already classifies most held-out digits; SN-Netv2's
// LoRA of rank 8 on M, with the bias c, trains r·(d1 + d2) + d2 = 704
// numbers and brings the stitched network between the anchors.
func ExampleNew() {
	ctx := context.Background()
	small, large, data, err := snnet.DigitsAnchors(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := snnet.New(ctx, small, large, data, snnet.StitchConfig{L: 1, LPrime: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	d1, d2 := s.Widths()
	_, before, _ := peft.Evaluate(ctx, s, data)
	fmt.Printf("stitch %d→%d, fit error %.2f, accuracy %.3f\n", d1, d2, s.FitError, before)
	if _, err := snnet.Add(s, snnet.Config{R: 8}); err != nil {
		fmt.Println(err)
		return
	}
	trained, _, _ := peft.TrainableParams(s)
	if _, err := peft.Train(ctx, s, data, peft.TrainConfig{Steps: 400, BatchSize: 64, LR: 3e-2, Seed: 1}); err != nil {
		fmt.Println(err)
		return
	}
	_, after, _ := peft.Evaluate(ctx, s, data)
	_, accSmall, _ := peft.Evaluate(ctx, small, data)
	_, accLarge, _ := peft.Evaluate(ctx, large, data)
	fmt.Printf("LoRA r=%d: %d trained, accuracy %.3f (anchors %.3f and %.3f)\n", peft.Ranks(s)["stitch"], trained, after, accSmall, accLarge)
	// Output:
	// stitch 16→64, fit error 0.21, accuracy 0.951
	// LoRA r=8: 704 trained, accuracy 0.955 (anchors 0.949 and 0.973)
}

// ExampleCurve lists the stitching space of the digits anchors, A (16
// wide) and B (64 wide), stitched both ways with least-squares stitches
// only: SN-Netv2's accuracy–FLOPs trade-off before any training.
func ExampleCurve() {
	ctx := context.Background()
	small, large, data, err := snnet.DigitsAnchors(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	pts, err := snnet.Curve(ctx, small, large, data, snnet.CurveConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range pts {
		fmt.Printf("%-12s %5d FLOPs  accuracy %.3f\n", p.Name, p.FLOPs, p.Accuracy)
	}
	// Output:
	// A             1440 FLOPs  accuracy 0.949
	// A[:2]→B[2:]   2944 FLOPs  accuracy 0.929
	// B[:1]→A[1:]   5536 FLOPs  accuracy 0.958
	// A[:1]→B[1:]   6784 FLOPs  accuracy 0.951
	// B             8832 FLOPs  accuracy 0.973
	// B[:2]→A[2:]   9376 FLOPs  accuracy 0.953
}

// ExampleStitchGPT stitches the shipped tiny GPT (C = 64) after its first
// block into its wide sibling (C = 96) before the wide one's second block,
// with the least-squares stitch M (96×64) fitted on 2048 tokens of
// Moby-Dick, and reads the stitched network's held-out bits per character
// against the anchors': before training it is worse than both, and
// SN-Netv2's LoRA (snnet.Add, then peft.Train) trains it like any
// peft.Model.
func ExampleStitchGPT() {
	ctx := context.Background()
	tiny, wide, data, err := snnet.GPTAnchors()
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := snnet.StitchGPT(ctx, tiny, wide, data, snnet.StitchConfig{L: 1, LPrime: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	c1, c2 := s.Widths()
	_, bpc, _ := peft.Evaluate(ctx, s, data)
	_, bpcTiny, _ := peft.Evaluate(ctx, tiny, data)
	_, bpcWide, _ := peft.Evaluate(ctx, wide, data)
	fmt.Printf("%s: stitch %d→%d on %d tokens, fit error %.2f\n", s.Name, c1, c2, s.FitRows, s.FitError)
	fmt.Printf("%.2f bits/char (anchors %.2f and %.2f), %d FLOPs per token (anchors %d and %d)\n",
		bpc, bpcTiny, bpcWide, s.FLOPs(), snnet.GPTFLOPs(tiny), snnet.GPTFLOPs(wide))
	// Output:
	// front[:1]→back[1:]: stitch 64→96 on 2048 tokens, fit error 0.34
	// 2.90 bits/char (anchors 2.74 and 2.59), 185504 FLOPs per token (anchors 112768 and 242880)
}
