package viz

import (
	"fmt"
	"strconv"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// RankOptions says how rank allocation is drawn.
type RankOptions struct {
	Title string
	// HideBars leaves out the bar chart of the final rank per module beside
	// the heat map.
	HideBars bool
	// Width and Height in CSS pixels (0: 960 wide and 150 + 13 px per
	// module, between 360 and 1300, tall). Module names are thinned to one
	// label every 2, 5, 10 … rows when the rows are too close to label all.
	Width, Height int
}

// RankHeatmap draws a rank trace (peft.RankTrace, as AdaLoRA records it):
// a heat map of the rank of each module (rows, the first at the top) at each
// recorded step (columns), with its colour bar, and beside it the final rank
// per module as horizontal bars on the same rows. A budget, when recorded,
// is given in the title.
//
// It returns an error naming the module or the step for a nil or empty
// trace, rows and names of different counts, a row whose length is not the
// number of steps, steps not increasing, or a negative rank.
func RankHeatmap(opt RankOptions, tr *peft.RankTrace) (*Chart, error) {
	z, maxRank, err := checkTrace("RankHeatmap", tr)
	if err != nil {
		return nil, err
	}
	n, t := len(tr.Modules), len(tr.Steps)
	w, h := rankSize(opt, n)
	fit := max((h-150)/13, 2) // module labels that fit

	title := "rank per module"
	if len(tr.Budget) > 0 {
		title += fmt.Sprintf(" (budget %d → %d)", tr.Budget[0], tr.Budget[len(tr.Budget)-1])
	}
	hp := newPlot(title, "step", "")
	pal := viridis(maxRank + 1)
	hp.Add(&cellGrid{z: z, min: 0, max: float64(maxRank), pal: pal})
	steps, vals := make([]string, t), make([]float64, t)
	for j, s := range tr.Steps {
		steps[j], vals[j] = strconv.Itoa(s), float64(s)
	}
	hp.X.Tick.Marker = indexTicks{labels: steps, maxTicks: 8, values: vals}
	hp.Y.Tick.Marker = indexTicks{labels: tr.Modules, maxTicks: fit, reversed: true}
	hp.Y.Tick.Label.Font.Size = 9
	hp.X.Min, hp.X.Max = -0.5, float64(t)-0.5
	hp.Y.Min, hp.Y.Max = -0.5, float64(n)-0.5
	hp.X.Padding, hp.Y.Padding = 0, 0

	cb := colorBar("rank", 0, float64(maxRank), pal, true)
	row := []cell{{p: hp, weight: 0.91}}
	if !opt.HideBars {
		bp, err := finalRankPlot(tr, z, false, fit)
		if err != nil {
			return nil, err
		}
		row = []cell{{p: hp, weight: 0.62}, {p: bp, weight: 0.29}}
	}
	row = append(row, cell{p: cb, weight: 0.09})
	return &Chart{Title: opt.Title, Width: w, Height: h, rows: [][]cell{row}}, nil
}

// FinalRanks draws the rank of each module at the trace's last step as
// horizontal bars, the first module at the top, each bar labelled with its
// rank. It returns an error for the same bad traces as RankHeatmap.
func FinalRanks(opt RankOptions, tr *peft.RankTrace) (*Chart, error) {
	z, _, err := checkTrace("FinalRanks", tr)
	if err != nil {
		return nil, err
	}
	w, h := rankSize(opt, len(tr.Modules))
	if opt.Width == 0 {
		w = 640
	}
	bp, err := finalRankPlot(tr, z, true, max((h-150)/13, 2))
	if err != nil {
		return nil, err
	}
	return &Chart{Title: opt.Title, Width: w, Height: h, rows: [][]cell{{{p: bp, weight: 1}}}}, nil
}

func rankSize(opt RankOptions, modules int) (w, h int) {
	return orDefault(opt.Width, 960), orDefault(opt.Height, min(max(150+13*modules, 360), 1300))
}

// finalRankPlot draws the last column of z as horizontal bars on rows
// n−1…0; names labels the rows with the module names.
func finalRankPlot(tr *peft.RankTrace, z [][]float64, names bool, fit int) (*panel, error) {
	n := len(z)
	vals := make(plotter.Values, n)
	for i := range z {
		vals[n-1-i] = z[i][len(z[i])-1] // bar k sits at y = k
	}
	p := newPlot(fmt.Sprintf("final rank (step %d)", tr.Steps[len(tr.Steps)-1]), "rank", "")
	bw := vg.Points(max(1, min(14, 600/float64(n))))
	bc, err := plotter.NewBarChart(vals, bw)
	if err != nil {
		return nil, fmt.Errorf("viz: final ranks: %w", err)
	}
	bc.Horizontal = true
	bc.Color = seriesColor(0)
	bc.LineStyle.Width = 0
	p.Add(bc)
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.5
	p.Y.Padding = 0
	p.X.Min = 0
	p.X.Tick.Marker = linearTicks{integer: true}
	if names {
		p.Y.Tick.Marker = indexTicks{labels: tr.Modules, maxTicks: fit, reversed: true}
		p.Y.Tick.Label.Font.Size = 9
	} else {
		p.Y.Tick.Marker = plot.ConstantTicks(nil)
	}
	if n <= 40 {
		xy := make(plotter.XYs, n)
		labels := make([]string, n)
		for k, v := range vals {
			xy[k] = plotter.XY{X: v, Y: float64(k)}
			labels[k] = " " + strconv.Itoa(int(v))
		}
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xy, Labels: labels})
		if err != nil {
			return nil, fmt.Errorf("viz: final rank labels: %w", err)
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = 8
			l.TextStyle[i].Font.Typeface, l.TextStyle[i].Font.Variant = sans.Typeface, sans.Variant
			l.TextStyle[i].YAlign = -0.5
		}
		p.Add(l)
	}
	return p, nil
}

// checkTrace validates tr and returns its ranks as floats and the largest.
func checkTrace(chart string, tr *peft.RankTrace) ([][]float64, int, error) {
	if tr == nil {
		return nil, 0, fmt.Errorf("viz: %s: nil rank trace", chart)
	}
	if len(tr.Modules) == 0 {
		return nil, 0, fmt.Errorf("viz: %s: rank trace has no modules", chart)
	}
	if len(tr.Steps) == 0 {
		return nil, 0, fmt.Errorf("viz: %s: rank trace has no steps", chart)
	}
	if len(tr.Ranks) != len(tr.Modules) {
		return nil, 0, fmt.Errorf("viz: %s: rank trace has %d rows of ranks for %d modules", chart, len(tr.Ranks), len(tr.Modules))
	}
	if len(tr.Budget) != 0 && len(tr.Budget) != len(tr.Steps) {
		return nil, 0, fmt.Errorf("viz: %s: rank trace has %d budgets for %d steps", chart, len(tr.Budget), len(tr.Steps))
	}
	for j := 1; j < len(tr.Steps); j++ {
		if tr.Steps[j] <= tr.Steps[j-1] {
			return nil, 0, fmt.Errorf("viz: %s: rank trace steps not increasing: step %d after %d (column %d)", chart, tr.Steps[j], tr.Steps[j-1], j)
		}
	}
	z := make([][]float64, len(tr.Ranks))
	maxRank := 1
	for i, row := range tr.Ranks {
		if len(row) != len(tr.Steps) {
			return nil, 0, fmt.Errorf("viz: %s: module %q has %d ranks for %d steps", chart, tr.Modules[i], len(row), len(tr.Steps))
		}
		z[i] = make([]float64, len(row))
		for j, r := range row {
			if r < 0 {
				return nil, 0, fmt.Errorf("viz: %s: module %q has negative rank %d at step %d", chart, tr.Modules[i], r, tr.Steps[j])
			}
			z[i][j] = float64(r)
			maxRank = max(maxRank, r)
		}
	}
	return z, maxRank, nil
}
