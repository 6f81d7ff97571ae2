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
	// Width and Height are the display size in CSS pixels (0: 960 wide
	// with the energy panel, 800 without, 720 for one series and no legend;
	// 420 tall, more for a legend of over 18 rows, up to 720). The legend
	// has a panel of its own at the right, as wide as its rows need, so
	// that it never hides a curve.
	Width, Height int
}

// SpectrumChart draws the singular values of one or several spectra
// (weights vs. updates vs. gradients, or one layer over training), each
// labelled with its Name, against their index k = 1…n. Unnamed spectra are
// "spectrum 1", "spectrum 2", … in the legend; a single unnamed spectrum
// has no legend entry. Every number it
// marks comes from peft.Spectrum (Energy, RankForEnergy, Elbow,
// EffectiveRank).
//
// It returns an error, naming the series, for no series, a nil or empty
// series, a NaN, ±Inf or negative value, a negative rank or a threshold
// outside (0, 1].
func SpectrumChart(opt SpectrumOptions, spectra ...*peft.Spectrum) (*Chart, error) {
	if err := checkSpectrumInput(opt, spectra); err != nil {
		return nil, err
	}
	f := &spectrumFig{opt: opt, spectra: spectra, ys: drawnValues(spectra, opt.Normalize), sp: spectrumPlot(opt, spectra)}
	if opt.LogY {
		f.setLogY()
	}
	f.setYRange()
	if opt.Energy {
		ep, err := energyPlot(opt.Thresholds, maxLen(f.ys))
		if err != nil {
			return nil, err
		}
		f.ep = ep
	}
	if err := f.addAll(); err != nil {
		return nil, err
	}
	return f.chart(), nil
}

// spectrumChartName names SpectrumChart in its errors.
const spectrumChartName = "SpectrumChart"

// spectrumFig is a spectrum chart while it is built: its input, the values
// drawn and its panels. Its add methods each add one element.
type spectrumFig struct {
	opt      SpectrumOptions
	spectra  []*peft.Spectrum
	ys       [][]float64 // the values drawn: σ, or σ/σ₁ when normalized
	floor    float64     // where zeros are drawn on a log axis
	zeros    bool        // some value is drawn on the floor
	yLo, yHi float64     // the y range the vertical marker lines span
	sp, ep   *panel      // the spectrum panel, and the energy panel (nil without)
}

// spectrumSeries is one series as drawn: its spectrum, values, energy,
// label and colour.
type spectrumSeries struct {
	s     *peft.Spectrum
	y     []float64 // σ, or σ/σ₁ when normalized
	e     []float64 // cumulative energy (nil when no element shows it)
	label string    // in the legend ("" for a single unnamed series)
	c     color.Color
}

// checkSpectrumInput returns the first problem of the options or of a series.
func checkSpectrumInput(opt SpectrumOptions, spectra []*peft.Spectrum) error {
	if len(spectra) == 0 {
		return fmt.Errorf("viz: %s: no spectra given", spectrumChartName)
	}
	if opt.Rank < 0 {
		return fmt.Errorf("viz: %s: rank %d is negative", spectrumChartName, opt.Rank)
	}
	for _, f := range opt.Thresholds {
		if !(f > 0 && f <= 1) {
			return fmt.Errorf("viz: %s: energy threshold %v is outside (0, 1]", spectrumChartName, f)
		}
	}
	for i, s := range spectra {
		if err := checkSpectrum(i, s); err != nil {
			return err
		}
	}
	return nil
}

// checkSpectrum returns an error naming series i if it is nil, empty, not finite, negative or unsorted.
func checkSpectrum(i int, s *peft.Spectrum) error {
	if s == nil {
		return fmt.Errorf("viz: %s: series %d is nil", spectrumChartName, i+1)
	}
	label := seriesName(s.Name, i)
	if len(s.S) == 0 {
		return fmt.Errorf("viz: %s: series %q is empty", spectrumChartName, label)
	}
	if err := checkFinite(spectrumChartName, label, s.S); err != nil {
		return err
	}
	for k, v := range s.S {
		if v < 0 {
			return fmt.Errorf("viz: %s: series %q: value %d is negative (%g); singular values are ≥ 0", spectrumChartName, label, k, v)
		}
		if k > 0 && v > s.S[k-1] {
			return fmt.Errorf("viz: %s: series %q is not sorted descending at %d (%g after %g); use peft.SpectrumOf", spectrumChartName, label, k, v, s.S[k-1])
		}
	}
	return nil
}

// drawnValues copies each series' values, divided by σ₁ when normalize is set (a zero series stays zero).
func drawnValues(spectra []*peft.Spectrum, normalize bool) [][]float64 {
	ys := make([][]float64, len(spectra))
	for i, s := range spectra {
		y := append([]float64(nil), s.S...)
		if normalize && y[0] > 0 {
			for k := range y {
				y[k] /= s.S[0]
			}
		}
		ys[i] = y
	}
	return ys
}

// spectrumPlot returns the empty spectrum panel, titled with the name of a single named series.
func spectrumPlot(opt SpectrumOptions, spectra []*peft.Spectrum) *panel {
	ylabel := "singular value σ"
	if opt.Normalize {
		ylabel = "σ / σ₁"
	}
	title := "singular values"
	if len(spectra) == 1 && spectra[0].Name != "" {
		title = "singular values of " + spectra[0].Name
	}
	p := newPlot(title, "index k", ylabel)
	p.X.Tick.Marker = linearTicks{integer: true}
	return p
}

// setLogY puts the spectrum panel's y axis on a log scale, with zeros on a floor a decade under the smallest positive value.
func (f *spectrumFig) setLogY() {
	minPos := math.Inf(1)
	for _, y := range f.ys {
		for _, v := range y {
			if v > 0 {
				minPos = min(minPos, v)
			}
			f.zeros = f.zeros || v == 0
		}
	}
	if math.IsInf(minPos, 1) {
		minPos = 1
	}
	f.floor = minPos / 10
	f.sp.Y.Scale = plot.LogScale{}
	f.sp.Y.Tick.Marker = logTicks{}
}

// lift returns where v is drawn: v, or the floor for a zero on a log axis.
func (f *spectrumFig) lift(v float64) float64 {
	if f.opt.LogY && v <= 0 {
		return f.floor
	}
	return v
}

// setYRange sets the y range the marker lines span, and gives a flat spectrum's axis a range.
func (f *spectrumFig) setYRange() {
	f.yLo, f.yHi = math.Inf(1), math.Inf(-1)
	for _, y := range f.ys {
		for _, v := range y {
			f.yLo, f.yHi = min(f.yLo, f.lift(v)), max(f.yHi, f.lift(v))
		}
	}
	if !f.opt.LogY {
		f.yLo = min(f.yLo, 0)
	}
	if f.yHi != f.yLo {
		return
	}
	if f.opt.LogY {
		f.yLo, f.yHi = f.yLo/2, f.yHi*2
	} else {
		f.yHi = f.yLo + 1
	}
	f.sp.Y.Min, f.sp.Y.Max = f.yLo, f.yHi
}

// energyPlot returns the cumulative-energy panel with a gray line across ranks 1…n at each threshold.
func energyPlot(thresholds []float64, n int) (*panel, error) {
	ep := newPlot("cumulative energy", "rank k", "share of Σσ² in the top k")
	ep.X.Tick.Marker = linearTicks{integer: true}
	ep.Y.Min, ep.Y.Max = 0, 1.02
	for _, f := range thresholds {
		if err := addLine(ep, plotter.XYs{{X: 1, Y: f}, {X: float64(n), Y: f}}, color.Gray{Y: 0xa0}, 0.8, dashes[2], ""); err != nil {
			return nil, err
		}
	}
	return ep, nil
}

// addAll adds every series, then the rank line, the zero floor and the marker key.
func (f *spectrumFig) addAll() error {
	colors := seriesColors(len(f.spectra))
	for i := range f.spectra {
		if err := f.addSeries(i, colors[i]); err != nil {
			return err
		}
	}
	if err := f.addRank(); err != nil {
		return err
	}
	if err := f.addZeroFloor(); err != nil {
		return err
	}
	f.addMarkerKey()
	return nil
}

// addSeries adds the elements of series i in colour c, in drawing order.
func (f *spectrumFig) addSeries(i int, c color.Color) error {
	ss := f.series(i, c)
	for _, add := range []func(*spectrumSeries) error{f.addCurve, f.addElbow, f.addEffectiveRank, f.addEnergyMarks, f.addEnergyCurve} {
		if err := add(ss); err != nil {
			return err
		}
	}
	return nil
}

// series returns series i as drawn in colour c, with its energy when a threshold or the energy panel needs it.
func (f *spectrumFig) series(i int, c color.Color) *spectrumSeries {
	s := f.spectra[i]
	ss := &spectrumSeries{s: s, y: f.ys[i], label: legendName(s.Name, "spectrum", i, len(f.spectra)), c: c}
	if len(f.opt.Thresholds) > 0 || f.ep != nil {
		ss.e = s.Energy()
	}
	return ss
}

// addCurve adds the series' line, named in the legend, with dots for up to 64 values and crosses for zeros on a log axis.
func (f *spectrumFig) addCurve(ss *spectrumSeries) error {
	xy := make(plotter.XYs, len(ss.y))
	var zxy plotter.XYs
	for k, v := range ss.y {
		xy[k] = plotter.XY{X: float64(k + 1), Y: f.lift(v)}
		if f.opt.LogY && v == 0 {
			zxy = append(zxy, xy[k])
		}
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("viz: %s: series %q: %w", spectrumChartName, ss.s.Name, err)
	}
	l.Color, l.Width = ss.c, vg.Points(1.6)
	f.sp.Add(l)
	if ss.label != "" {
		f.sp.key.add(ss.label, l)
	}
	if len(ss.y) <= 64 {
		if err := addPoints(f.sp, xy, ss.c, draw.CircleGlyph{}, 1.8, ""); err != nil {
			return err
		}
	}
	if len(zxy) > 0 {
		return addPoints(f.sp, zxy, ss.c, draw.CrossGlyph{}, 3.5, "")
	}
	return nil
}

// addElbow rings the series' elbow and labels it with the rank before the bend.
func (f *spectrumFig) addElbow(ss *spectrumSeries) error {
	if !f.opt.Elbow {
		return nil
	}
	e := ss.s.Elbow()
	if e <= 0 {
		return nil
	}
	pt := plotter.XYs{{X: float64(e + 1), Y: f.lift(ss.y[e])}}
	if err := addPoints(f.sp, pt, ss.c, draw.RingGlyph{}, 6, ""); err != nil {
		return err
	}
	return addLabel(f.sp, pt, fmt.Sprintf(" elbow r=%d", e), ss.c)
}

// addEffectiveRank draws the series' entropy effective rank as a dotted vertical line named in the legend.
func (f *spectrumFig) addEffectiveRank(ss *spectrumSeries) error {
	if !f.opt.EffectiveRank {
		return nil
	}
	er := ss.s.EffectiveRank()
	if !(er > 0) {
		return nil
	}
	name := "eff. rank"
	if ss.label != "" {
		name += " " + ss.label
	}
	return addLine(f.sp, plotter.XYs{{X: er, Y: f.yLo}, {X: er, Y: f.yHi}}, ss.c, 1, dashes[2], fmt.Sprintf("%s = %.1f", name, er))
}

// addEnergyMarks marks, for each threshold, the smallest rank keeping that energy share, on both panels.
func (f *spectrumFig) addEnergyMarks(ss *spectrumSeries) error {
	for _, fr := range f.opt.Thresholds {
		k := ss.s.RankForEnergy(fr)
		if k == 0 {
			continue // zero matrix: no rank keeps a share of nothing
		}
		if err := addMark(f.sp, plotter.XY{X: float64(k), Y: f.lift(ss.y[k-1])}, fmt.Sprintf(" %g%%", 100*fr), ss.c); err != nil {
			return err
		}
		if f.ep == nil {
			continue
		}
		if err := addMark(f.ep, plotter.XY{X: float64(k), Y: ss.e[k-1]}, fmt.Sprintf(" k=%d", k), ss.c); err != nil {
			return err
		}
	}
	return nil
}

// addMark adds a triangle at pt labelled txt.
func addMark(p *panel, pt plotter.XY, txt string, c color.Color) error {
	xy := plotter.XYs{pt}
	if err := addPoints(p, xy, c, draw.TriangleGlyph{}, 4, ""); err != nil {
		return err
	}
	return addLabel(p, xy, txt, c)
}

// addEnergyCurve adds the series' cumulative energy to the energy panel, named in its legend.
func (f *spectrumFig) addEnergyCurve(ss *spectrumSeries) error {
	if f.ep == nil {
		return nil
	}
	exy := make(plotter.XYs, len(ss.e))
	for k, v := range ss.e {
		exy[k] = plotter.XY{X: float64(k + 1), Y: v}
	}
	return addLine(f.ep, exy, ss.c, 1.6, nil, ss.label)
}

// addRank draws the chosen rank as a dashed black vertical line on both panels, named in the legends.
func (f *spectrumFig) addRank() error {
	if f.opt.Rank <= 0 {
		return nil
	}
	r, legend := float64(f.opt.Rank), fmt.Sprintf("rank r = %d", f.opt.Rank)
	if err := addLine(f.sp, plotter.XYs{{X: r, Y: f.yLo}, {X: r, Y: f.yHi}}, color.Black, 1, dashes[1], legend); err != nil {
		return err
	}
	if f.ep == nil {
		return nil
	}
	return addLine(f.ep, plotter.XYs{{X: r, Y: 0}, {X: r, Y: 1}}, color.Black, 1, dashes[1], legend)
}

// addZeroFloor draws the dashed floor that zeros sit on on a log axis, named in the legend.
func (f *spectrumFig) addZeroFloor() error {
	if !f.zeros {
		return nil
	}
	n := float64(maxLen(f.ys))
	return addLine(f.sp, plotter.XYs{{X: 1, Y: f.floor}, {X: n, Y: f.floor}}, color.Gray{Y: 0x80}, 0.8, dashes[1], "σ = 0 (× on this floor)")
}

// addMarkerKey explains the elbow and energy-share glyphs in the legend.
func (f *spectrumFig) addMarkerKey() {
	switch {
	case f.opt.Elbow:
		f.sp.key.add("○ elbow, ▲ energy share")
	case len(f.opt.Thresholds) > 0:
		f.sp.key.add("▲ energy share")
	}
}

// chart lays the panels out in a Chart, with a legend panel unless one series needs none.
func (f *spectrumFig) chart() *Chart {
	ch := &Chart{Title: f.opt.Title, Width: f.opt.Width, Height: f.opt.Height}
	if f.needsLegend() {
		f.layoutWithLegend(ch)
	} else {
		f.layoutBare(ch)
	}
	return ch
}

// needsLegend reports whether the legend names what the panels do not: several series, a rank, effective ranks or zeros.
func (f *spectrumFig) needsLegend() bool {
	return len(f.spectra) != 1 || f.opt.Rank != 0 || f.opt.EffectiveRank || f.zeros
}

// widthWithLegend is the default width of a spectrum chart with its legend panel.
const widthWithLegend = 800

// layoutBare lays out one series, named in the title with its markers labelled where they are: no legend (small multiples stay uncluttered).
func (f *spectrumFig) layoutBare(ch *Chart) {
	f.sp.key = legend{}
	ch.rows = [][]cell{{{p: f.sp, weight: 1}}}
	if f.ep != nil {
		f.ep.key = legend{}
		ch.rows = [][]cell{{{p: f.sp, weight: 0.55}, {p: f.ep, weight: 0.45}}}
	}
	ch.Width, ch.Height = orDefault(ch.Width, defaultWidth+240*b2i(f.ep != nil)), orDefault(ch.Height, 420)
}

// layoutWithLegend lays out the panels with the spectrum panel's legend in a panel of its own at the right.
func (f *spectrumFig) layoutWithLegend(ch *Chart) {
	lc := keyCell(f.sp)
	// Tall enough by default for the legend in one column (a layer over a
	// dozen checkpoints, with effective ranks: 25 rows), up to 720 px.
	height := min(max(420, lc.key.oneColumnPx()+120), 720)
	if f.ep == nil {
		ch.rows = [][]cell{{{p: f.sp, weight: 1}, lc}}
		ch.Width, ch.Height = orDefault(ch.Width, widthWithLegend), orDefault(ch.Height, height)
		return
	}
	f.ep.key = legend{} // the legend panel names the series once
	ch.rows = [][]cell{{{p: f.sp, weight: 0.575}, {p: f.ep, weight: 0.425}, lc}}
	ch.Width, ch.Height = orDefault(ch.Width, maxDefaultWidth), orDefault(ch.Height, height)
}

// keyCell moves p's legend to a panel of its own, drawn beside p (as wide
// as its rows need) so that the legend never hides data.
func keyCell(p *panel) cell {
	k := p.key
	k.place = legendPanel
	p.key = legend{}
	return cell{key: &k}
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
	label := seriesName(e.Name, 0) // for errors
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
		entry := fmt.Sprintf("%d eigenvalues (N=%d, M=%d)", len(e.Lambda), e.N, e.M)
		if e.Name != "" {
			entry = e.Name + ": " + entry
		}
		p.key.add(entry, poly)
	}
	if h.Excluded > 0 {
		p.key.add(fmt.Sprintf("%d eigenvalue(s) = 0 not shown on log axes", h.Excluded))
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
			p.key.add("power law: not fitted (" + shortErr(err) + ")")
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
	return &Chart{Title: opt.Title, rows: [][]cell{{{p: p, weight: 1}, keyCell(p)}},
		Width: orDefault(opt.Width, maxDefaultWidth), Height: orDefault(opt.Height, 420)}, nil
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
func addLine(p *panel, xy plotter.XYs, c color.Color, width float64, dash []vg.Length, legend string) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("viz: line %q: %w", legend, err)
	}
	l.Color, l.Width, l.Dashes = c, vg.Points(width), dash
	p.Add(l)
	if legend != "" {
		p.key.add(legend, l)
	}
	return nil
}

// addPoints adds glyphs of radius r points.
func addPoints(p *panel, xy plotter.XYs, c color.Color, g draw.GlyphDrawer, r float64, legend string) error {
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return fmt.Errorf("viz: points %q: %w", legend, err)
	}
	s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(r), Shape: g}
	p.Add(s)
	if legend != "" {
		p.key.add(legend, s)
	}
	return nil
}

// addLabel writes txt at each point, left-aligned just right of it.
func addLabel(p *panel, xy plotter.XYs, txt string, c color.Color) error {
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
