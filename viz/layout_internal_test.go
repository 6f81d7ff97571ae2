package viz

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image/png"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// jupyterWidth is the width of Jupyter Notebook's output area in CSS
// pixels: a wider image is scaled down or cut.
const jupyterWidth = 975

type namedChart struct {
	name  string
	chart *Chart
}

// defaultCharts builds every chart constructor of the package with its
// default options (no Width, no Height), on data like the notebooks': short
// and long series names, one series and a dozen, legends of 1 to 30 rows.
func defaultCharts(t testing.TB) []namedChart {
	t.Helper()
	var out []namedChart
	add := func(name string, c *Chart, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, namedChart{name, c})
	}
	spec := func(name string, n int, f func(i int) float64) *peft.Spectrum {
		v := make([]float64, n)
		for i := range v {
			v[i] = f(i)
		}
		s, err := peft.SpectrumOf(v)
		if err != nil {
			t.Fatal(err)
		}
		s.Name = name
		return s
	}
	w := spec("W", 48, func(i int) float64 { return 10 / math.Sqrt(float64(i+1)) })
	dw := spec("ΔW", 48, func(i int) float64 { return max(0, 6-1.5*float64(i)) })
	g := spec("grad W", 48, func(i int) float64 { return 3 * math.Exp(-float64(i)/6) })
	full := SpectrumOptions{LogY: true, Energy: true, Rank: 4, Thresholds: []float64{0.9, 0.99}, Elbow: true, EffectiveRank: true}

	c, err := SpectrumChart(SpectrumOptions{}, w)
	add("SpectrumChart one series", c, err)
	c, err = SpectrumChart(SpectrumOptions{Energy: true, Thresholds: []float64{0.9}}, w)
	add("SpectrumChart one series, energy", c, err)
	c, err = SpectrumChart(SpectrumOptions{LogY: true, Rank: 4, EffectiveRank: true}, w, dw, g)
	add("SpectrumChart three series", c, err)
	c, err = SpectrumChart(full, w, dw, g)
	add("SpectrumChart three series, energy", c, err)
	// Notebook 02's long names.
	pre := spec("pretrained blocks.0.attn.q", 64, func(i int) float64 { return math.Exp(-float64(i) / 9) })
	rnd := spec("random init", 64, func(i int) float64 { return 2 - float64(i)/40 })
	gq := spec("gradient of blocks.0.attn.q", 64, func(i int) float64 { return math.Exp(-float64(i) / 3) })
	c, err = SpectrumChart(SpectrumOptions{Title: "weight vs. gradient (σ/σ₁, log scale)", LogY: true, Normalize: true,
		Energy: true, Rank: 8, Thresholds: []float64{0.9}, EffectiveRank: true}, pre, gq, rnd)
	add("SpectrumChart notebook 02", c, err)
	var many []*peft.Spectrum
	for k := 1; k <= 12; k++ {
		many = append(many, spec(fmt.Sprintf("ΔW at step %d", 100*k), 32, func(i int) float64 { return float64(k) * math.Exp(-float64(i)/float64(k+2)) }))
	}
	c, err = SpectrumChart(SpectrumOptions{LogY: true, Energy: true, Rank: 4, EffectiveRank: true}, many...)
	add("SpectrumChart twelve series, energy", c, err)
	c, err = SpectrumValues(SpectrumOptions{Energy: true}, nil, []float64{3, 2, 1}, []float64{2, 2, 0.5})
	add("SpectrumValues", c, err)
	c, err = SpectrumMatrices(SpectrumOptions{Normalize: true}, []string{"W"}, mat.NewDense(3, 3, []float64{2, 0, 0, 0, 1, 0, 0, 0, 0.5}))
	add("SpectrumMatrices", c, err)

	m := mat.NewDense(120, 40, nil)
	for i := 0; i < 120; i++ {
		for j := 0; j < 40; j++ {
			m.Set(i, j, math.Sin(float64(i*40+j)*0.7)*math.Pow(1+float64((i*7+j*3)%11), 1.5))
		}
	}
	e, err := peft.NewESD(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	e.Name = "blocks.0.mlp.fc1 (120×40)"
	c, err = ESDChart(ESDOptions{}, e)
	add("ESDChart", c, err)
	c, err = ESDChart(ESDOptions{Linear: true}, e)
	add("ESDChart linear", c, err)
	c, err = ESDMatrix(ESDOptions{}, "", m)
	add("ESDMatrix unnamed", c, err)

	trace := func(n int) *peft.RankTrace {
		tr := &peft.RankTrace{}
		for i := 0; i < n; i++ {
			tr.Modules = append(tr.Modules, fmt.Sprintf("blocks.%d.attn.q", i))
			var row []int
			for j := 0; j < 20; j++ {
				row = append(row, max(0, 8-(i%5)*j/6))
			}
			tr.Ranks = append(tr.Ranks, row)
		}
		for j := 0; j < 20; j++ {
			tr.Steps = append(tr.Steps, 50*(j+1))
		}
		return tr
	}
	c, err = RankHeatmap(RankOptions{}, trace(12))
	add("RankHeatmap", c, err)
	c, err = RankHeatmap(RankOptions{}, trace(100))
	add("RankHeatmap 100 modules", c, err)
	c, err = FinalRanks(RankOptions{}, trace(12))
	add("FinalRanks", c, err)
	c, err = RankValues(RankOptions{}, []string{"q", "v"}, []int{100, 200}, [][]int{{8, 6}, {8, 2}})
	add("RankValues", c, err)

	hist := func(name string, floor float64) *peft.History {
		h := &peft.History{Name: name}
		for s := 1; s <= 200; s++ {
			l := floor + 3*math.Exp(-float64(s)/40) + 0.05*math.Sin(float64(s))
			h.Steps, h.Tokens, h.Loss = append(h.Steps, s), append(h.Tokens, 2048*s), append(h.Loss, l)
			if s%25 == 0 {
				h.EvalSteps, h.EvalLoss = append(h.EvalSteps, s), append(h.EvalLoss, l*1.05)
			}
		}
		return h
	}
	c, err = LossChart(LossOptions{}, hist("LoRA r=4", 1.6), hist("LoRA r=16", 1.4), hist("full fine-tuning", 1.3))
	add("LossChart", c, err)
	var runs []*peft.History
	for r := 1; r <= 10; r++ {
		runs = append(runs, hist(fmt.Sprintf("LoRA r=%d, α=%d", r, 2*r), 1+0.1*float64(r)))
	}
	c, err = LossChart(LossOptions{LogY: true, Smooth: 0.9, Tokens: true}, runs...)
	add("LossChart ten runs", c, err)
	c, err = LossValues(LossOptions{}, nil, []float64{3, 2.5, 2.2, 2.1})
	add("LossValues", c, err)

	a := mat.NewDense(8, 24, nil)
	b := mat.NewDense(16, 24, nil)
	for i := 0; i < 16; i++ {
		for j := 0; j < 24; j++ {
			v := math.Sin(float64(i*24+j)) * math.Exp(-float64(i)/4)
			b.Set(i, j, v)
			if i < 8 {
				a.Set(i, j, v+0.2*math.Cos(float64(i+j*j)))
			}
		}
	}
	phi, err := peft.SubspaceSimilarity(context.Background(), a, b, peft.Right, 8, 16)
	if err != nil {
		t.Fatal(err)
	}
	th, err := peft.PrincipalAngles(context.Background(), a, b, peft.Right, 8)
	if err != nil {
		t.Fatal(err)
	}
	c, err = SimilarityHeatmap(SubspaceOptions{}, phi)
	add("SimilarityHeatmap", c, err)
	c, err = AnglesChart(SubspaceOptions{}, []string{"LoRA r=8 vs. full fine-tuning", "LoRA r=8 vs. random matrix"}, th, th[:4])
	add("AnglesChart", c, err)
	c, err = AnglesChart(SubspaceOptions{}, nil, th)
	add("AnglesChart unnamed", c, err)
	c, err = SubspaceChart(SubspaceOptions{}, phi, th)
	add("SubspaceChart", c, err)
	c, err = SubspaceMatrices(SubspaceOptions{A: "A r=8", B: "A r=16"}, a, b, peft.Right, 8, 16)
	add("SubspaceMatrices", c, err)

	var cells []*Chart
	for l := 0; l < 6; l++ {
		c, err := SpectrumChart(SpectrumOptions{Title: fmt.Sprintf("blocks.%d.attn.v", l), LogY: true, Rank: 4}, w, dw)
		if err != nil {
			t.Fatal(err)
		}
		cells = append(cells, c)
	}
	for _, cols := range []int{1, 2, 3, 6} {
		c, err = Grid("layers", cols, cells...)
		add(fmt.Sprintf("Grid %d columns", cols), c, err)
	}

	live := NewLive("live", 200, 50)
	h := hist("LoRA r=8", 1.5)
	for s := 10; s <= 200; s += 10 {
		k := s / 25
		live.Callback(s, &peft.History{Name: h.Name, Steps: h.Steps[:s], Loss: h.Loss[:s], EvalSteps: h.EvalSteps[:k], EvalLoss: h.EvalLoss[:k]})
	}
	add("NewLive", live.Chart(), live.Err())
	return out
}

// allPanels returns the panels of c and of the charts nested in it.
func (c *Chart) allPanels() []*panel {
	var ps []*panel
	for _, row := range c.rows {
		for _, cl := range row {
			switch {
			case cl.p != nil:
				ps = append(ps, cl.p)
			case cl.sub != nil:
				ps = append(ps, cl.sub.allPanels()...)
			}
		}
	}
	return ps
}

// legends returns the legends of c and of the charts nested in it.
func (c *Chart) legends() []*legend {
	var ls []*legend
	for _, row := range c.rows {
		for _, cl := range row {
			switch {
			case cl.key != nil:
				ls = append(ls, cl.key)
			case cl.p != nil && len(cl.p.key.rows) > 0:
				ls = append(ls, &cl.p.key)
			case cl.sub != nil:
				ls = append(ls, cl.sub.legends()...)
			}
		}
	}
	return ls
}

// pngDPI returns the pixels per inch of a PNG's pHYs chunk (0 without).
func pngDPI(b []byte) float64 {
	for i := 8; i+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[i:]))
		if string(b[i+4:i+8]) == "pHYs" && n == 9 && b[i+16] == 1 {
			return float64(binary.BigEndian.Uint32(b[i+8:])) * 0.0254
		}
		i += 12 + n
	}
	return 0
}

// Every chart, with its default options, is shown at most 975 CSS px wide
// (Jupyter Notebook's output area): DisplaySize, which the kernel sends as
// the PNG's width and height metadata, says so, and the PNG has 2× the
// pixels and says 192 dpi (2 pixels per CSS pixel) in its pHYs chunk.
func TestDefaultDisplayWidth(t *testing.T) {
	for _, dc := range defaultCharts(t) {
		w, h := dc.chart.DisplaySize()
		if w <= 0 || h <= 0 || w > jupyterWidth {
			t.Errorf("%s: display size %d×%d px, want width in (0, %d]", dc.name, w, h, jupyterWidth)
			continue
		}
		b := dc.chart.PNG()
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", dc.name, err)
		}
		if cfg.Width != 2*w || cfg.Height != 2*h {
			t.Errorf("%s: PNG %d×%d, want 2 × %d×%d", dc.name, cfg.Width, cfg.Height, w, h)
		}
		if dpi := pngDPI(b); math.Abs(dpi-192) > 0.5 {
			t.Errorf("%s: pHYs says %.1f dpi, want 192", dc.name, dpi)
		}
	}
}

// Every legend of every chart (default options) lies inside the canvas and
// inside the room the layout gave it, its rows fit their height (more
// columns rather than rows below the room), and no text is wider than its
// row or, outside small multiples, shortened.
func TestLegendsInsideCanvas(t *testing.T) {
	face := legendFace()
	for _, dc := range defaultCharts(t) {
		if _, err := dc.chart.Render("svg"); err != nil {
			t.Fatalf("%s: %v", dc.name, err)
		}
		canvas := vg.Rectangle{Max: vg.Point{X: pxLen(dc.chart.Width), Y: pxLen(dc.chart.Height)}}
		for i, l := range dc.chart.legends() {
			lay := l.drawn
			where := fmt.Sprintf("%s: legend %d (%d rows)", dc.name, i, len(l.rows))
			if lay.hidden && strings.HasPrefix(dc.name, "Grid") {
				continue // a cell of small multiples too narrow for a legend
			}
			if lay.hidden || len(lay.rows) != len(l.rows) {
				t.Errorf("%s: %d rows drawn", where, len(lay.rows))
				continue
			}
			if !inside(lay.frame, canvas) {
				t.Errorf("%s: frame %v beyond the canvas %v", where, lay.frame, canvas.Max)
			}
			if !inside(lay.frame, lay.area) {
				t.Errorf("%s: frame %v beyond its room %v", where, lay.frame, lay.area)
			}
			// Small multiples may shorten a legend's texts to fit their
			// cells; a chart of its own never does.
			if lay.overflow || (lay.truncated > 0 && !strings.HasPrefix(dc.name, "Grid")) {
				t.Errorf("%s: overflow %v, %d texts shortened", where, lay.overflow, lay.truncated)
			}
			for k, r := range lay.rows {
				if !inside(r, lay.frame) {
					t.Errorf("%s: row %d %v beyond the frame %v", where, k, r, lay.frame)
				}
				x := r.Min.X
				if len(l.rows[k].thumbs) > 0 {
					x += legendThumb + legendTextGap
				}
				if end := x + face.Width(lay.texts[k]); end > r.Max.X+1e-6 {
					t.Errorf("%s: row %d %q ends at %v, beyond its row (%v)", where, k, lay.texts[k], end, r.Max.X)
				}
			}
		}
	}
}

func inside(r, in vg.Rectangle) bool {
	const eps = 1e-6
	return r.Min.X >= in.Min.X-eps && r.Min.Y >= in.Min.Y-eps && r.Max.X <= in.Max.X+eps && r.Max.Y <= in.Max.Y+eps
}

// Legend rows do not touch: in every legend drawn, rows of a column are
// one text height (ascent + descent) plus at least a third of the font size
// apart, and none overlaps another.
func TestLegendRowsSpaced(t *testing.T) {
	textH, _, pitch := legendMetrics()
	minGap := legendFont.Size / 3
	if pitch < textH+minGap {
		t.Errorf("row pitch %v < text height %v + %v", pitch, textH, minGap)
	}
	for _, dc := range defaultCharts(t) {
		if _, err := dc.chart.Render("svg"); err != nil {
			t.Fatalf("%s: %v", dc.name, err)
		}
		for i, l := range dc.chart.legends() {
			if l.drawn.hidden {
				continue
			}
			rows := append([]vg.Rectangle(nil), l.drawn.rows...)
			for _, r := range rows {
				if h := r.Max.Y - r.Min.Y; h < textH-1e-6 {
					t.Errorf("%s: legend %d: a row is %v tall, its text %v", dc.name, i, h, textH)
				}
			}
			sort.Slice(rows, func(a, b int) bool {
				if rows[a].Min.X != rows[b].Min.X {
					return rows[a].Min.X < rows[b].Min.X
				}
				return rows[a].Max.Y > rows[b].Max.Y
			})
			for k := 1; k < len(rows); k++ {
				up, lo := rows[k-1], rows[k]
				if up.Min.X == lo.Min.X {
					if gap := up.Min.Y - lo.Max.Y; gap < minGap-1e-6 {
						t.Errorf("%s: legend %d: rows %v apart, want ≥ %v", dc.name, i, gap, minGap)
					}
				} else if up.Max.X > lo.Min.X+1e-6 {
					t.Errorf("%s: legend %d: columns overlap (%v > %v)", dc.name, i, up.Max.X, lo.Min.X)
				}
			}
		}
	}
}

// A legend given too little room stays inside it: long texts are shortened
// with "…", rows too many for the height go to more columns.
func TestLegendLayoutFits(t *testing.T) {
	l := &legend{place: legendPanel}
	line, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		l.add(fmt.Sprintf("series number %d with a rather long name indeed", i), line)
	}
	area := vg.Rectangle{Min: vg.Point{X: 10, Y: 10}, Max: vg.Point{X: 160, Y: 210}}
	lay := l.layout(area)
	if !inside(lay.frame, area) {
		t.Errorf("frame %v beyond %v", lay.frame, area)
	}
	if lay.truncated != 30 {
		t.Errorf("%d texts shortened, want 30", lay.truncated)
	}
	for k, txt := range lay.texts {
		if !strings.HasSuffix(txt, "…") || legendFace().Width(txt) > lay.rows[k].Size().X-legendThumb-legendTextGap+1e-6 {
			t.Errorf("row %d: %q does not fit", k, txt)
		}
	}
	cols, perCol := l.columns(area.Size().Y)
	if cols < 2 || cols*perCol < 30 {
		t.Errorf("%d columns of %d rows for 30 rows in %v", cols, perCol, area.Size().Y)
	}
	if lay.overflow {
		t.Error("overflow")
	}
	// With room enough, nothing is shortened and the frame is as wide as
	// the widest text needs.
	lay = l.layout(vg.Rectangle{Max: vg.Point{X: 2000, Y: 2000}})
	if lay.truncated != 0 || math.Abs(float64(lay.frame.Size().X-l.width(2000))) > 1e-6 {
		t.Errorf("wide room: %d shortened, frame %v wide, want %v", lay.truncated, lay.frame.Size().X, l.width(2000))
	}
}
