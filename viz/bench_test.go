package viz_test

import (
	"math"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/viz"
)

// BenchmarkSpectrumPNG draws a 1,024-point spectrum with its cumulative
// energy panel, rank, threshold, elbow and effective-rank markers, from the
// values to the encoded PNG (960×420 CSS px at 2×: 1920×840 pixels).
func BenchmarkSpectrumPNG(b *testing.B) {
	s := make([]float64, 1024)
	for i := range s {
		s[i] = 100*math.Exp(-float64(i)/20) + 1/math.Sqrt(float64(i+1))
	}
	sp, err := peft.SpectrumOf(s)
	if err != nil {
		b.Fatal(err)
	}
	sp.Name = "W"
	b.ReportAllocs()
	defer viz.ReportCPU(b)()
	for b.Loop() {
		c, err := viz.SpectrumChart(viz.SpectrumOptions{LogY: true, Energy: true, Rank: 16,
			Thresholds: []float64{0.9, 0.99}, Elbow: true, EffectiveRank: true}, sp)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.PNG()) == 0 {
			b.Fatal("no PNG")
		}
	}
}

// BenchmarkRankHeatmapPNG draws a rank trace of 100 modules × 200 steps with
// the final-rank bars, from the trace to the encoded PNG (960×1300 CSS px at
// 2×).
func BenchmarkRankHeatmapPNG(b *testing.B) {
	tr := &peft.RankTrace{}
	for i := 0; i < 100; i++ {
		tr.Modules = append(tr.Modules, "blocks.x.attn.q")
		row := make([]int, 200)
		for j := range row {
			row[j] = max(0, 12-(j*(i%7+1))/150+(i*j)%3) // changes often: many cells
		}
		tr.Ranks = append(tr.Ranks, row)
	}
	for j := 0; j < 200; j++ {
		tr.Steps = append(tr.Steps, 10*(j+1))
	}
	b.ReportAllocs()
	defer viz.ReportCPU(b)()
	for b.Loop() {
		c, err := viz.RankHeatmap(viz.RankOptions{}, tr)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.PNG()) == 0 {
			b.Fatal("no PNG")
		}
	}
}
