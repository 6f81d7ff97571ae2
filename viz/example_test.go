package viz_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/viz"
	"gonum.org/v1/gonum/mat"
)

// The builders below make the charts of the examples; the tests render the
// same charts for the golden images and the gallery (viz/gallery/*.png).

// spectrumChart: a weight, a rank-4 update and a gradient of one layer.
func spectrumChart() (*viz.Chart, error) {
	w, du, g := make([]float64, 48), make([]float64, 48), make([]float64, 48)
	for i := range w {
		w[i] = 10 / math.Sqrt(float64(i+1))
		g[i] = 3 * math.Exp(-float64(i)/6)
	}
	copy(du, []float64{6, 4, 2.5, 1.5}) // rank 4: the rest are exact zeros
	var spectra []*peft.Spectrum
	for _, s := range []struct {
		name string
		v    []float64
	}{{"W", w}, {"ΔW", du}, {"grad W", g}} {
		sp, err := peft.SpectrumOf(s.v)
		if err != nil {
			return nil, err
		}
		sp.Name = s.name
		spectra = append(spectra, sp)
	}
	return viz.SpectrumChart(viz.SpectrumOptions{
		Title: "blocks.0.attn.q", LogY: true, Energy: true, Rank: 4,
		Thresholds: []float64{0.9, 0.99}, Elbow: true, EffectiveRank: true,
	}, spectra...)
}

// esdChart: a 400×100 matrix of heavy-tailed entries (Pareto tails of
// exponent 1.8), whose ESD has a power-law tail, as well-trained layers do.
func esdChart() (*viz.Chart, error) {
	rng := rand.New(rand.NewPCG(1, 2)) // Always the same seed for reproducible results.
	const n, m = 400, 100
	w := mat.NewDense(n, m, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			x := math.Pow(1-rng.Float64(), -1/1.8)
			if rng.IntN(2) == 0 {
				x = -x
			}
			w.Set(i, j, x)
		}
	}
	e, err := peft.NewESD(context.Background(), w)
	if err != nil {
		return nil, err
	}
	e.Name = "W (400×100)"
	return viz.ESDChart(viz.ESDOptions{}, e)
}

// rankTrace: an adaptive-rank run over modules modules and 40 steps whose
// budget falls from 8 to 4 per module, taken first from the modules that
// matter least.
func rankTrace(modules int) *peft.RankTrace {
	tr := &peft.RankTrace{}
	kinds := []string{"q", "k", "v", "o", "fc1", "fc2"}
	for i := 0; i < modules; i++ {
		tr.Modules = append(tr.Modules, fmt.Sprintf("blocks.%d.%s", i/len(kinds), kinds[i%len(kinds)]))
	}
	tr.Ranks = make([][]int, modules)
	for j := 0; j < 40; j++ {
		step := 50 * (j + 1)
		tr.Steps = append(tr.Steps, step)
		t := math.Min(1, float64(j)/30)
		budget := 0
		for i := 0; i < modules; i++ {
			importance := 0.5 + 0.5*math.Cos(float64(i)*1.7) // deterministic, in [0, 1]
			r := int(math.Round(8 - 8*t*t*t*(1-importance)))
			tr.Ranks[i] = append(tr.Ranks[i], r)
			budget += r
		}
		tr.Budget = append(tr.Budget, budget)
	}
	return tr
}

func rankChart() (*viz.Chart, error) {
	return viz.RankHeatmap(viz.RankOptions{Title: "AdaLoRA rank allocation"}, rankTrace(12))
}

func finalRanksChart() (*viz.Chart, error) {
	return viz.FinalRanks(viz.RankOptions{}, rankTrace(12))
}

// history makes a run whose loss falls from 4 to floor, with noise, and an
// evaluation every 25 steps.
func history(name string, floor, tau float64, seed uint64) *peft.History {
	rng := rand.New(rand.NewPCG(seed, 7))
	h := &peft.History{Name: name}
	for s := 1; s <= 300; s++ {
		l := floor + (4-floor)*math.Exp(-float64(s)/tau)
		h.Steps = append(h.Steps, s)
		h.Tokens = append(h.Tokens, 2048*s)
		h.Loss = append(h.Loss, l*(1+0.08*rng.NormFloat64()))
		h.StepTime = append(h.StepTime, 0.02)
		if s%25 == 0 {
			h.EvalSteps = append(h.EvalSteps, s)
			h.EvalLoss = append(h.EvalLoss, l*1.06)
		}
	}
	return h
}

func lossChart() (*viz.Chart, error) {
	return viz.LossChart(viz.LossOptions{Title: "LoRA rank vs. full fine-tuning", LogY: true, Smooth: 0.9},
		history("LoRA r=4", 1.6, 60, 1), history("LoRA r=16", 1.4, 50, 2), history("full FT", 1.3, 40, 3))
}

// subspaceMatrices returns two LoRA-like A matrices (r×k) whose top
// directions overlap: A64 contains A8's row space rotated a little.
func subspaceMatrices() (a8, a64 *mat.Dense) {
	rng := rand.New(rand.NewPCG(3, 4))
	const k = 96
	a64 = mat.NewDense(64, k, nil)
	for i := 0; i < 64; i++ {
		for j := 0; j < k; j++ {
			a64.Set(i, j, rng.NormFloat64()*math.Exp(-float64(i)/8))
		}
	}
	a8 = mat.NewDense(8, k, nil)
	for i := 0; i < 8; i++ {
		for j := 0; j < k; j++ {
			a8.Set(i, j, a64.At(i, j)+0.3*rng.NormFloat64()*math.Exp(-float64(i)/8))
		}
	}
	return a8, a64
}

func subspaceChart() (*viz.Chart, error) {
	ctx := context.Background()
	a8, a64 := subspaceMatrices()
	phi, err := peft.SubspaceSimilarity(ctx, a8, a64, peft.Right, 8, 64)
	if err != nil {
		return nil, err
	}
	th, err := peft.PrincipalAngles(ctx, a8, a64, peft.Right, 8)
	if err != nil {
		return nil, err
	}
	return viz.SubspaceChart(viz.SubspaceOptions{Title: "A (r=8) vs. A (r=64)", A: "A r=8", B: "A r=64"}, phi, th)
}

// gridChart: one spectrum chart per layer of a six-layer model.
func gridChart() (*viz.Chart, error) {
	var charts []*viz.Chart
	for l := 0; l < 6; l++ {
		s := make([]float64, 32)
		for i := range s {
			s[i] = math.Exp(-float64(i)/float64(2+2*l)) + 0.01
		}
		sp, err := peft.SpectrumOf(s)
		if err != nil {
			return nil, err
		}
		sp.Name = fmt.Sprintf("ΔW layer %d", l)
		c, err := viz.SpectrumChart(viz.SpectrumOptions{Title: fmt.Sprintf("blocks.%d.attn.v", l), LogY: true, Thresholds: []float64{0.9}}, sp)
		if err != nil {
			return nil, err
		}
		charts = append(charts, c)
	}
	return viz.Grid("update spectra, layer by layer", 3, charts...)
}

// liveChart runs a fake 200-step training loop whose callback, every 10
// steps, feeds a live chart redrawn every 50 steps.
func liveChart() (*viz.Chart, error) {
	live := viz.NewLive("live: LoRA r=8", 200, 50)
	full := history("LoRA r=8", 1.5, 50, 9)
	h := &peft.History{Name: full.Name}
	for s := 1; s <= 200; s++ {
		h.Steps, h.Tokens = full.Steps[:s], full.Tokens[:s]
		h.Loss, h.StepTime = full.Loss[:s], full.StepTime[:s]
		k := s / 25
		h.EvalSteps, h.EvalLoss = full.EvalSteps[:k], full.EvalLoss[:k]
		if s%10 == 0 {
			live.Callback(s, h)
		}
	}
	return live.Chart(), live.Err()
}

// describe prints a chart's PNG size and whether its SVG is an SVG.
func describe(c *viz.Chart, err error) {
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(c.PNG()))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("png %d×%d, svg %v\n", cfg.Width, cfg.Height, strings.HasPrefix(strings.TrimSpace(c.SVG()), "<?xml"))
}

func ExampleSpectrumChart() {
	describe(spectrumChart())
	// Output: png 1920×840, svg true
}

func ExampleESDChart() {
	describe(esdChart())
	// Output: png 1920×840, svg true
}

func ExampleRankHeatmap() {
	describe(rankChart())
	// Output: png 1920×720, svg true
}

func ExampleFinalRanks() {
	describe(finalRanksChart())
	// Output: png 1280×720, svg true
}

func ExampleLossChart() {
	describe(lossChart())
	// Output: png 1440×800, svg true
}

func ExampleSubspaceChart() {
	describe(subspaceChart())
	// Output: png 1920×840, svg true
}

func ExampleSimilarityHeatmap() {
	a8, a64 := subspaceMatrices()
	phi, err := peft.SubspaceSimilarity(context.Background(), a8, a64, peft.Right, 8, 64)
	if err != nil {
		fmt.Println(err)
		return
	}
	describe(viz.SimilarityHeatmap(viz.SubspaceOptions{A: "A r=8", B: "A r=64"}, phi))
	// Output: png 1040×920, svg true
}

func ExampleAnglesChart() {
	describe(viz.AnglesChart(viz.SubspaceOptions{}, []string{"layer 0", "layer 1"},
		[]float64{0.1, 0.3, 0.9}, []float64{0.2, 0.8, 1.5}))
	// Output: png 1440×800, svg true
}

func ExampleGrid() {
	describe(gridChart())
	// Output: png 1920×1100, svg true
}

func ExampleNewLive() {
	describe(liveChart())
	// Output: png 1440×800, svg true
}

func ExampleChart_Render() {
	c, err := lossChart()
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Width, c.Height, c.Scale = 400, 300, 1
	b, err := c.Render("png")
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, _ := png.DecodeConfig(bytes.NewReader(b))
	fmt.Printf("%d×%d\n", cfg.Width, cfg.Height)
	_, err = c.Render("gif")
	fmt.Println(err)
	// Output:
	// 400×300
	// viz: Render "LoRA rank vs. full fine-tuning": unknown format "gif", want "png" or "svg"
}

func ExampleSpectrumValues() {
	describe(viz.SpectrumValues(viz.SpectrumOptions{LogY: true, Energy: true, Rank: 2},
		[]string{"W", "ΔW"}, []float64{5, 4, 3, 2, 1}, []float64{3, 1, 0, 0, 0}))
	_, err := viz.SpectrumValues(viz.SpectrumOptions{}, []string{"ΔW"}, []float64{1, math.NaN()})
	fmt.Println(err)
	// Output:
	// png 1920×840, svg true
	// viz: SpectrumValues: series "ΔW": peft: SpectrumOf: singular value 1 is NaN
}

func ExampleSpectrumMatrices() {
	w := mat.NewDense(3, 3, []float64{2, 0, 0, 0, 1, 0, 0, 0, 0.5})
	describe(viz.SpectrumMatrices(viz.SpectrumOptions{Normalize: true}, []string{"W"}, w))
	// Output: png 1440×840, svg true
}

func ExampleSubspaceMatrices() {
	a8, a64 := subspaceMatrices()
	describe(viz.SubspaceMatrices(viz.SubspaceOptions{A: "A r=8", B: "A r=64"}, a8, a64, peft.Right, 8, 16))
	// Output: png 1920×840, svg true
}

func ExampleLossValues() {
	describe(viz.LossValues(viz.LossOptions{Smooth: 0.5}, []string{"r=4"}, []float64{3, 2.5, 2.2, 2.1}))
	// Output: png 1440×800, svg true
}

func ExampleRankValues() {
	describe(viz.RankValues(viz.RankOptions{}, []string{"q", "v"}, []int{100, 200}, [][]int{{8, 6}, {8, 2}}))
	// Output: png 1920×720, svg true
}

func ExampleESDMatrix() {
	w := mat.NewDense(20, 10, nil)
	for i := 0; i < 20; i++ {
		for j := 0; j < 10; j++ {
			w.Set(i, j, math.Sin(float64(i*10+j)))
		}
	}
	describe(viz.ESDMatrix(viz.ESDOptions{Bins: 10}, "sin", w))
	// Output: png 1920×840, svg true
}
