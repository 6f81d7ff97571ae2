package viz

import (
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// legend is the key of a panel: rows of a thumbnail (a sample of the line,
// points or area drawn) and a text. viz draws it itself rather than with
// gonum/plot's Legend, so that it is measured before the layout gives it
// room, its rows are spaced apart, and it always stays in the room it is
// given: in a panel of its own beside the plots, or in a corner of a plot's
// data area. Rows that do not fit the height go to more columns; a text
// too long for the width is shortened with "…"; a legend in a room too
// narrow for any text (a cell of small multiples) is not drawn.
type legend struct {
	rows  []legendRow
	place legendPlace
	drawn legendLayout // the layout last drawn, for tests
}

// legendPlace is where a legend is drawn.
type legendPlace int

const (
	legendTopRight    legendPlace = iota // in the data area's top right corner
	legendBottomRight                    // in the data area's bottom right corner
	legendPanel                          // in a panel of its own, from its top left
)

type legendRow struct {
	text   string
	thumbs []plot.Thumbnailer
}

// add adds a row; a text without thumbnails is a note (the key to markers).
func (l *legend) add(text string, thumbs ...plot.Thumbnailer) {
	l.rows = append(l.rows, legendRow{text: text, thumbs: thumbs})
}

// Legend metrics.
var (
	legendFont     = font.Font{Typeface: sans.Typeface, Variant: sans.Variant, Size: 9}
	legendThumb    = vg.Points(18) // thumbnail width
	legendTextGap  = vg.Points(5)  // between a thumbnail and its text
	legendRowGap   = vg.Points(4)  // blank space between one row's descenders and the next row's ascenders
	legendColGap   = vg.Points(12) // between columns
	legendInset    = vg.Points(4)  // between the frame and the rows
	legendMargin   = vg.Points(4)  // between an in-plot legend's frame and the data area's edges
	legendTextGray = color.Gray{Y: 0x20}
)

func legendFace() *font.Face {
	f := font.DefaultCache.Lookup(legendFont, legendFont.Size)
	return &f
}

// legendMetrics returns the height of a row's text (ascent + descent), its
// descent, and the pitch from one row to the next.
func legendMetrics() (textH, descent, pitch vg.Length) {
	e := legendFace().Extents()
	textH = e.Ascent + e.Descent
	return textH, e.Descent, textH + legendRowGap
}

// legendLayout is where a legend's parts go on the canvas.
type legendLayout struct {
	area      vg.Rectangle   // the room given
	frame     vg.Rectangle   // the box around all rows, insets included
	rows      []vg.Rectangle // each row: its thumbnail and its text
	texts     []string       // each row's text as drawn
	truncated int            // rows whose text was shortened to fit the width
	overflow  bool           // the rows are taller than the room given
	hidden    bool           // the room is too narrow for any text: not drawn
}

// minLegendText is the narrowest room a legend's texts are drawn in.
var minLegendText = vg.Points(24)

// textWidth is the widest row text.
func (l *legend) textWidth() vg.Length {
	f := legendFace()
	var w vg.Length
	for _, r := range l.rows {
		w = max(w, f.Width(r.text))
	}
	return w
}

// columns returns how many columns, and rows per column, the rows need in
// a height of h.
func (l *legend) columns(h vg.Length) (cols, perCol int) {
	n := len(l.rows)
	if n == 0 {
		return 0, 0
	}
	_, _, pitch := legendMetrics()
	perCol = max(1, int(math.Floor(float64((h-2*legendInset+legendRowGap)/pitch))))
	cols = (n + perCol - 1) / perCol
	perCol = (n + cols - 1) / cols // balance the columns
	return cols, perCol
}

// width returns the width the legend needs, insets included, when it has
// a height of h.
func (l *legend) width(h vg.Length) vg.Length {
	cols, _ := l.columns(h)
	if cols == 0 {
		return 0
	}
	col := legendThumb + legendTextGap + l.textWidth()
	return vg.Length(cols)*col + vg.Length(cols-1)*legendColGap + 2*legendInset
}

// oneColumnPx is the height, in CSS pixels, of the legend's rows in one
// column, insets included.
func (l *legend) oneColumnPx() int {
	_, _, pitch := legendMetrics()
	h := 2*legendInset + vg.Length(len(l.rows))*pitch - legendRowGap
	return int(math.Ceil(float64(h / (vg.Inch / 96))))
}

// layout places the legend in area at its corner (panel legends at the top
// left), shortening texts that do not fit the width.
func (l *legend) layout(area vg.Rectangle) legendLayout {
	out := legendLayout{area: area}
	cols, perCol := l.columns(area.Max.Y - area.Min.Y)
	if cols == 0 {
		return out
	}
	textH, _, pitch := legendMetrics()
	colW := legendThumb + legendTextGap + l.textWidth()
	w := vg.Length(cols)*colW + vg.Length(cols-1)*legendColGap + 2*legendInset
	if avail := area.Max.X - area.Min.X; w > avail {
		colW = (avail - 2*legendInset - vg.Length(cols-1)*legendColGap) / vg.Length(cols)
		w = avail
	}
	h := 2*legendInset + vg.Length(perCol)*pitch - legendRowGap
	out.overflow = h > area.Max.Y-area.Min.Y+1e-6
	switch l.place {
	case legendBottomRight:
		out.frame = vg.Rectangle{Min: vg.Point{X: area.Max.X - w, Y: area.Min.Y}, Max: vg.Point{X: area.Max.X, Y: area.Min.Y + h}}
	case legendPanel:
		out.frame = vg.Rectangle{Min: vg.Point{X: area.Min.X, Y: area.Max.Y - h}, Max: vg.Point{X: area.Min.X + w, Y: area.Max.Y}}
	default:
		out.frame = vg.Rectangle{Min: vg.Point{X: area.Max.X - w, Y: area.Max.Y - h}, Max: area.Max}
	}
	f := legendFace()
	maxText := colW - legendThumb - legendTextGap
	for i, r := range l.rows {
		c, k := i/perCol, i%perCol
		x := out.frame.Min.X + legendInset + vg.Length(c)*(colW+legendColGap)
		top := out.frame.Max.Y - legendInset - vg.Length(k)*pitch
		out.rows = append(out.rows, vg.Rectangle{Min: vg.Point{X: x, Y: top - textH}, Max: vg.Point{X: x + colW, Y: top}})
		txt := r.text
		if f.Width(txt) > maxText {
			txt = ellipsize(f, txt, maxText)
			out.truncated++
		}
		out.texts = append(out.texts, txt)
	}
	return out
}

// ellipsize shortens s to its longest prefix that, followed by "…", is at
// most w wide.
func ellipsize(f *font.Face, s string, w vg.Length) string {
	rs := []rune(s)
	for n := len(rs) - 1; n > 0; n-- {
		if t := string(rs[:n]) + "…"; f.Width(t) <= w {
			return t
		}
	}
	return "…"
}

// draw lays the legend out in area and draws it; an in-plot legend gets a
// translucent white frame, so that curves under it stay visible but do not
// cross its text.
func (l *legend) draw(c draw.Canvas, area vg.Rectangle) {
	if l == nil || len(l.rows) == 0 {
		return
	}
	lay := l.layout(area)
	l.drawn = lay
	if area.Max.X-area.Min.X < legendThumb+2*legendInset+legendTextGap+minLegendText {
		l.drawn.hidden = true // no room for a word: nothing rather than "…"s
		return
	}
	if l.place != legendPanel {
		c.FillPolygon(color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xd8}, rectPts(lay.frame))
		c.StrokeLines(draw.LineStyle{Color: color.Gray{Y: 0xc8}, Width: vg.Points(0.5)},
			append(rectPts(lay.frame), lay.frame.Min))
	}
	f := legendFace()
	_, descent, _ := legendMetrics()
	c.SetColor(legendTextGray)
	for i, r := range l.rows {
		box := lay.rows[i]
		x := box.Min.X
		if len(r.thumbs) > 0 {
			th := &draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{Min: box.Min, Max: vg.Point{X: x + legendThumb, Y: box.Max.Y}}}
			for _, t := range r.thumbs {
				t.Thumbnail(th)
			}
			x += legendThumb + legendTextGap
		}
		c.SetColor(legendTextGray)
		c.FillString(*f, vg.Point{X: x, Y: box.Min.Y + descent}, lay.texts[i])
	}
}

// inPlotArea is the room of a legend drawn in the data area d.
func inPlotArea(d vg.Rectangle) vg.Rectangle {
	return vg.Rectangle{
		Min: vg.Point{X: d.Min.X + legendMargin, Y: d.Min.Y + legendMargin},
		Max: vg.Point{X: d.Max.X - legendMargin, Y: d.Max.Y - legendMargin},
	}
}
