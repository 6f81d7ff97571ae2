package viz

import (
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// LossOptions says how loss curves are drawn. The zero value draws the raw
// training loss and the evaluation loss of every run against the step.
type LossOptions struct {
	Title string
	// LogY draws the loss on a logarithmic axis (every value must be > 0).
	LogY bool
	// Tokens puts tokens seen (History.Tokens) on the x axis instead of steps.
	Tokens bool
	// Smooth is the factor β ∈ [0, 1) of an exponential moving average of
	// the training loss, bias-corrected: s_t = β·s_{t−1} + (1−β)·x_t,
	// drawn as s_t/(1−β^t). With β > 0 the raw curve is drawn faint under
	// the smoothed one. 0 draws the raw curve only.
	Smooth float64
	// HideTrain and HideEval leave out the training or the evaluation loss.
	HideTrain, HideEval bool
	// Width and Height are the display size in CSS pixels (0: 720×400, the
	// legend at the top right of the curves; for a legend of over 8 rows,
	// 960 wide with the legend beside the curves, and taller for over 20).
	Width, Height int
}

// LossChart draws the loss curves of one or several runs (LoRA r=4 vs.
// r=16 vs. full fine-tuning), each in its colour and labelled with the
// run's Name: training loss as a solid line, evaluation loss dashed with
// points. A run without Steps is drawn against 1, 2, …. Unnamed runs are
// "run 1", "run 2", … in the legend, a single unnamed run's curves are
// "train loss" and "eval loss".
//
// It returns an error naming the run and the step for no runs, a run with
// no loss, lengths that disagree (Steps, Tokens, Loss; EvalSteps,
// EvalLoss), a NaN or ±Inf loss, a loss ≤ 0 on a log axis, an evaluation
// step that is not a training step when x is in tokens, or Smooth outside
// [0, 1).
func LossChart(opt LossOptions, runs ...*peft.History) (*Chart, error) {
	p, err := lossPlot("LossChart", opt, runs)
	if err != nil {
		return nil, err
	}
	if len(p.key.rows) > maxInPlotRows {
		// A legend this long would hide the curves: a panel of its own,
		// the chart wider and, for one column, taller.
		lc := keyCell(p)
		return &Chart{Title: opt.Title, rows: [][]cell{{{p: p, weight: 1}, lc}}, Width: orDefault(opt.Width, maxDefaultWidth),
			Height: orDefault(opt.Height, min(max(defaultHeight, lc.key.oneColumnPx()+120), 720))}, nil
	}
	return &Chart{Title: opt.Title, rows: [][]cell{{{p: p, weight: 1}}},
		Width: orDefault(opt.Width, defaultWidth), Height: orDefault(opt.Height, defaultHeight)}, nil
}

// maxInPlotRows is the longest legend drawn inside a loss chart's data
// area, at its top right; a longer one has a panel of its own.
const maxInPlotRows = 8

func lossPlot(chart string, opt LossOptions, runs []*peft.History) (*panel, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("viz: %s: no runs given", chart)
	}
	if !(opt.Smooth >= 0 && opt.Smooth < 1) {
		return nil, fmt.Errorf("viz: %s: Smooth = %v, want β in [0, 1)", chart, opt.Smooth)
	}
	xlabel := "step"
	if opt.Tokens {
		xlabel = "tokens"
	}
	title := "loss"
	if len(runs) == 1 && runs[0] != nil && runs[0].Name != "" {
		title = "loss of " + runs[0].Name
	}
	p := newPlot(title, xlabel, "loss")
	p.X.Tick.Marker = linearTicks{integer: true}
	if opt.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	}
	drawn := 0
	colors := seriesColors(len(runs))
	for i, h := range runs {
		if h == nil {
			return nil, fmt.Errorf("viz: %s: run %d is nil", chart, i+1)
		}
		name := seriesName(h.Name, i)       // for errors
		entry := func(kind string) string { // in the legend
			if l := legendName(h.Name, "run", i, len(runs)); l != "" {
				return l + " " + kind
			}
			return kind + " loss"
		}
		if len(h.Loss) == 0 && len(h.EvalLoss) == 0 {
			return nil, fmt.Errorf("viz: %s: run %q has no loss values", chart, name)
		}
		steps := h.Steps
		if len(steps) == 0 {
			steps = make([]int, len(h.Loss))
			for k := range steps {
				steps[k] = k + 1
			}
		}
		if len(steps) != len(h.Loss) {
			return nil, fmt.Errorf("viz: %s: run %q has %d steps for %d loss values", chart, name, len(steps), len(h.Loss))
		}
		if opt.Tokens && len(h.Tokens) != len(h.Loss) {
			return nil, fmt.Errorf("viz: %s: run %q has %d token counts for %d loss values (x in tokens)", chart, name, len(h.Tokens), len(h.Loss))
		}
		if len(h.EvalSteps) != len(h.EvalLoss) {
			return nil, fmt.Errorf("viz: %s: run %q has %d eval steps for %d eval losses", chart, name, len(h.EvalSteps), len(h.EvalLoss))
		}
		check := func(what string, st []int, ys []float64) error {
			for k, v := range ys {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("viz: %s: run %q: %s loss at step %d is %v", chart, name, what, st[k], v)
				}
				if opt.LogY && v <= 0 {
					return fmt.Errorf("viz: %s: run %q: %s loss at step %d is %g, which a log axis cannot show", chart, name, what, st[k], v)
				}
			}
			return nil
		}
		if err := check("training", steps, h.Loss); err != nil {
			return nil, err
		}
		if err := check("eval", h.EvalSteps, h.EvalLoss); err != nil {
			return nil, err
		}
		xOf := func(k int) float64 { // x of training record k
			if opt.Tokens {
				return float64(h.Tokens[k])
			}
			return float64(steps[k])
		}
		c := colors[i]
		if !opt.HideTrain && len(h.Loss) > 0 {
			raw := make(plotter.XYs, len(h.Loss))
			for k, v := range h.Loss {
				raw[k] = plotter.XY{X: xOf(k), Y: v}
			}
			if opt.Smooth > 0 {
				if err := addLine(p, raw, faded(c, 0.3), 0.8, nil, ""); err != nil {
					return nil, err
				}
				sm := make(plotter.XYs, len(raw))
				copy(sm, raw)
				for k, v := range ema(h.Loss, opt.Smooth) {
					sm[k].Y = v
				}
				if err := addLine(p, sm, c, 1.8, nil, fmt.Sprintf("%s (EMA %.2g)", entry("train"), opt.Smooth)); err != nil {
					return nil, err
				}
			} else if err := addLine(p, raw, c, 1.5, nil, entry("train")); err != nil {
				return nil, err
			}
			drawn++
		}
		if !opt.HideEval && len(h.EvalLoss) > 0 {
			ev := make(plotter.XYs, len(h.EvalLoss))
			for k, v := range h.EvalLoss {
				x := float64(h.EvalSteps[k])
				if opt.Tokens {
					j := sort.SearchInts(steps, h.EvalSteps[k])
					if j == len(steps) || steps[j] != h.EvalSteps[k] {
						return nil, fmt.Errorf("viz: %s: run %q: eval step %d is not a recorded training step, so its token count is unknown", chart, name, h.EvalSteps[k])
					}
					x = xOf(j)
				}
				ev[k] = plotter.XY{X: x, Y: v}
			}
			if err := addLine(p, ev, c, 1.3, dashes[1], entry("eval")); err != nil {
				return nil, err
			}
			if err := addPoints(p, ev, c, draw.CircleGlyph{}, 2.2, ""); err != nil {
				return nil, err
			}
			drawn++
		}
	}
	if drawn == 0 {
		return nil, fmt.Errorf("viz: %s: nothing to draw (training and eval hidden or empty)", chart)
	}
	if opt.LogY {
		widenLog(&p.Y)
	}
	return p, nil
}

// ema returns the bias-corrected exponential moving average of x with
// factor beta.
func ema(x []float64, beta float64) []float64 {
	out := make([]float64, len(x))
	var s, w float64 // w = 1 − β^t
	for t, v := range x {
		s = beta*s + (1-beta)*v
		w = beta*w + (1 - beta)
		out[t] = s / w
	}
	return out
}
