// Package display turns Go values into Jupyter MIME bundles, following the
// contract of package nb:
//
//   - a value shows richly when it has any of the methods PNG() []byte,
//     SVG() string, HTML() string, Markdown() string, JSON() any or
//     Text() string (the last replaces text/plain);
//   - an image.Image shows as a PNG, a gonum *plot.Plot as a PNG, a gonum
//     mat.Matrix as an HTML table, an error as its message;
//   - everything has text/plain.
//
// The kernel (kernel/session) and `gopeft run` both use Bundle, for final
// expressions and for nb.Display.
//
// Values of types declared in a notebook cell are interpreted by yaegi: when
// passed to compiled code as an `any`, they do not satisfy compiled
// interfaces, so their methods are not seen here. Such values show as text;
// to show them richly, call the method yourself and wrap the result:
// nb.Display(nb.HTML(v.HTML())), or return nb.HTML(…) as the cell's value.
package display

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"html"
	"image"
	"image/png"
	"reflect"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// The structural interfaces of nb's contract.
type (
	pnger      interface{ PNG() []byte }
	svger      interface{ SVG() string }
	htmler     interface{ HTML() string }
	markdowner interface{ Markdown() string }
	jsoner     interface{ JSON() any }
	texter     interface{ Text() string }
	// A value whose PNG has more pixels than it should take on screen
	// (viz charts render at 2×) gives its size in CSS pixels.
	displaySizer interface{ DisplaySize() (w, h int) }
)

// MaxText is the length beyond which text/plain is cut.
const MaxText = 8000

// Bundle returns the MIME bundle and metadata that show v. Image data are
// base64 strings, as Jupyter's JSON wants them.
func Bundle(v any) (data, metadata map[string]any) { return BundleWith(v, nil) }

// BundleWith is Bundle with some representations already computed, by MIME
// type (the kernel calls the methods of interpreted types in interpreted
// code, where they are visible, and passes the results here). image/png
// may be given as []byte. The methods for the given types are not called
// again.
func BundleWith(v any, have map[string]any) (data, metadata map[string]any) {
	data = map[string]any{}
	metadata = map[string]any{}
	for k, x := range have {
		if b, ok := x.([]byte); ok && k == "image/png" {
			if len(b) > 0 {
				addPNG(data, metadata, b, v)
			}
			continue
		}
		data[k] = x
	}
	has := func(k string) bool { _, ok := have[k]; return ok }
	defer func() {
		// A broken method must not take the kernel down: show the text.
		if r := recover(); r != nil {
			data = map[string]any{"text/plain": fmt.Sprintf("%s\n(display failed: %v)", safeText(v), r)}
			metadata = map[string]any{}
		}
	}()
	if x, ok := v.(pnger); ok && !has("image/png") {
		if b := x.PNG(); len(b) > 0 {
			addPNG(data, metadata, b, v)
		}
	}
	if x, ok := v.(svger); ok && !has("image/svg+xml") {
		if s := x.SVG(); s != "" {
			data["image/svg+xml"] = s
		}
	}
	if x, ok := v.(htmler); ok && !has("text/html") {
		data["text/html"] = x.HTML()
	}
	if x, ok := v.(markdowner); ok && !has("text/markdown") {
		data["text/markdown"] = x.Markdown()
	}
	if x, ok := v.(jsoner); ok && !has("application/json") {
		data["application/json"] = x.JSON()
	}
	if x, ok := v.(texter); ok && !has("text/plain") {
		data["text/plain"] = x.Text()
	}
	switch x := v.(type) {
	case *plot.Plot:
		if _, done := data["image/png"]; !done && x != nil {
			if b, err := plotPNG(x); err == nil {
				addPNG(data, metadata, b, v)
			}
		}
	case image.Image:
		if _, done := data["image/png"]; !done && x != nil {
			var buf bytes.Buffer
			if err := png.Encode(&buf, x); err == nil {
				addPNG(data, metadata, buf.Bytes(), v)
			}
		}
	case mat.Matrix:
		if _, done := data["text/html"]; !done && !isNil(x) {
			data["text/html"] = MatrixHTML(x)
		}
		if _, done := data["text/plain"]; !done && !isNil(x) {
			data["text/plain"] = matrixText(x)
		}
	}
	if _, ok := data["text/plain"]; !ok {
		data["text/plain"] = imageText(v, data, metadata)
	}
	return data, metadata
}

// imageText is the text/plain form of a value shown as an image: a short
// description (as Jupyter's "<Figure size …>"), not the dump of its pixels
// or fields that fmt would give; safeText for anything else.
func imageText(v any, data, metadata map[string]any) string {
	_, isPNG := data["image/png"]
	_, isSVG := data["image/svg+xml"]
	if !isPNG && !isSVG {
		return safeText(v)
	}
	if m, ok := metadata["image/png"].(map[string]any); ok {
		if w, ok := m["width"].(int); ok {
			if h, ok := m["height"].(int); ok {
				return fmt.Sprintf("<%T: image %d×%d>", v, w, h)
			}
		}
	}
	return fmt.Sprintf("<%T: image>", v)
}

func isNil(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// Text returns the text/plain form of v.
func Text(v any) string {
	d, _ := Bundle(v)
	s, _ := d["text/plain"].(string)
	return s
}

// safeText formats v for text/plain: errors by their message, structs with
// field names, strings as they are, long output cut at MaxText.
func safeText(v any) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = fmt.Sprintf("%T (cannot be printed: %v)", v, r)
		}
	}()
	switch x := v.(type) {
	case nil:
		return "<nil>"
	case error:
		s = x.Error()
	case string:
		s = x
	case fmt.Stringer:
		s = x.String()
	default:
		s = fmt.Sprintf("%+v", v)
	}
	if len(s) > MaxText {
		cut := MaxText
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + fmt.Sprintf("… (%d more bytes)", len(s)-cut)
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// addPNG adds a PNG to the bundle, with the width and height at which
// the front-end should show it, in CSS pixels: the value's DisplaySize()
// when it has one; else the PNG's pixel size scaled by its pHYs density
// (96 dots per inch is one pixel per CSS pixel); else its pixel size.
func addPNG(data, metadata map[string]any, b []byte, v any) {
	data["image/png"] = base64.StdEncoding.EncodeToString(b)
	if ds, ok := v.(displaySizer); ok && !isNil(v) {
		if w, h := ds.DisplaySize(); w > 0 && h > 0 {
			metadata["image/png"] = map[string]any{"width": w, "height": h}
			return
		}
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return
	}
	w, h := cfg.Width, cfg.Height
	if dpiX, dpiY, ok := pngDPI(b); ok {
		w = int(float64(w)*96/dpiX + 0.5)
		h = int(float64(h)*96/dpiY + 0.5)
	}
	metadata["image/png"] = map[string]any{"width": w, "height": h}
}

// pngDPI reads the pixel density of a PNG's pHYs chunk, when it has one in
// pixels per metre, in dots per inch.
func pngDPI(b []byte) (x, y float64, ok bool) {
	const sig = "\x89PNG\r\n\x1a\n"
	if len(b) < len(sig) || string(b[:len(sig)]) != sig {
		return 0, 0, false
	}
	for p := len(sig); p+8 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[p:]))
		typ := string(b[p+4 : p+8])
		if n < 0 || p+8+n > len(b) || typ == "IDAT" || typ == "IEND" {
			return 0, 0, false
		}
		if typ == "pHYs" && n == 9 {
			d := b[p+8 : p+17]
			px, py := binary.BigEndian.Uint32(d[0:]), binary.BigEndian.Uint32(d[4:])
			if d[8] != 1 || px == 0 || py == 0 { // unit 1: metre
				return 0, 0, false
			}
			return float64(px) * 0.0254, float64(py) * 0.0254, true
		}
		p += 8 + n + 4 // length, type, data, CRC
	}
	return 0, 0, false
}

// PlotSize is the size at which a bare *plot.Plot is drawn.
var PlotSize = struct{ W, H vg.Length }{W: 6 * vg.Inch, H: 4 * vg.Inch}

func plotPNG(p *plot.Plot) ([]byte, error) {
	w, err := p.WriterTo(PlotSize.W, PlotSize.H, "png")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Matrix tables show at most this many rows and columns; the middle of a
// larger matrix is elided.
const (
	maxRows = 24
	maxCols = 12
)

// span lists the indices shown out of n, with -1 where the elision goes.
func span(n, max int) []int {
	var idx []int
	if n <= max {
		for i := 0; i < n; i++ {
			idx = append(idx, i)
		}
		return idx
	}
	head := max / 2
	for i := 0; i < head; i++ {
		idx = append(idx, i)
	}
	idx = append(idx, -1)
	for i := n - (max - head); i < n; i++ {
		idx = append(idx, i)
	}
	return idx
}

// MatrixHTML renders m as an HTML table with its shape as caption.
func MatrixHTML(m mat.Matrix) string {
	r, c := m.Dims()
	var b strings.Builder
	fmt.Fprintf(&b, "<table class=\"gopeft-matrix\" style=\"font-family:monospace\"><caption>%s %d×%d</caption>\n", html.EscapeString(typeName(m)), r, c)
	cols := span(c, maxCols)
	b.WriteString("<tr><th></th>")
	for _, j := range cols {
		if j < 0 {
			b.WriteString("<th>…</th>")
			continue
		}
		fmt.Fprintf(&b, "<th>%d</th>", j)
	}
	b.WriteString("</tr>\n")
	for _, i := range span(r, maxRows) {
		if i < 0 {
			b.WriteString("<tr><th>⋮</th>")
			for range cols {
				b.WriteString("<td>⋮</td>")
			}
			b.WriteString("</tr>\n")
			continue
		}
		fmt.Fprintf(&b, "<tr><th>%d</th>", i)
		for _, j := range cols {
			if j < 0 {
				b.WriteString("<td>…</td>")
				continue
			}
			fmt.Fprintf(&b, "<td style=\"text-align:right\">%s</td>", formatFloat(m.At(i, j)))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>")
	return b.String()
}

func typeName(v any) string { return strings.TrimPrefix(fmt.Sprintf("%T", v), "*") }

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', 5, 64) }

// matrixText is gonum's formatting of m, elided like the table.
func matrixText(m mat.Matrix) string {
	r, c := m.Dims()
	opts := []mat.FormatOption{mat.Squeeze()}
	if r > maxRows || c > maxRows {
		opts = append(opts, mat.Excerpt(4))
	}
	return fmt.Sprintf("%s %d×%d\n%.5g", typeName(m), r, c, mat.Formatted(m, opts...))
}
