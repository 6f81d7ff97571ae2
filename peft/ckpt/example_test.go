package ckpt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gopeft/gopeft/peft/ckpt"
)

// Example_compare generates a small base checkpoint and a fine-tune of it
// with a sparse rank-2 update, then analyses one and compares the two, as
// a notebook would (with ckpt.NotebookProgress as Options.Progress to see
// the progress in the cell, and viz.FinalRanks(…, r.RankTrace("mp_outliers"))
// for a chart).
func Example_compare() {
	dir, _ := os.MkdirTemp("", "ckpt-example")
	defer os.RemoveAll(dir)
	base, tuned, err := ckpt.GeneratePair(filepath.Join(dir, "base"), filepath.Join(dir, "tuned"),
		ckpt.GenConfig{Layers: 1, Hidden: 32, FFN: 64, DType: "F32", Seed: 1},
		ckpt.UpdateConfig{Rank: 2, RowFrac: 0.5, ColFrac: 0.5})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()

	r, err := ckpt.Analyze(ctx, base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d weights, %d skipped (%s: %s)\n", len(r.Layers), len(r.Skipped), r.Skipped[0].Name, r.Skipped[0].Reason)
	q := r.Layers[5] // model.layers.0.self_attn.q_proj.weight
	fmt.Printf("%s %d×%d: numerical rank %d, MP outliers ≥ 8: %v\n", q.Name, q.Rows, q.Cols, q.NumericalRank, q.MPOutliers >= 8)

	u, err := ckpt.Compare(ctx, base, tuned, &ckpt.Options{TopK: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	d := u.Layers[5]
	// F32 rounding adds a tiny full-rank error on the 16×16 block it
	// touches: the numerical rank sees it, the effective rank hardly.
	fmt.Printf("ΔW of %s: sparsity %.2f, numerical rank %d of %d, effective rank %.1f\n", d.Name, d.Sparsity, d.Rank, min(d.Rows, d.Cols), d.EffectiveRank)
	// Output:
	// 7 weights, 2 skipped (model.layers.0.input_layernorm.weight: 1-D shape [32])
	// model.layers.0.self_attn.q_proj.weight 32×32: numerical rank 32, MP outliers ≥ 8: true
	// ΔW of model.layers.0.self_attn.q_proj.weight: sparsity 0.75, numerical rank 16 of 32, effective rank 2.0
}
