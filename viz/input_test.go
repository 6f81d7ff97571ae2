package viz_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/gopeft/gopeft/nb"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/viz"
	"gonum.org/v1/gonum/mat"
)

// Every constructor turns bad input into an error that names the series and
// the problem, and never panics.
func TestBadInput(t *testing.T) {
	sp := func(name string, s ...float64) *peft.Spectrum { return &peft.Spectrum{Name: name, S: s} }
	good := sp("W", 3, 2, 1)
	hist := func() *peft.History {
		return &peft.History{Name: "LoRA r=4", Steps: []int{1, 2, 3}, Tokens: []int{10, 20, 30}, Loss: []float64{3, 2, 1},
			EvalSteps: []int{3}, EvalLoss: []float64{1.5}}
	}
	trace := func() *peft.RankTrace {
		return &peft.RankTrace{Modules: []string{"q", "v"}, Steps: []int{10, 20}, Ranks: [][]int{{4, 3}, {4, 2}}}
	}
	cases := []struct {
		name string
		f    func() (*viz.Chart, error)
		want string
	}{
		{"no spectra", func() (*viz.Chart, error) { return viz.SpectrumChart(viz.SpectrumOptions{}) }, "no spectra"},
		{"nil spectrum", func() (*viz.Chart, error) { return viz.SpectrumChart(viz.SpectrumOptions{}, good, nil) }, "series 2 is nil"},
		{"empty spectrum", func() (*viz.Chart, error) { return viz.SpectrumChart(viz.SpectrumOptions{}, sp("ΔW")) }, `"ΔW" is empty`},
		{"NaN spectrum", func() (*viz.Chart, error) {
			return viz.SpectrumChart(viz.SpectrumOptions{}, sp("ΔW", 2, math.NaN()))
		}, `"ΔW": value 1 is NaN`},
		{"Inf spectrum", func() (*viz.Chart, error) {
			return viz.SpectrumChart(viz.SpectrumOptions{}, sp("", math.Inf(1), 1))
		}, `"series 1": value 0 is +Inf`},
		{"negative σ", func() (*viz.Chart, error) { return viz.SpectrumChart(viz.SpectrumOptions{}, sp("G", 2, -1)) }, `"G": value 1 is negative`},
		{"unsorted σ", func() (*viz.Chart, error) { return viz.SpectrumChart(viz.SpectrumOptions{}, sp("G", 1, 2)) }, "not sorted"},
		{"negative rank", func() (*viz.Chart, error) { return viz.SpectrumChart(viz.SpectrumOptions{Rank: -2}, good) }, "rank -2 is negative"},
		{"bad threshold", func() (*viz.Chart, error) {
			return viz.SpectrumChart(viz.SpectrumOptions{Thresholds: []float64{0.9, 90}}, good)
		}, "threshold 90 is outside (0, 1]"},
		{"nil ESD", func() (*viz.Chart, error) { return viz.ESDChart(viz.ESDOptions{}, nil) }, "no eigenvalues"},
		{"NaN ESD", func() (*viz.Chart, error) {
			return viz.ESDChart(viz.ESDOptions{}, &peft.ESD{Name: "W", Lambda: []float64{1, math.NaN()}, N: 4, M: 2})
		}, `"W": value 1 is NaN`},
		{"all-zero ESD on log axes", func() (*viz.Chart, error) {
			return viz.ESDChart(viz.ESDOptions{}, &peft.ESD{Name: "Z", Lambda: []float64{0, 0}, N: 4, M: 2})
		}, "no values to bin"},
		{"no runs", func() (*viz.Chart, error) { return viz.LossChart(viz.LossOptions{}) }, "no runs"},
		{"empty run", func() (*viz.Chart, error) {
			return viz.LossChart(viz.LossOptions{}, &peft.History{Name: "full FT"})
		}, `"full FT" has no loss`},
		{"mismatched steps", func() (*viz.Chart, error) {
			h := hist()
			h.Steps = h.Steps[:2]
			return viz.LossChart(viz.LossOptions{}, h)
		}, `"LoRA r=4" has 2 steps for 3 loss values`},
		{"mismatched eval", func() (*viz.Chart, error) {
			h := hist()
			h.EvalLoss = nil
			return viz.LossChart(viz.LossOptions{}, h)
		}, "1 eval steps for 0 eval losses"},
		{"missing tokens", func() (*viz.Chart, error) {
			h := hist()
			h.Tokens = nil
			return viz.LossChart(viz.LossOptions{Tokens: true}, h)
		}, "0 token counts for 3 loss values"},
		{"NaN loss", func() (*viz.Chart, error) {
			h := hist()
			h.Loss[1] = math.NaN()
			return viz.LossChart(viz.LossOptions{}, hist(), h)
		}, `"LoRA r=4": training loss at step 2 is NaN`},
		{"zero loss on log axis", func() (*viz.Chart, error) {
			h := hist()
			h.EvalLoss[0] = 0
			return viz.LossChart(viz.LossOptions{LogY: true}, h)
		}, "eval loss at step 3 is 0, which a log axis cannot show"},
		{"bad smoothing", func() (*viz.Chart, error) { return viz.LossChart(viz.LossOptions{Smooth: 1}, hist()) }, "Smooth = 1"},
		{"nil trace", func() (*viz.Chart, error) { return viz.RankHeatmap(viz.RankOptions{}, nil) }, "nil rank trace"},
		{"trace rows", func() (*viz.Chart, error) {
			tr := trace()
			tr.Ranks = tr.Ranks[:1]
			return viz.RankHeatmap(viz.RankOptions{}, tr)
		}, "1 rows of ranks for 2 modules"},
		{"trace row length", func() (*viz.Chart, error) {
			tr := trace()
			tr.Ranks[1] = []int{1}
			return viz.FinalRanks(viz.RankOptions{}, tr)
		}, `module "v" has 1 ranks for 2 steps`},
		{"negative rank in trace", func() (*viz.Chart, error) {
			tr := trace()
			tr.Ranks[1][1] = -1
			return viz.RankHeatmap(viz.RankOptions{}, tr)
		}, `module "v" has negative rank -1 at step 20`},
		{"steps not increasing", func() (*viz.Chart, error) {
			tr := trace()
			tr.Steps[1] = 10
			return viz.RankHeatmap(viz.RankOptions{}, tr)
		}, "steps not increasing"},
		{"empty φ", func() (*viz.Chart, error) { return viz.SimilarityHeatmap(viz.SubspaceOptions{}, &mat.Dense{}) }, "φ is empty"},
		{"φ out of range", func() (*viz.Chart, error) {
			return viz.SimilarityHeatmap(viz.SubspaceOptions{}, mat.NewDense(1, 2, []float64{0.5, 1.5}))
		}, "φ(1, 2) = 1.5 is outside [0, 1]"},
		{"angles names", func() (*viz.Chart, error) {
			return viz.AnglesChart(viz.SubspaceOptions{}, []string{"a"}, []float64{0.1}, []float64{0.2})
		}, "1 names for 2 angle series"},
		{"angle out of range", func() (*viz.Chart, error) {
			return viz.AnglesChart(viz.SubspaceOptions{}, []string{"layer 3"}, []float64{0.1, 2})
		}, `"layer 3": angle 1 is 2 rad`},
		{"NaN angle", func() (*viz.Chart, error) {
			return viz.SubspaceChart(viz.SubspaceOptions{}, mat.NewDense(1, 1, []float64{1}), []float64{math.NaN()})
		}, "value 0 is NaN"},
		{"grid without charts", func() (*viz.Chart, error) { return viz.Grid("layers", 2) }, "no charts"},
		{"grid nil chart", func() (*viz.Chart, error) { return viz.Grid("layers", 2, &viz.Chart{}, nil) }, "chart 2 is nil"},
		{"grid columns", func() (*viz.Chart, error) { return viz.Grid("layers", 0, &viz.Chart{}) }, "0 columns"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ch *viz.Chart
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panicked: %v", r)
					}
				}()
				ch, err = c.f()
			}()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if ch != nil {
				t.Errorf("a chart came back with the error")
			}
		})
	}
}

// Zeros on a log axis are drawn on a floor line the legend names; a chart
// of sizes or scale that cannot render says so through Render.
func TestEdgeCasesRender(t *testing.T) {
	zero := &peft.Spectrum{Name: "zero update", S: []float64{0, 0, 0}}
	c, err := viz.SpectrumChart(viz.SpectrumOptions{LogY: true, Energy: true, Thresholds: []float64{0.9}, Elbow: true, EffectiveRank: true}, zero)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Render("svg"); err != nil {
		t.Fatal(err)
	}
	svg, err := svgTexts(c.SVG())
	if err != nil || !strings.Contains(svg, "σ = 0") {
		t.Errorf("all-zero spectrum on a log axis: floor legend missing (err %v)", err)
	}
	one := &peft.Spectrum{Name: "rank one", S: []float64{5}}
	if _, err := viz.SpectrumChart(viz.SpectrumOptions{LogY: true, Normalize: true, Energy: true, Rank: 3, Elbow: true}, one); err != nil {
		t.Errorf("single value: %v", err)
	}
	tr := &peft.RankTrace{Modules: []string{"only"}, Steps: []int{5}, Ranks: [][]int{{0}}}
	rc, err := viz.RankHeatmap(viz.RankOptions{}, tr)
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.PNG()) == 0 {
		t.Error("1×1 rank trace of rank 0 does not render")
	}
	rc.Width = -5
	if _, err := rc.Render("png"); err == nil || !strings.Contains(err.Error(), "size -5×") {
		t.Errorf("negative width: %v", err)
	}
	if rc.PNG() != nil || rc.SVG() != "" {
		t.Error("unrenderable chart returned an image")
	}
	rc.Width, rc.Scale = 300, 100
	if _, err := rc.Render("png"); err == nil || !strings.Contains(err.Error(), "Scale") {
		t.Errorf("scale 100: %v", err)
	}
	// One layer over 12 checkpoints: more series than distinct colours.
	var over [][]float64
	var names []string
	for k := 1; k <= 12; k++ {
		over = append(over, []float64{float64(k), float64(k) / 2, float64(k) / 8})
		names = append(names, fmt.Sprintf("step %d", 100*k))
	}
	if c, err := viz.SpectrumValues(viz.SpectrumOptions{LogY: true, Energy: true}, names, over...); err != nil {
		t.Error(err)
	} else if svg, _ := svgTexts(c.SVG()); !strings.Contains(svg, "step 1200") {
		t.Error("12-series spectrum: legend lacks the last series")
	}
	// One point on log axes, all-equal eigenvalues: still drawn.
	single := &peft.History{Name: "one step", Loss: []float64{2.5}, EvalSteps: []int{1}, EvalLoss: []float64{2.5}}
	if c, err := viz.LossChart(viz.LossOptions{LogY: true, Smooth: 0.5}, single); err != nil {
		t.Error(err)
	} else if _, err := c.Render("png"); err != nil {
		t.Errorf("single-step loss on a log axis: %v", err)
	}
	flat := &peft.ESD{Name: "orthogonal", Lambda: []float64{2, 2, 2, 2, 2, 2}, N: 6, M: 6}
	if c, err := viz.ESDChart(viz.ESDOptions{}, flat); err != nil {
		t.Error(err)
	} else if _, err := c.Render("svg"); err != nil {
		t.Errorf("equal eigenvalues: %v", err)
	}
	// An ESD too short to fit says so in its legend instead of drawing a fit.
	e := &peft.ESD{Name: "tiny", Lambda: []float64{3, 2, 1}, N: 5, M: 3}
	ec, err := viz.ESDChart(viz.ESDOptions{}, e)
	if err != nil {
		t.Fatal(err)
	}
	if svg, _ := svgTexts(ec.SVG()); !strings.Contains(svg, "power law: not fitted") {
		t.Error("unfitted power law not reported in the legend")
	}
	// A 2-module and a 100-module trace both render at a readable size.
	for _, n := range []int{2, 100} {
		c, err := viz.RankHeatmap(viz.RankOptions{}, rankTrace(n))
		if err != nil {
			t.Fatal(err)
		}
		svg, err := svgTexts(c.SVG())
		if err != nil {
			t.Fatal(err)
		}
		labels := strings.Count(svg, "blocks.")
		if labels < 2 || labels > 80 {
			t.Errorf("%d modules: %d module labels drawn", n, labels)
		}
		if c.Height < 360 || c.Height > 1300 {
			t.Errorf("%d modules: height %d", n, c.Height)
		}
	}
	// Subspace similarity straight from peft, both sides.
	a8, a64 := subspaceMatrices()
	for _, side := range []peft.Side{peft.Left, peft.Right} {
		var a, b mat.Matrix = a8, a64
		if side == peft.Left {
			a, b = a8.T(), a64.T()
		}
		phi, err := peft.SubspaceSimilarity(context.Background(), a, b, side, 4, 8)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := viz.SimilarityHeatmap(viz.SubspaceOptions{}, phi); err != nil {
			t.Errorf("side %v: %v", side, err)
		}
	}
}

// recorder is a front-end that records what is displayed.
type recorder struct {
	mu    sync.Mutex
	calls []display
}

type display struct {
	id     string
	update bool
	v      any
}

func (r *recorder) Display(v any, id string, update bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, display{id, update, v})
}
func (r *recorder) ClearOutput(bool)         {}
func (r *recorder) Context() context.Context { return context.Background() }

// A live chart shows itself once and then replaces its image and its
// progress line in place, redrawing every Every steps.
func TestLiveUpdatesInPlace(t *testing.T) {
	rec := &recorder{}
	nb.SetFrontend(rec)
	defer nb.SetFrontend(nil)

	live := viz.NewLive("run", 100, 30)
	h := &peft.History{Name: "LoRA"}
	for s := 1; s <= 100; s++ {
		h.Steps = append(h.Steps, s)
		h.Loss = append(h.Loss, 3/float64(s))
		h.StepTime = append(h.StepTime, 0.01)
		if s%10 == 0 {
			live.Callback(s, h)
		}
	}
	var charts, lines []display
	for _, c := range rec.calls {
		switch c.id {
		case live.ID():
			charts = append(charts, c)
		case live.ID() + "-progress":
			lines = append(lines, c)
		default:
			t.Fatalf("display under unknown id %q", c.id)
		}
	}
	// Draws at steps 10, 40, 70, 100 (every 30 steps, and the last).
	if len(charts) != 4 || charts[0].update || !charts[1].update || !charts[3].update {
		t.Fatalf("chart displays %+v, want one display then 3 updates", summary(charts))
	}
	if len(lines) != 10 || lines[0].update || !lines[9].update {
		t.Fatalf("progress displays: %d, want 10 (first a display, then updates)", len(lines))
	}
	for i, c := range charts {
		if _, ok := c.v.(interface{ PNG() []byte }); !ok {
			t.Fatalf("chart display %d is %T, not a PNG()er", i, c.v)
		}
		if i > 0 && c.v == charts[i-1].v {
			t.Errorf("update %d reuses the chart already shown", i)
		}
	}
	last := lines[9].v.(interface{ Text() string }).Text()
	for _, w := range []string{"step 100/100", "loss 0.0300", "100 steps/s", "done"} {
		if !strings.Contains(last, w) {
			t.Errorf("last progress line %q lacks %q", last, w)
		}
	}
	mid := lines[4].v.(interface{ Text() string }).Text()
	if !strings.Contains(mid, "step 50/100") || !strings.Contains(mid, "ETA 500ms") {
		t.Errorf("progress at step 50: %q, want ETA 500ms (50 steps at 100 steps/s)", mid)
	}
	// A NaN loss does not stop the run: the error goes to the progress line.
	h.Loss[99] = math.NaN()
	live.Done(100, h)
	if live.Err() == nil || !strings.Contains(live.Progress(), "NaN") {
		t.Errorf("NaN loss: Err %v, progress %q", live.Err(), live.Progress())
	}
}

func summary(ds []display) []bool {
	var u []bool
	for _, d := range ds {
		u = append(u, d.update)
	}
	return u
}

// Live.Callback is a peft.TrainConfig.Callback, and a real training run
// drives it: the teacher task's student, fine-tuned for 40 steps.
func TestLiveDrivenByTrain(t *testing.T) {
	rec := &recorder{}
	nb.SetFrontend(rec)
	defer nb.SetFrontend(nil)

	task := peft.NewTeacherTask(8, 6, []float64{3, 1}, 64, 1)
	live := viz.NewLive("teacher", 40, 10)
	h, err := peft.Train(context.Background(), task.Model(), task, peft.TrainConfig{
		Steps: 40, BatchSize: 16, LR: 0.05, EvalEvery: 10, Every: 5, Callback: live.Callback, Name: "full FT",
	})
	if err != nil {
		t.Fatal(err)
	}
	if live.Err() != nil {
		t.Fatal(live.Err())
	}
	var updates int
	for _, c := range rec.calls {
		if c.id == live.ID() && c.update {
			updates++
		}
	}
	// Callbacks at 5, 10, …, 40; redraws at 5, 15, 25, 35 and 40.
	if updates != 4 {
		t.Errorf("%d chart updates, want 4", updates)
	}
	if !strings.Contains(live.Progress(), "step 40/40") || !strings.Contains(live.Progress(), "done") {
		t.Errorf("final progress %q", live.Progress())
	}
	if n := len(h.Loss); n != 40 || !(h.Loss[n-1] < h.Loss[0]) {
		t.Errorf("loss did not fall: %d steps, %v → %v", n, h.Loss[0], h.Loss[len(h.Loss)-1])
	}
}

// Rendering one chart from several goroutines is safe (run with -race).
func TestConcurrentRender(t *testing.T) {
	c, err := lossChart()
	if err != nil {
		t.Fatal(err)
	}
	g, err := viz.Grid("two", 2, c, c)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 && len(c.PNG()) == 0 || i%2 == 1 && g.SVG() == "" {
				t.Error("render failed")
			}
		}()
	}
	wg.Wait()
}

func TestChartText(t *testing.T) {
	c, err := lossChart()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Text(), `viz.Chart "LoRA rank vs. full fine-tuning", 720×400 px`; got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	// The progress line is shown under a live chart, not also in it.
	l, _ := liveChart()
	if strings.Contains(l.Text(), "step 200/200") {
		t.Errorf("live chart text %q repeats its progress line", l.Text())
	}
}
