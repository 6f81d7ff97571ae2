package viz

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"
	"sync"

	"git.sr.ht/~sbinet/gg"
	xdraw "golang.org/x/image/draw"
	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart is a figure: one or more gonum/plot panels laid out in rows, with an
// optional title over them and a footer line under them. It is drawn when
// PNG, SVG or Render is called, from data copied when the chart was made, so
// a chart never changes after its constructor returns (a training loop may
// keep appending to the History it came from).
//
// A notebook shows a Chart inline by itself: it has PNG() []byte and
// SVG() string, the display contract of package nb. Renderings of one chart
// from several goroutines are serialized.
type Chart struct {
	// Title is drawn over the whole figure ("" for none). Panels have their
	// own titles.
	Title string
	// Footer is a line of text drawn under the figure ("" for none).
	Footer string
	// Width and Height are the display size in CSS pixels (1/96 inch).
	// Constructors default to at most 960 wide, so that a chart fits
	// Jupyter Notebook's output area (975 px) unscaled.
	Width, Height int
	// Scale is the PNG's pixel density: the PNG is Width·Scale ×
	// Height·Scale pixels, so that it stays crisp on high-density screens
	// when shown at Width×Height. 0 means 2.
	Scale float64

	rows [][]cell
	mu   sync.Mutex // serializes drawing: gonum/plot adjusts axes while it draws
}

// cell is one part of a figure's row, taking weight of the row's width: a
// plot with its legend, a legend in a panel of its own (as wide as its
// rows need), or a nested chart (Grid).
type cell struct {
	p      *panel
	key    *legend
	sub    *Chart
	weight float64
}

// panel is a gonum/plot plot and its legend, which viz draws (legend.go).
type panel struct {
	*plot.Plot
	key       legend
	drawnData vg.Rectangle // the data area last drawn, for tests
}

// Default display sizes, in CSS pixels. No chart is wider by default than
// maxDefaultWidth, so that every chart fits the output area of Jupyter
// Notebook (975 px wide) and JupyterLab without being scaled down.
const (
	defaultWidth    = 720
	defaultHeight   = 400
	maxDefaultWidth = 960
)

// pxLen converts CSS pixels to vg lengths (points).
func pxLen(px int) vg.Length { return vg.Length(px) * vg.Inch / 96 }

// Plots returns the chart's gonum/plot panels, row by row (nested charts
// of a Grid are not included), for users who want to restyle them before
// rendering. The charts' legends are drawn by viz, not by the plots'
// Legend (which is empty; entries added to it are drawn by gonum/plot).
func (c *Chart) Plots() []*plot.Plot {
	var ps []*plot.Plot
	for _, row := range c.rows {
		for _, cl := range row {
			if cl.p != nil {
				ps = append(ps, cl.p.Plot)
			}
		}
	}
	return ps
}

// DisplaySize returns the size in CSS pixels at which the chart is meant to
// be shown: Width×Height. The PNG has Scale times as many pixels (and says
// so in its pHYs chunk: 96·Scale dots per inch), so a front-end that shows
// it at DisplaySize shows it crisp.
func (c *Chart) DisplaySize() (w, h int) { return c.Width, c.Height }

// Text describes the chart in a line of text (text/plain, next to the
// images): its title, display size and, for a live chart, the footer.
func (c *Chart) Text() string {
	name := c.Title
	if name == "" {
		for _, p := range c.Plots() {
			if p.Title.Text != "" {
				name = p.Title.Text
				break
			}
		}
	}
	s := fmt.Sprintf("viz.Chart %q, %d×%d px", name, c.Width, c.Height)
	if c.Footer != "" {
		s += "; " + c.Footer
	}
	return s
}

// PNG returns the chart as a PNG image of Width·Scale × Height·Scale
// pixels, or nil if it cannot be drawn (Render says why).
func (c *Chart) PNG() []byte {
	b, err := c.Render("png")
	if err != nil {
		return nil
	}
	return b
}

// SVG returns the chart as an SVG document of Width×Height pixels, or ""
// if it cannot be drawn (Render says why).
func (c *Chart) SVG() string {
	b, err := c.Render("svg")
	if err != nil {
		return ""
	}
	return string(b)
}

// Render draws the chart as "png" or "svg" and returns the encoded bytes. A
// panic inside gonum/plot is returned as an error, never raised.
func (c *Chart) Render(format string) (out []byte, err error) {
	if c == nil {
		return nil, fmt.Errorf("viz: Render: nil chart")
	}
	w, h := c.Width, c.Height
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("viz: Render %q: size %d×%d px, want both > 0", c.Title, w, h)
	}
	scale := c.Scale
	if scale == 0 {
		scale = 2
	}
	if !(scale > 0 && scale <= 8) {
		return nil, fmt.Errorf("viz: Render %q: Scale %v, want in (0, 8]", c.Title, scale)
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("viz: Render %q: %v", c.Title, r)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf bytes.Buffer
	switch strings.ToLower(format) {
	case "png":
		dpi := int(math.Round(96 * scale))
		pw, ph := int(math.Round(float64(w)*scale)), int(math.Round(float64(h)*scale))
		// Our own gg context on a fresh image: vgimg.NewWith would copy
		// its image into a new context (20 MB for a tall heat map). Glyphs
		// are drawn through the context's interpolator at scale 1 (only y
		// is flipped), where nearest neighbour is exact and several times
		// cheaper than gg's default bilinear kernel.
		ctx := gg.NewContext(pw, ph)
		ctx.SetLineCapButt()
		ctx.InvertY()
		ctx.SetInterpolator(xdraw.NearestNeighbor)
		img := vgimg.NewWith(vgimg.UseImageWithContext(ctx.Image().(xdraw.Image), ctx), vgimg.UseDPI(dpi))
		c.drawInto(draw.New(img))
		rgba, ok := img.Image().(*image.RGBA)
		if !ok {
			return nil, fmt.Errorf("viz: Render %q: canvas image is %T, want *image.RGBA", c.Title, img.Image())
		}
		if err := encodePNG(&buf, rgba, dpi); err != nil {
			return nil, fmt.Errorf("viz: Render %q as PNG: %w", c.Title, err)
		}
	case "svg":
		s := vgsvg.New(pxLen(w), pxLen(h))
		dc := draw.New(s)
		dc.FillPolygon(color.White, rectPts(dc.Rectangle))
		c.drawInto(dc)
		if _, err := s.WriteTo(&buf); err != nil {
			return nil, fmt.Errorf("viz: Render %q as SVG: %w", c.Title, err)
		}
		// Browsers rarely have Liberation Sans; Arial has the same metrics
		// (Liberation Sans was made to match them), so text keeps its width.
		out := bytes.ReplaceAll(buf.Bytes(), []byte("font-family:Liberation Sans;"),
			[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;"))
		return out, nil
	default:
		return nil, fmt.Errorf("viz: Render %q: unknown format %q, want \"png\" or \"svg\"", c.Title, format)
	}
	return buf.Bytes(), nil
}

func rectPts(r vg.Rectangle) []vg.Point {
	return []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}}
}

var (
	titleStyle = text.Style{
		Color: color.Black, Font: font.From(font.Font{Typeface: "Liberation", Variant: "Sans", Weight: xfont.WeightBold}, 14),
		XAlign: draw.XCenter, YAlign: draw.YTop, Handler: plot.DefaultTextHandler,
	}
	footerStyle = text.Style{
		Color: color.Gray{Y: 0x30}, Font: font.From(sans, 10),
		XAlign: draw.XLeft, YAlign: draw.YBottom, Handler: plot.DefaultTextHandler,
	}
)

// drawInto draws the figure on dc: title, rows of cells, footer.
func (c *Chart) drawInto(dc draw.Canvas) {
	pad := vg.Points(4)
	if c.Title != "" {
		top := vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - pad}
		dc.FillText(titleStyle, top, c.Title)
		dc.Max.Y -= titleStyle.Height(c.Title) + 2*pad
	}
	if c.Footer != "" {
		dc.FillText(footerStyle, vg.Point{X: dc.Min.X + 2*pad, Y: dc.Min.Y + pad}, c.Footer)
		dc.Min.Y += footerStyle.Height(c.Footer) + 2*pad
	}
	n := len(c.rows)
	if n == 0 {
		return
	}
	rh := (dc.Max.Y - dc.Min.Y) / vg.Length(n)
	for i, row := range c.rows {
		rc := dc
		rc.Max.Y = dc.Max.Y - vg.Length(i)*rh
		rc.Min.Y = rc.Max.Y - rh
		drawRow(rc, row)
	}
}

// drawRow splits rc among the cells and draws them: a legend panel gets the
// width its rows need (at most 45 % of the row, leaving each plot 150 pt),
// the other cells share the rest by their weights. The data areas of the row's plots are aligned
// vertically (same bottom and top padding), so that a heat map and the bar
// chart beside it share their rows, and a legend panel starts at the top
// of the data areas.
func drawRow(rc draw.Canvas, row []cell) {
	rc.Max.X -= vg.Points(6) // right margin: nothing touches the edge
	cs := splitRow(rc, row, nil)
	_, top := rowPads(cs, row)
	var fixed []vg.Length
	plots := 0
	for _, cl := range row {
		plots += b2i(cl.key == nil)
	}
	rw := rc.Max.X - rc.Min.X
	for i, cl := range row {
		if cl.p == nil && cl.key != nil {
			if fixed == nil {
				fixed = make([]vg.Length, len(row))
			}
			// At most 45 % of the row, and the plots keep 150 pt each.
			fixed[i] = max(min(cl.key.width(rc.Max.Y-rc.Min.Y-top), 0.45*rw, rw-vg.Length(plots)*minPlotWidth), 0)
		}
	}
	if fixed != nil {
		cs = splitRow(rc, row, fixed)
	}
	for i, cl := range row {
		if cl.p != nil {
			d := cl.p.DataCanvas(cs[i])
			fitTicks(cl.p.Plot, d.Max.X-d.Min.X, d.Max.Y-d.Min.Y)
		}
	}
	bottom, top := rowPads(cs, row)
	for i, cl := range row {
		switch {
		case cl.sub != nil:
			cl.sub.mu.Lock()
			cl.sub.drawInto(cs[i])
			cl.sub.mu.Unlock()
		case cl.p == nil:
			area := cs[i].Rectangle
			area.Max.Y -= top
			cl.key.draw(cs[i], area)
		default:
			d := cl.p.DataCanvas(cs[i])
			c := cs[i]
			c.Min.Y += bottom - (d.Min.Y - cs[i].Min.Y)
			c.Max.Y -= top - (cs[i].Max.Y - d.Max.Y)
			cl.p.Draw(c)
			cl.p.drawnData = cl.p.DataCanvas(c).Rectangle
			if len(cl.p.key.rows) > 0 {
				cl.p.key.draw(c, inPlotArea(cl.p.drawnData))
			}
		}
	}
}

// panelGap is the space between the cells of a row; minPlotWidth is the
// width a legend panel leaves to each plot of its row (in small multiples,
// its texts are shortened rather than the plots squeezed).
var panelGap, minPlotWidth = vg.Points(10), vg.Points(150)

// splitRow returns the canvases of the row's cells: fixed[i] > 0 is the
// width of cell i, the others share the rest by weight.
func splitRow(rc draw.Canvas, row []cell, fixed []vg.Length) []draw.Canvas {
	free := rc.Max.X - rc.Min.X
	var total float64
	for i, cl := range row {
		if fixed != nil && fixed[i] > 0 {
			free -= fixed[i]
			if i > 0 {
				free -= panelGap
			}
			continue
		}
		total += cl.weight
	}
	cs := make([]draw.Canvas, len(row))
	x := rc.Min.X
	for i, cl := range row {
		var w vg.Length
		if fixed != nil && fixed[i] > 0 {
			w = fixed[i]
			if i > 0 {
				w += panelGap
			}
		} else if total > 0 {
			w = max(free, 0) * vg.Length(cl.weight/total)
		}
		cs[i] = rc
		cs[i].Min.X, cs[i].Max.X = x, x+w
		if i > 0 {
			cs[i].Min.X = min(cs[i].Min.X+panelGap, cs[i].Max.X)
		}
		x += w
	}
	return cs
}

// rowPads returns the largest distances, among the row's plots, from the
// bottom and from the top of a cell to its data area.
func rowPads(cs []draw.Canvas, row []cell) (bottom, top vg.Length) {
	for i, cl := range row {
		if cl.p == nil {
			continue
		}
		d := cl.p.DataCanvas(cs[i])
		bottom = max(bottom, d.Min.Y-cs[i].Min.Y)
		top = max(top, cs[i].Max.Y-d.Max.Y)
	}
	return bottom, top
}

// newPlot returns a plot with the package's style, its axes marked by
// linearTicks, and an empty legend at the top right of its data area.
func newPlot(title, xlabel, ylabel string) *panel {
	p := plot.New()
	p.BackgroundColor = nil // the figure is white already: no full-size fill per panel
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 12
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.X.Label.TextStyle.Font.Size = 11
	p.Y.Label.TextStyle.Font.Size = 11
	p.X.Tick.Marker, p.Y.Tick.Marker = linearTicks{}, linearTicks{}
	p.Legend.TextStyle.Font.Size = 9
	for _, f := range []*font.Font{&p.Title.TextStyle.Font, &p.X.Label.TextStyle.Font, &p.Y.Label.TextStyle.Font,
		&p.X.Tick.Label.Font, &p.Y.Tick.Label.Font, &p.Legend.TextStyle.Font} {
		f.Typeface, f.Variant = sans.Typeface, sans.Variant
	}
	return &panel{Plot: p}
}

// sans is the face of all the package's text.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// palette10 is the Okabe–Ito colour-blind-safe palette, then grays.
var palette10 = []color.Color{
	color.RGBA{0x00, 0x72, 0xB2, 0xff}, // blue
	color.RGBA{0xD5, 0x5E, 0x00, 0xff}, // vermillion
	color.RGBA{0x00, 0x9E, 0x73, 0xff}, // bluish green
	color.RGBA{0xCC, 0x79, 0xA7, 0xff}, // reddish purple
	color.RGBA{0xE6, 0x9F, 0x00, 0xff}, // orange
	color.RGBA{0x56, 0xB4, 0xE9, 0xff}, // sky blue
	color.RGBA{0x00, 0x00, 0x00, 0xff}, // black
	color.RGBA{0xF0, 0xE4, 0x42, 0xff}, // yellow
	color.RGBA{0x88, 0x88, 0x88, 0xff},
	color.RGBA{0x44, 0x44, 0x44, 0xff},
}

func seriesColor(i int) color.Color { return palette10[i%len(palette10)] }

// seriesColors returns the colours of n series: the distinct Okabe–Ito
// colours for up to 8, and for more (one layer over many training steps)
// viridis from dark to light, so that order reads as a gradient.
func seriesColors(n int) []color.Color {
	if n <= 8 {
		return palette10[:n]
	}
	return viridis(n)
}

// faded returns c with opacity a (0…1), premultiplied.
func faded(c color.Color, a float64) color.Color {
	r, g, b, _ := c.RGBA()
	return color.RGBA64{
		R: uint16(float64(r) * a), G: uint16(float64(g) * a), B: uint16(float64(b) * a), A: uint16(0xffff * a),
	}
}

// dashes used for the marker lines of the n-th series.
var dashes = [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)}}

// checkFinite returns an error naming the series and the first bad value.
func checkFinite(chart, series string, xs []float64) error {
	for i, v := range xs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("viz: %s: series %q: value %d is %v", chart, series, i, v)
		}
	}
	return nil
}

// seriesName returns name, or a stand-in naming the series' position, for
// error messages. Legends use legendName.
func seriesName(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("series %d", i+1)
	}
	return name
}

// legendName is how a legend names series i of n: its name; unnamed, ""
// when it is the only series (the legend leaves it out, the panel's title
// and axis say what it is), else what it is and its position ("spectrum
// 2", "run 3").
func legendName(name, what string, i, n int) string {
	switch {
	case name != "":
		return name
	case n == 1:
		return ""
	default:
		return fmt.Sprintf("%s %d", what, i+1)
	}
}

// widenLog gives a log axis whose data is one value a range around it
// (gonum/plot would widen it by ±1, through zero, which a log axis cannot
// draw).
func widenLog(a *plot.Axis) {
	if a.Min == a.Max && a.Min > 0 {
		a.Min, a.Max = a.Min/2, a.Max*2
	}
}
