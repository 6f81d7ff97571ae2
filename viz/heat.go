package viz

import (
	"image"
	"image/color"
	stddraw "image/draw"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// cellGrid is a heat map plotter: z[row][col] is drawn as the unit cell
// centred on (col, rows−1−row), so row 0 is at the top. Runs of equal
// values along a row are filled as one rectangle, which keeps a rank trace
// (ranks change rarely) fast to draw and crisp in PNG and SVG alike.
type cellGrid struct {
	z        [][]float64
	min, max float64
	pal      []color.Color
}

func (g *cellGrid) color(v float64) color.Color {
	if math.IsNaN(v) {
		return color.Gray{Y: 0xdd}
	}
	t := 0.0
	if g.max > g.min {
		t = (v - g.min) / (g.max - g.min)
	}
	i := int(math.Round(t * float64(len(g.pal)-1)))
	return g.pal[min(max(i, 0), len(g.pal)-1)]
}

// Plot implements plot.Plotter. On a raster canvas it fills the cells'
// pixels directly (runs of equal cells as one rectangle: fast for 100×200
// cells and more, and crisp); on a vector canvas (SVG) it fills rectangles.
func (g *cellGrid) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	rows := len(g.z)
	if vc := rasterOf(c.Canvas); vc != nil {
		img, ok := vc.Image().(*image.RGBA)
		if ok {
			g.fillPixels(img, vc.DPI(), c, trX, trY)
			return
		}
	}
	for r, row := range g.z {
		y := float64(rows - 1 - r)
		y0, y1 := trY(y-0.5), trY(y+0.5)
		for j := 0; j < len(row); {
			k := j + 1
			for k < len(row) && row[k] == row[j] {
				k++
			}
			x0, x1 := trX(float64(j)-0.5), trX(float64(k-1)+0.5)
			c.FillPolygon(g.color(row[j]), []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
			j = k
		}
	}
}

// fillPixels paints the cells into img, whose canvas has dpi dots per inch
// and y pointing up from the bottom edge (vgimg's convention), clipped to
// the data area c.
func (g *cellGrid) fillPixels(img *image.RGBA, dpi float64, c draw.Canvas, trX, trY func(float64) vg.Length) {
	h := img.Bounds().Dy()
	px := func(x vg.Length) int { return int(math.Round(x.Dots(dpi))) }
	py := func(y vg.Length) int { return h - int(math.Round(y.Dots(dpi))) }
	clip := image.Rect(px(c.Min.X), py(c.Max.Y), px(c.Max.X), py(c.Min.Y))
	rows := len(g.z)
	for r, row := range g.z {
		y := float64(rows - 1 - r)
		top, bottom := py(trY(y+0.5)), py(trY(y-0.5))
		for j := 0; j < len(row); {
			k := j + 1
			for k < len(row) && row[k] == row[j] {
				k++
			}
			rect := image.Rect(px(trX(float64(j)-0.5)), top, px(trX(float64(k-1)+0.5)), bottom).Intersect(clip)
			stddraw.Draw(img, rect, image.NewUniform(g.color(row[j])), image.Point{}, stddraw.Src)
			j = k
		}
	}
}

// rasterOf returns the image canvas under cv (through the draw.Canvas
// wrappers gonum/plot adds), or nil for a vector canvas.
func rasterOf(cv vg.Canvas) *vgimg.Canvas {
	for {
		switch c := cv.(type) {
		case *vgimg.Canvas:
			return c
		case draw.Canvas:
			cv = c.Canvas
		case *draw.Canvas:
			cv = c.Canvas
		default:
			return nil
		}
	}
}

// DataRange implements plot.DataRanger.
func (g *cellGrid) DataRange() (xmin, xmax, ymin, ymax float64) {
	cols := 0
	if len(g.z) > 0 {
		cols = len(g.z[0])
	}
	return -0.5, float64(cols) - 0.5, -0.5, float64(len(g.z)) - 0.5
}

// colorStrip is a colour bar's body: len(pal) bands from min to max along y.
type colorStrip struct {
	min, max float64
	pal      []color.Color
}

func (s *colorStrip) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := len(s.pal)
	h := (s.max - s.min) / float64(n)
	for i, col := range s.pal {
		y0, y1 := trY(s.min+float64(i)*h), trY(s.min+float64(i+1)*h)
		x0, x1 := trX(0), trX(1)
		c.FillPolygon(col, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
	}
}

func (s *colorStrip) DataRange() (xmin, xmax, ymin, ymax float64) { return 0, 1, s.min, s.max }

// colorBar returns a narrow plot showing pal over [lo, hi]. With discrete
// set, the palette's colours are the integers lo…hi, and ticks are integers.
func colorBar(label string, lo, hi float64, pal []color.Color, discrete bool) *panel {
	p := newPlot("", "", label)
	s := &colorStrip{min: lo, max: hi, pal: pal}
	if discrete {
		s.min, s.max = lo-0.5, hi+0.5
		p.Y.Tick.Marker = linearTicks{integer: true}
	}
	p.Add(s)
	p.HideX()
	p.Y.Min, p.Y.Max = s.min, s.max
	return p
}

// indexTicks labels positions 0…n−1 (or, with reversed, n−1−i for label i)
// with labels[i], keeping at most maxTicks, evenly strided.
type indexTicks struct {
	labels   []string
	maxTicks int
	reversed bool
	// values, when set, are the increasing numbers the labels show: ticks
	// then go where a value is a multiple of a round stride (500, 1000, …),
	// if any is.
	values []float64
}

func (t indexTicks) Ticks(lo, hi float64) []plot.Tick {
	n := len(t.labels)
	if len(t.values) == n && n > 1 && !t.reversed {
		stride := niceStep((t.values[n-1] - t.values[0]) / float64(max(t.maxTicks, 1)))
		var ts []plot.Tick
		for i, v := range t.values {
			if math.Mod(v, stride) == 0 {
				ts = append(ts, plot.Tick{Value: float64(i), Label: t.labels[i]})
			}
		}
		if len(ts) >= 2 {
			return ts
		}
	}
	step := int(niceStep(float64(n) / float64(max(t.maxTicks, 1))))
	var ts []plot.Tick
	for i := 0; i < n; i++ {
		pos := float64(i)
		if t.reversed {
			pos = float64(n - 1 - i)
		}
		if i%step == 0 {
			ts = append(ts, plot.Tick{Value: pos, Label: t.labels[i]})
		} else if step <= 5 {
			ts = append(ts, plot.Tick{Value: pos}) // minor tick
		}
	}
	return ts
}

// viridis returns n colours of the viridis colour map (van der Walt &
// Smith, 2015: perceptually uniform, colour-blind safe), linearly
// interpolated between nine of its published anchor colours.
func viridis(n int) []color.Color {
	anchors := [][3]float64{
		{0x44, 0x01, 0x54}, {0x47, 0x2c, 0x7a}, {0x3b, 0x51, 0x8b}, {0x2c, 0x71, 0x8e}, {0x21, 0x90, 0x8d},
		{0x27, 0xad, 0x81}, {0x5c, 0xc8, 0x63}, {0xaa, 0xdc, 0x32}, {0xfd, 0xe7, 0x25},
	}
	out := make([]color.Color, n)
	for i := range out {
		t := 0.0
		if n > 1 {
			t = float64(i) / float64(n-1)
		}
		f := t * float64(len(anchors)-1)
		k := min(int(f), len(anchors)-2)
		u := f - float64(k)
		var c [3]uint8
		for j := range c {
			c[j] = uint8(math.Round(anchors[k][j]*(1-u) + anchors[k+1][j]*u))
		}
		out[i] = color.RGBA{c[0], c[1], c[2], 0xff}
	}
	return out
}
