package viz

import (
	"fmt"
	"image/color"
	"math"

	"github.com/gopeft/gopeft/nb"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// SpectrumOptions says what a singular-value spectrum chart shows. The zero
// value draws the values on a linear axis with nothing marked.
type SpectrumOptions struct {
	Title string
	// LogY draws σ on a logarithmic axis. Zero singular values, which a log
	// axis cannot show, are drawn as crosses on a dashed floor line a decade
	// under the smallest positive value, and the legend says so.
	LogY bool
	// Normalize divides each series by its largest value σ₁ (a zero series
	// stays zero).
	Normalize bool
	// Energy adds the panel of the cumulative energy Σ_{i≤k}σ_i²/Σσ² beside
	// the spectrum.
	Energy bool
	// Rank marks a chosen rank r with a vertical line (0 for none; a
	// negative rank is an error).
	Rank int
	// Thresholds marks, for each series, the smallest rank that keeps each
	// energy fraction (e.g. 0.9, 0.95, 0.99); each must be in (0, 1].
	Thresholds []float64
	// Elbow rings each series' elbow (peft.Spectrum.Elbow: the point farthest
	// from the chord of the normalized curve).
	Elbow bool
	// EffectiveRank marks each series' entropy effective rank with a dotted
	// vertical line.
	EffectiveRank bool
	// Width and Height are the display size in CSS pixels (0: 1080×420 with
	// the energy panel, 800×420 without). The legend has a panel of its own
	// at the right, so that it never hides a curve.
	Width, Height int
}

// SpectrumChart draws the singular values of one or several spectra
// (weights vs. updates vs. gradients, or one layer over training), each
// labelled with its Name, against their index k = 1…n. Every number it
// marks comes from peft.Spectrum (Energy, RankForEnergy, Elbow,
// EffectiveRank).
//
// It returns an error, naming the series, for no series, a nil or empty
// series, a NaN, ±Inf or negative value, a negative rank or a threshold
// outside (0, 1].
func SpectrumChart(opt SpectrumOptions, spectra ...*peft.Spectrum) (*Chart, error) {
	const name = "SpectrumChart"
	if len(spectra) == 0 {
		return nil, fmt.Errorf("viz: %s: no spectra given", name)
	}
	if opt.Rank < 0 {
		return nil, fmt.Errorf("viz: %s: rank %d is negative", name, opt.Rank)
	}
	for _, f := range opt.Thresholds {
		if !(f > 0 && f <= 1) {
			return nil, fmt.Errorf("viz: %s: energy threshold %v is outside (0, 1]", name, f)
		}
	}
	ys := make([][]float64, len(spectra))
	for i, s := range spectra {
		if s == nil {
			return nil, fmt.Errorf("viz: %s: series %d is nil", name, i+1)
		}
		label := seriesName(s.Name, i)
		if len(s.S) == 0 {
			return nil, fmt.Errorf("viz: %s: series %q is empty", name, label)
		}
		if err := checkFinite(name, label, s.S); err != nil {
			return nil, err
		}
		for k, v := range s.S {
			if v < 0 {
				return nil, fmt.Errorf("viz: %s: series %q: value %d is negative (%g); singular values are ≥ 0", name, label, k, v)
			}
			if k > 0 && v > s.S[k-1] {
				return nil, fmt.Errorf("viz: %s: series %q is not sorted descending at %d (%g after %g); use peft.SpectrumOf", name, label, k, v, s.S[k-1])
			}
		}
		y := append([]float64(nil), s.S...)
		if opt.Normalize && y[0] > 0 {
			for k := range y {
				y[k] /= s.S[0]
			}
		}
		ys[i] = y
	}

	ylabel := "singular value σ"
	if opt.Normalize {
		ylabel = "σ / σ₁"
	}
	title := "singular values"
	if len(spectra) == 1 && spectra[0].Name != "" {
		title = "singular values of " + spectra[0].Name
	}
	sp := newPlot(title, "index k", ylabel)

	// On a log axis, zeros go to a floor a decade below the smallest
	// positive value.
	floor := 0.0
	zeros := false
	if opt.LogY {
		minPos := math.Inf(1)
		for _, y := range ys {
			for _, v := range y {
				if v > 0 {
					minPos = min(minPos, v)
				}
				zeros = zeros || v == 0
			}
		}
		if math.IsInf(minPos, 1) {
			minPos = 1
		}
		floor = minPos / 10
		sp.Y.Scale = plot.LogScale{}
		sp.Y.Tick.Marker = logTicks{}
	}
	lift := func(v float64) float64 {
		if opt.LogY && v <= 0 {
			return floor
		}
		return v
	}
	yLo, yHi := math.Inf(1), math.Inf(-1)
	for _, y := range ys {
		for _, v := range y {
			yLo, yHi = min(yLo, lift(v)), max(yHi, lift(v))
		}
	}
	if !opt.LogY {
		yLo = min(yLo, 0)
	}
	if yHi == yLo { // a flat spectrum: give the axis a range
		if opt.LogY {
			yLo, yHi = yLo/2, yHi*2
		} else {
			yHi = yLo + 1
		}
		sp.Y.Min, sp.Y.Max = yLo, yHi
	}

	var ep *plot.Plot
	if opt.Energy {
		ep = newPlot("cumulative energy", "rank k", "share of Σσ² in the top k")
		ep.Y.Min, ep.Y.Max = 0, 1.02
		ep.Legend.Top = false
		ep.Legend.YOffs = vg.Points(4)
		for _, f := range opt.Thresholds {
			if err := addLine(ep, plotter.XYs{{X: 1, Y: f}, {X: float64(maxLen(ys)), Y: f}}, color.Gray{Y: 0xa0}, 0.8, dashes[2], ""); err != nil {
				return nil, err
			}
		}
	}

	colors := seriesColors(len(spectra))
	for i, s := range spectra {
		c := colors[i]
		label := seriesName(s.Name, i)
		y := ys[i]
		xy := make(plotter.XYs, len(y))
		var zxy plotter.XYs
		for k, v := range y {
			xy[k] = plotter.XY{X: float64(k + 1), Y: lift(v)}
			if opt.LogY && v == 0 {
				zxy = append(zxy, xy[k])
			}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("viz: %s: series %q: %w", name, label, err)
		}
		l.Color, l.Width = c, vg.Points(1.6)
		sp.Add(l)
		sp.Legend.Add(label, l)
		if len(y) <= 64 {
			if err := addPoints(sp, xy, c, draw.CircleGlyph{}, 1.8, ""); err != nil {
				return nil, err
			}
		}
		if len(zxy) > 0 {
			if err := addPoints(sp, zxy, c, draw.CrossGlyph{}, 3.5, ""); err != nil {
				return nil, err
			}
		}

		if opt.Elbow {
			if e := s.Elbow(); e > 0 {
				pt := plotter.XYs{{X: float64(e + 1), Y: lift(y[e])}}
				if err := addPoints(sp, pt, c, draw.RingGlyph{}, 6, ""); err != nil {
					return nil, err
				}
				if err := addLabel(sp, pt, fmt.Sprintf(" elbow r=%d", e), c); err != nil {
					return nil, err
				}
			}
		}
		if opt.EffectiveRank {
			er := s.EffectiveRank()
			if er > 0 {
				if err := addLine(sp, plotter.XYs{{X: er, Y: yLo}, {X: er, Y: yHi}}, c, 1, dashes[2], fmt.Sprintf("eff. rank %s = %.1f", label, er)); err != nil {
					return nil, err
				}
			}
		}
		var e []float64
		if len(opt.Thresholds) > 0 || ep != nil {
			e = s.Energy()
		}
		for _, f := range opt.Thresholds {
			k := s.RankForEnergy(f)
			if k == 0 {
				continue // zero matrix: no rank keeps a share of nothing
			}
			pt := plotter.XYs{{X: float64(k), Y: lift(y[k-1])}}
			if err := addPoints(sp, pt, c, draw.TriangleGlyph{}, 4, ""); err != nil {
				return nil, err
			}
			if err := addLabel(sp, pt, fmt.Sprintf(" %g%%", 100*f), c); err != nil {
				return nil, err
			}
			if ep != nil {
				ept := plotter.XYs{{X: float64(k), Y: e[k-1]}}
				if err := addPoints(ep, ept, c, draw.TriangleGlyph{}, 4, ""); err != nil {
					return nil, err
				}
				if err := addLabel(ep, ept, fmt.Sprintf(" k=%d", k), c); err != nil {
					return nil, err
				}
			}
		}
		if ep != nil {
			exy := make(plotter.XYs, len(e))
			for k, v := range e {
				exy[k] = plotter.XY{X: float64(k + 1), Y: v}
			}
			if err := addLine(ep, exy, c, 1.6, nil, label); err != nil {
				return nil, err
			}
		}
	}
	if opt.Rank > 0 {
		r := float64(opt.Rank)
		if err := addLine(sp, plotter.XYs{{X: r, Y: yLo}, {X: r, Y: yHi}}, color.Black, 1, dashes[1], fmt.Sprintf("rank r = %d", opt.Rank)); err != nil {
			return nil, err
		}
		if ep != nil {
			if err := addLine(ep, plotter.XYs{{X: r, Y: 0}, {X: r, Y: 1}}, color.Black, 1, dashes[1], fmt.Sprintf("rank r = %d", opt.Rank)); err != nil {
				return nil, err
			}
		}
	}
	if zeros {
		n := float64(maxLen(ys))
		if err := addLine(sp, plotter.XYs{{X: 1, Y: floor}, {X: n, Y: floor}}, color.Gray{Y: 0x80}, 0.8, dashes[1], "σ = 0 (× on this floor)"); err != nil {
			return nil, err
		}
	}
	if opt.Elbow {
		sp.Legend.Add("○ elbow, ▲ energy share")
	} else if len(opt.Thresholds) > 0 {
		sp.Legend.Add("▲ energy share")
	}

	ch := &Chart{Title: opt.Title, Width: opt.Width, Height: opt.Height}
	if len(spectra) == 1 && opt.Rank == 0 && !opt.EffectiveRank && !zeros {
		// One series named in the title, markers labelled where they are:
		// no legend needed (small multiples stay uncluttered).
		sp.Legend = plot.NewLegend()
		ch.rows = [][]cell{{{p: sp, weight: 1}}}
		if ep != nil {
			ep.Legend = plot.NewLegend()
			ch.rows = [][]cell{{{p: sp, weight: 0.55}, {p: ep, weight: 0.45}}}
		}
		ch.Width, ch.Height = orDefault(ch.Width, defaultWidth+240*b2i(ep != nil)), orDefault(ch.Height, 420)
		return ch, nil
	}
	lp := legendPanel(sp)
	if ep != nil {
		ep.Legend = plot.NewLegend() // the legend panel names the series once
		ch.rows = [][]cell{{{p: sp, weight: 0.46}, {p: ep, weight: 0.34}, {p: lp, weight: 0.20}}}
		ch.Width, ch.Height = orDefault(ch.Width, 1080), orDefault(ch.Height, 420)
	} else {
		ch.rows = [][]cell{{{p: sp, weight: 0.75}, {p: lp, weight: 0.25}}}
		ch.Width, ch.Height = orDefault(ch.Width, 800), orDefault(ch.Height, 420)
	}
	return ch, nil
}

// legendPanel moves p's legend to a plot of its own, with no axes, drawn
// beside p so that the legend never hides data.
func legendPanel(p *plot.Plot) *plot.Plot {
	lp := newPlot("", "", "")
	lp.HideAxes()
	lp.Legend = p.Legend
	lp.Legend.Top, lp.Legend.Left = true, true
	lp.Legend.XOffs = vg.Points(4)
	lp.Legend.YOffs = -vg.Points(24)
	p.Legend = plot.NewLegend()
	return lp
}

// ESDOptions says what an empirical-spectral-density chart shows. The zero
// value draws a log-log histogram of 40 bins with the power-law fit and the
// Marchenko–Pastur bulk.
type ESDOptions struct {
	Title string
	Bins  int // number of histogram bins (0: 40)
	// Linear uses linear axes and bins instead of log-log.
	Linear bool
	// HideFit and HideMP leave out the power-law fit and the
	// Marchenko–Pastur bulk.
	HideFit, HideMP bool
	Width, Height   int // CSS pixels (0: 960×420, the legend at the right)
}

// ESDChart draws the histogram of the eigenvalues of WᵀW/N (peft.ESD) with
// the power law fitted to its tail (peft.FitPowerLaw: exponent α with its
// standard error and xmin, shown in the legend and the title) and the
// Marchenko–Pastur density of a random matrix of the same shape whose bulk
// matches W's (peft.ESD.MarchenkoPastur), with its upper edge λ+. On log axes, zero eigenvalues cannot be
// drawn: the legend counts them. When the tail is too short to fit, the
// legend says so instead of drawing a fit.
func ESDChart(opt ESDOptions, e *peft.ESD) (*Chart, error) {
	const name = "ESDChart"
	if e == nil || len(e.Lambda) == 0 {
		return nil, fmt.Errorf("viz: %s: no eigenvalues", name)
	}
	label := seriesName(e.Name, 0)
	if err := checkFinite(name, label, e.Lambda); err != nil {
		return nil, err
	}
	for i, v := range e.Lambda {
		if v < 0 {
			return nil, fmt.Errorf("viz: %s: series %q: eigenvalue %d is negative (%g)", name, label, i, v)
		}
	}
	bins := opt.Bins
	if bins == 0 {
		bins = 40
	}
	if bins < 0 {
		return nil, fmt.Errorf("viz: %s: %d bins, want ≥ 1", name, bins)
	}
	logAxes := !opt.Linear
	h, err := e.Histogram(bins, logAxes)
	if err != nil {
		return nil, fmt.Errorf("viz: %s: series %q: %w", name, label, err)
	}
	minD := math.Inf(1)
	for _, d := range h.Density {
		if d > 0 {
			minD = min(minD, d)
		}
	}
	floor := 0.0
	if logAxes {
		floor = minD / 3
	}
	title := "ESD"
	if e.Name != "" {
		title = "ESD of " + e.Name
	}
	p := newPlot(title, "eigenvalue λ of WᵀW/N", "density")
	if logAxes {
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = logTicks{}, logTicks{}
	}
	var rings []plotter.XYer
	for i, d := range h.Density {
		if d <= floor {
			continue
		}
		a, b := h.Edges[i], h.Edges[i+1]
		rings = append(rings, plotter.XYs{{X: a, Y: floor}, {X: b, Y: floor}, {X: b, Y: d}, {X: a, Y: d}})
	}
	if len(rings) > 0 {
		poly, err := plotter.NewPolygon(rings...)
		if err != nil {
			return nil, fmt.Errorf("viz: %s: histogram: %w", name, err)
		}
		poly.Color = faded(seriesColor(0), 0.45)
		poly.LineStyle.Color = seriesColor(0)
		poly.LineStyle.Width = vg.Points(0.5)
		p.Add(poly)
		p.Legend.Add(fmt.Sprintf("%s: %d eigenvalues (N=%d, M=%d)", label, len(e.Lambda), e.N, e.M), poly)
	}
	if h.Excluded > 0 {
		p.Legend.Add(fmt.Sprintf("%d eigenvalue(s) = 0 not shown on log axes", h.Excluded))
	}
	lmax := e.Lambda[0]
	if !opt.HideMP {
		mp, err := e.MarchenkoPastur()
		if err == nil {
			lo, hi := mp.Edges()
			var xy plotter.XYs
			const n = 200
			for i := 1; i < n; i++ {
				u := math.Pi * float64(i) / n
				x := lo + (hi-lo)*(1-math.Cos(u))/2
				y := mp.Density(x)
				if (logAxes && (x <= 0 || y <= floor)) || y <= 0 {
					continue
				}
				xy = append(xy, plotter.XY{X: x, Y: y})
			}
			if len(xy) > 1 {
				if err := addLine(p, xy, seriesColor(1), 1.8, nil, fmt.Sprintf("Marchenko–Pastur bulk (Q=%.3g, σ²=%.3g)", mp.Q, mp.Variance)); err != nil {
					return nil, err
				}
				top := maxDensity(h.Density, xy)
				if err := addLine(p, plotter.XYs{{X: hi, Y: max(floor, minD)}, {X: hi, Y: top}}, seriesColor(1), 1, dashes[1], fmt.Sprintf("λ+ = %.3g", hi)); err != nil {
					return nil, err
				}
			}
		}
	}
	if !opt.HideFit {
		pl, err := e.FitPowerLaw(nb.Context())
		if err != nil {
			p.Legend.Add("power law: not fitted (" + shortErr(err) + ")")
		} else {
			scale := float64(pl.NTail) / float64(len(e.Lambda))
			var xy plotter.XYs
			const n = 60
			for i := 0; i <= n; i++ {
				x := pl.XMin * math.Pow(lmax/pl.XMin, float64(i)/n)
				y := scale * pl.Density(x)
				if logAxes && y <= floor {
					continue
				}
				xy = append(xy, plotter.XY{X: x, Y: y})
			}
			if len(xy) > 1 {
				if err := addLine(p, xy, seriesColor(2), 2, dashes[1], fmt.Sprintf("power law α = %.2f ± %.2f (λ ≥ %.3g, %d eig.)", pl.Alpha, pl.Sigma, pl.XMin, pl.NTail)); err != nil {
					return nil, err
				}
			}
			p.Title.Text = fmt.Sprintf("%s: α = %.2f", title, pl.Alpha)
		}
	}
	if logAxes {
		widenLog(&p.X)
		widenLog(&p.Y)
	}
	lp := legendPanel(p)
	return &Chart{Title: opt.Title, rows: [][]cell{{{p: p, weight: 0.68}, {p: lp, weight: 0.32}}},
		Width: orDefault(opt.Width, 960), Height: orDefault(opt.Height, 420)}, nil
}

func maxDensity(d []float64, xy plotter.XYs) float64 {
	m := 0.0
	for _, v := range d {
		m = max(m, v)
	}
	for _, p := range xy {
		m = max(m, p.Y)
	}
	return m
}

// shortErr drops the package prefix of err for a legend.
func shortErr(err error) string {
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// addLine adds a line; legend "" leaves it out of the legend.
func addLine(p *plot.Plot, xy plotter.XYs, c color.Color, width float64, dash []vg.Length, legend string) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("viz: line %q: %w", legend, err)
	}
	l.Color, l.Width, l.Dashes = c, vg.Points(width), dash
	p.Add(l)
	if legend != "" {
		p.Legend.Add(legend, l)
	}
	return nil
}

// addPoints adds glyphs of radius r points.
func addPoints(p *plot.Plot, xy plotter.XYs, c color.Color, g draw.GlyphDrawer, r float64, legend string) error {
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return fmt.Errorf("viz: points %q: %w", legend, err)
	}
	s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(r), Shape: g}
	p.Add(s)
	if legend != "" {
		p.Legend.Add(legend, s)
	}
	return nil
}

// addLabel writes txt at each point, left-aligned just right of it.
func addLabel(p *plot.Plot, xy plotter.XYs, txt string, c color.Color) error {
	labels := make([]string, len(xy))
	for i := range labels {
		labels[i] = txt
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xy, Labels: labels})
	if err != nil {
		return fmt.Errorf("viz: label %q: %w", txt, err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Color = c
		l.TextStyle[i].Font.Size = 9
		l.TextStyle[i].Font.Typeface, l.TextStyle[i].Font.Variant = sans.Typeface, sans.Variant
		l.TextStyle[i].YAlign = draw.YBottom
	}
	p.Add(l)
	return nil
}

func maxLen(ys [][]float64) int {
	n := 0
	for _, y := range ys {
		n = max(n, len(y))
	}
	return n
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}
