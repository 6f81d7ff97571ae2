package display

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"testing"

	"github.com/gopeft/gopeft/viz"
)

// sized is a value whose 2× PNG should show at half its pixel size.
type sized struct{ png []byte }

func (s sized) PNG() []byte             { return s.png }
func (s sized) DisplaySize() (w, h int) { return 40, 30 }

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withPHYs inserts a pHYs chunk (pixels per metre) after the IHDR chunk.
func withPHYs(b []byte, ppm uint32) []byte {
	ihdrEnd := 8 + 8 + 13 + 4
	data := make([]byte, 9)
	binary.BigEndian.PutUint32(data[0:], ppm)
	binary.BigEndian.PutUint32(data[4:], ppm)
	data[8] = 1
	chunk := binary.BigEndian.AppendUint32(nil, 9)
	chunk = append(chunk, "pHYs"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := append([]byte{}, b[:ihdrEnd]...)
	out = append(out, chunk...)
	return append(out, b[ihdrEnd:]...)
}

func shownSize(t *testing.T, md map[string]any) (any, any) {
	t.Helper()
	m, ok := md["image/png"].(map[string]any)
	if !ok {
		t.Fatalf("no image/png metadata: %v", md)
	}
	return m["width"], m["height"]
}

// TestPNGDisplaySize: the width and height given to the front-end are CSS
// pixels: DisplaySize() when the value has it, else the PNG's pixels
// scaled by its pHYs density, else its pixels.
func TestPNGDisplaySize(t *testing.T) {
	b := pngOf(t, 80, 60)
	if _, md := Bundle(sized{b}); true {
		if w, h := shownSize(t, md); w != 40 || h != 30 {
			t.Errorf("DisplaySize value shows at %v×%v, want 40×30", w, h)
		}
	}
	// 192 dpi = 7559 pixels per metre: 2×.
	if _, md := BundleWith(struct{}{}, map[string]any{"image/png": withPHYs(b, 7559)}); true {
		if w, h := shownSize(t, md); w != 40 || h != 30 {
			t.Errorf("a 192 dpi PNG shows at %v×%v, want 40×30", w, h)
		}
		if _, _, ok := pngDPI(withPHYs(b, 7559)); !ok {
			t.Error("pHYs not read")
		}
	}
	if _, md := BundleWith(struct{}{}, map[string]any{"image/png": b}); true {
		if w, h := shownSize(t, md); w != 80 || h != 60 {
			t.Errorf("a PNG without pHYs shows at %v×%v, want its pixels 80×60", w, h)
		}
	}
	// A viz chart renders at 2× and shows at its DisplaySize.
	c, err := viz.SpectrumValues(viz.SpectrumOptions{}, nil, []float64{3, 2, 1})
	if err != nil {
		t.Fatal(err)
	}
	d, md := Bundle(c)
	px := decodePNG(t, d).Bounds()
	cw, ch := c.DisplaySize()
	w, h := shownSize(t, md)
	if w != cw || h != ch {
		t.Errorf("chart shows at %v×%v, want DisplaySize %d×%d", w, h, cw, ch)
	}
	if px.Dx() <= cw {
		t.Errorf("chart PNG %v pixels is not denser than its display size %d×%d", px, cw, ch)
	}
	// Without DisplaySize (e.g. the PNG bytes alone), its pHYs gives the same.
	_, md = BundleWith(struct{}{}, map[string]any{"image/png": c.PNG()})
	if w, h := shownSize(t, md); w != cw || h != ch {
		t.Errorf("chart PNG alone shows at %v×%v, want %d×%d from its pHYs", w, h, cw, ch)
	}
}
