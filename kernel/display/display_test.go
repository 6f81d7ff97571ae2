package display

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nb"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/plot"
)

type rich struct{}

func (rich) HTML() string     { return "<b>r</b>" }
func (rich) Markdown() string { return "*r*" }
func (rich) SVG() string      { return "<svg/>" }
func (rich) JSON() any        { return map[string]any{"a": 1} }
func (rich) Text() string     { return "rich!" }

type broken struct{}

func (broken) HTML() string { panic("no html today") }

func TestBundleMethods(t *testing.T) {
	d, _ := Bundle(rich{})
	want := map[string]any{"text/html": "<b>r</b>", "text/markdown": "*r*", "image/svg+xml": "<svg/>", "text/plain": "rich!"}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("%s: got %v, want %v", k, d[k], v)
		}
	}
	if j, ok := d["application/json"].(map[string]any); !ok || j["a"] != 1 {
		t.Errorf("json: got %v", d["application/json"])
	}
	d, _ = Bundle(nb.HTML("<i>x</i>"))
	if d["text/html"] != "<i>x</i>" || d["text/plain"] != "<i>x</i>" {
		t.Errorf("nb.HTML: %v", d)
	}
	d, _ = Bundle(broken{})
	if s, _ := d["text/plain"].(string); !strings.Contains(s, "no html today") {
		t.Errorf("broken HTML method: %v", d)
	}
}

func decodePNG(t *testing.T, d map[string]any) image.Image {
	t.Helper()
	s, ok := d["image/png"].(string)
	if !ok {
		t.Fatalf("no image/png in %v", keys(d))
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestBundleImageAndPlot(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 3, 2))
	img.Set(2, 1, color.RGBA{R: 255, A: 255})
	d, md := Bundle(img)
	got := decodePNG(t, d)
	if got.Bounds().Dx() != 3 || got.Bounds().Dy() != 2 {
		t.Errorf("bounds %v", got.Bounds())
	}
	if r, _, _, _ := got.At(2, 1).RGBA(); r != 0xffff {
		t.Errorf("pixel lost: %v", got.At(2, 1))
	}
	if m, _ := md["image/png"].(map[string]any); m["width"] != 3 {
		t.Errorf("metadata %v", md)
	}
	p := plot.New()
	p.Title.Text = "t"
	d, _ = Bundle(p)
	if b := decodePNG(t, d).Bounds(); b.Dx() < 100 {
		t.Errorf("plot image too small: %v", b)
	}
}

func TestBundleMatrix(t *testing.T) {
	m := mat.NewDense(2, 3, []float64{1, 2, 3, 4, 5, 6.5})
	d, _ := Bundle(m)
	h, _ := d["text/html"].(string)
	if !strings.Contains(h, "Dense 2×3") || !strings.Contains(h, ">6.5</td>") || strings.Count(h, "<tr>") != 3 {
		t.Errorf("html:\n%s", h)
	}
	if s, _ := d["text/plain"].(string); !strings.Contains(s, "6.5") || !strings.Contains(s, "2×3") {
		t.Errorf("text: %q", s)
	}
	big := mat.NewDense(100, 50, nil)
	big.Set(99, 49, 7)
	h = MatrixHTML(big)
	if strings.Count(h, "<tr>") != maxRows+2 || !strings.Contains(h, ">7</td>") || !strings.Contains(h, "⋮") {
		t.Errorf("big matrix not elided as expected: %d rows", strings.Count(h, "<tr>"))
	}
}

func TestBundleText(t *testing.T) {
	type pt struct{ X, Y int }
	cases := []struct {
		v    any
		want string
	}{
		{nil, "<nil>"},
		{errors.New("boom"), "boom"},
		{"plain", "plain"},
		{pt{1, 2}, "{X:1 Y:2}"},
		{3.5, "3.5"},
		{[]int{1, 2}, "[1 2]"},
	}
	for _, c := range cases {
		if got := Text(c.v); got != c.want {
			t.Errorf("Text(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
	long := Text(strings.Repeat("é", MaxText))
	if !strings.Contains(long, "more bytes") || len(long) > MaxText+40 {
		t.Errorf("long text not cut: %d", len(long))
	}
}

type counted struct{ n *int }

func (c counted) HTML() string { *c.n++; return "<p>x</p>" }

func TestBundleWith(t *testing.T) {
	n := 0
	d, _ := BundleWith(counted{&n}, map[string]any{"text/html": "<p>given</p>", "image/png": []byte{}})
	if d["text/html"] != "<p>given</p>" || n != 0 {
		t.Errorf("given representation not used (%v, method called %d times)", d["text/html"], n)
	}
	if _, ok := d["image/png"]; ok {
		t.Error("empty PNG kept")
	}
	d, _ = Bundle(counted{&n})
	if d["text/html"] != "<p>x</p>" || n != 1 {
		t.Errorf("method not used: %v %d", d["text/html"], n)
	}
}
