package viz_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/gopeft/gopeft/nb"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/viz"
	"gonum.org/v1/gonum/mat"
)

// A series without a name is never "series N" in a legend: a single one
// has no entry (or, for a loss, "train loss" and "eval loss"), several are
// named by what they are and their position ("spectrum 2", "run 2",
// "angles 2").
func TestUnnamedSeriesLegends(t *testing.T) {
	sp := func(s ...float64) *peft.Spectrum { return &peft.Spectrum{S: s} }
	hist := func() *peft.History {
		return &peft.History{Loss: []float64{3, 2.5, 2.2, 2.1}, EvalSteps: []int{2, 4}, EvalLoss: []float64{2.6, 2.2}}
	}
	w := mat.NewDense(12, 6, nil)
	for i := 0; i < 12; i++ {
		for j := 0; j < 6; j++ {
			w.Set(i, j, float64((i*7+j*5)%11)-5)
		}
	}
	cases := []struct {
		name  string
		build func() (*viz.Chart, error)
		want  []string // in the SVG's text
	}{
		{"one spectrum, rank and effective rank", func() (*viz.Chart, error) {
			return viz.SpectrumChart(viz.SpectrumOptions{Rank: 2, EffectiveRank: true, Energy: true}, sp(3, 2, 1))
		}, []string{"rank r = 2", "eff. rank = "}},
		{"two spectra", func() (*viz.Chart, error) {
			return viz.SpectrumValues(viz.SpectrumOptions{EffectiveRank: true}, nil, []float64{3, 2, 1}, []float64{2, 1, 0.5})
		}, []string{"spectrum 1", "spectrum 2", "eff. rank spectrum 2 = "}},
		{"ESD", func() (*viz.Chart, error) { return viz.ESDMatrix(viz.ESDOptions{}, "", w) }, []string{"6 eigenvalues (N=12, M=6)"}},
		{"one run", func() (*viz.Chart, error) { return viz.LossChart(viz.LossOptions{}, hist()) }, []string{"train loss", "eval loss"}},
		{"one run, smoothed", func() (*viz.Chart, error) {
			return viz.LossValues(viz.LossOptions{Smooth: 0.5}, nil, []float64{3, 2.5, 2.2, 2.1})
		}, []string{"train loss (EMA 0.5)"}},
		{"two runs", func() (*viz.Chart, error) { return viz.LossChart(viz.LossOptions{}, hist(), hist()) }, []string{"run 1 train", "run 2 eval"}},
		{"one angle series", func() (*viz.Chart, error) {
			return viz.AnglesChart(viz.SubspaceOptions{}, nil, []float64{0.1, 0.5})
		}, []string{"principal angles"}},
		{"two angle series", func() (*viz.Chart, error) {
			return viz.AnglesChart(viz.SubspaceOptions{}, nil, []float64{0.1, 0.5}, []float64{0.2, 0.3})
		}, []string{"angles 1", "angles 2"}},
		{"subspace", func() (*viz.Chart, error) {
			return viz.SubspaceChart(viz.SubspaceOptions{}, mat.NewDense(2, 2, []float64{1, 1, 0.5, 0.8}), []float64{0.1, 0.7})
		}, []string{"principal angles"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := c.build()
			if err != nil {
				t.Fatal(err)
			}
			texts, err := svgTexts(ch.SVG())
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(texts, "series") {
				t.Errorf("text says \"series\":\n%s", texts)
			}
			for _, w := range c.want {
				if !strings.Contains(texts, w) {
					t.Errorf("text lacks %q:\n%s", w, texts)
				}
			}
		})
	}
}

// jupyter is a front-end that keeps outputs as Jupyter does: each display
// adds an output, remembered under its display id; an update replaces the
// content of every output shown under that id.
type jupyter struct {
	mu      sync.Mutex
	outputs []*output
}

type output struct {
	id string
	v  any
}

func (j *jupyter) Display(v any, id string, update bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if update {
		for _, o := range j.outputs {
			if o.id == id {
				o.v = v
			}
		}
		return
	}
	j.outputs = append(j.outputs, &output{id, v})
}
func (j *jupyter) ClearOutput(bool)         {}
func (j *jupyter) Context() context.Context { return context.Background() }

// shows returns how many outputs show s, in their text or, for a chart, in
// its image (the SVG's text).
func (j *jupyter) shows(t *testing.T, s string) int {
	n := 0
	for _, o := range j.outputs {
		var text string
		if x, ok := o.v.(interface{ Text() string }); ok {
			text = x.Text()
		}
		if x, ok := o.v.(interface{ SVG() string }); ok {
			svg, err := svgTexts(x.SVG())
			if err != nil {
				t.Fatal(err)
			}
			text += "\n" + svg
		}
		if strings.Contains(text, s) {
			n++
		}
	}
	return n
}

// The progress line of a live chart is shown once: not also in the chart's
// image or its text, and not in a second output when the chart could not
// be drawn at the first call (a history with no loss yet). The chart's
// output stays above the line.
func TestLiveProgressShownOnce(t *testing.T) {
	for _, emptyFirst := range []bool{false, true} {
		fe := &jupyter{}
		nb.SetFrontend(fe)
		live := viz.NewLive("run", 40, 10)
		h := &peft.History{Name: "LoRA"}
		if emptyFirst {
			live.Callback(0, h) // nothing to draw yet
		}
		for s := 1; s <= 40; s++ {
			h.Steps = append(h.Steps, s)
			h.Loss = append(h.Loss, 3/float64(s))
			h.StepTime = append(h.StepTime, 0.01)
			if s%5 == 0 {
				live.Callback(s, h)
			}
		}
		nb.SetFrontend(nil)
		if n := fe.shows(t, "step 40/40"); n != 1 {
			t.Errorf("empty first call %v: %d outputs show the progress line, want 1", emptyFirst, n)
		}
		if len(fe.outputs) != 2 || fe.outputs[0].id != live.ID() || fe.outputs[1].id != live.ID()+"-progress" {
			t.Errorf("empty first call %v: %d outputs, want the chart's then the progress line's", emptyFirst, len(fe.outputs))
			continue
		}
		if _, ok := fe.outputs[0].v.(*viz.Chart); !ok {
			t.Errorf("empty first call %v: the chart's output holds %T", emptyFirst, fe.outputs[0].v)
		}
		if got := live.Chart().Footer; got != "" {
			t.Errorf("chart footer %q, want none", got)
		}
	}
}
