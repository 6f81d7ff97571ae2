package viz_test

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/viz"
)

var (
	update  = flag.Bool("update", false, "rewrite the golden images in testdata/ from the current code")
	gallery = flag.Bool("gallery", false, "write the gallery images of README.md to gallery/")
)

// charts are the examples' charts, with words their SVG must contain.
var charts = []struct {
	name  string
	build func() (*viz.Chart, error)
	words []string
}{
	{"spectrum", spectrumChart, []string{"blocks.0.attn.q", "singular values", "index k", "cumulative energy", "rank r = 4", "ΔW", "elbow"}},
	{"esd", esdChart, []string{"ESD of W (400×100)", "α =", "Marchenko–Pastur", "λ+", "density"}},
	{"rank", rankChart, []string{"AdaLoRA rank allocation", "rank per module", "blocks.0.q", "final rank", "step"}},
	{"final_ranks", finalRanksChart, []string{"final rank (step 2000)", "blocks.1.fc2", "rank"}},
	{"loss", lossChart, []string{"LoRA rank vs. full fine-tuning", "LoRA r=4 train (EMA 0.9)", "full FT eval", "step", "loss"}},
	{"subspace", subspaceChart, []string{"A (r=8) vs. A (r=64)", "subspace similarity", "top-i directions of A r=8", "principal angles", "angle (degrees)"}},
	{"grid", gridChart, []string{"update spectra, layer by layer", "blocks.5.attn.v", "ΔW layer 3"}},
	{"live", liveChart, []string{"live: LoRA r=8", "LoRA r=8 train", "LoRA r=8 eval"}},
}

func TestChartsRender(t *testing.T) {
	for _, c := range charts {
		t.Run(c.name, func(t *testing.T) {
			ch, err := c.build()
			if err != nil {
				t.Fatal(err)
			}
			b, err := ch.Render("png")
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("PNG does not decode: %v", err)
			}
			if got, want := img.Bounds().Size(), (image.Point{X: 2 * ch.Width, Y: 2 * ch.Height}); got != want {
				t.Errorf("PNG is %v, want %v (2× the %d×%d display size)", got, want, ch.Width, ch.Height)
			}
			svg := ch.SVG()
			texts, err := svgTexts(svg)
			if err != nil {
				t.Fatalf("SVG does not parse as XML: %v", err)
			}
			for _, w := range c.words {
				if !strings.Contains(texts, w) {
					t.Errorf("SVG text has no %q", w)
				}
			}
			if *gallery {
				if err := os.MkdirAll("gallery", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join("gallery", c.name+".png"), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// svgTexts parses s as XML and returns the text of its <text> elements,
// one per line.
func svgTexts(s string) (string, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	var b strings.Builder
	inText, root := false, ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			inText = tok.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				b.Write(tok)
				b.WriteByte('\n')
			}
		}
	}
	if root != "svg" {
		return "", fmt.Errorf("root element is <%s>, want <svg>", root)
	}
	return b.String(), nil
}

// Golden images: each chart rendered at Scale 1 must match
// testdata/<name>.png pixel by pixel within a tolerance: a pixel differs
// when a channel differs by more than 24 of 255 (antialiasing and float
// rounding on other CPUs), and at most 0.05 % of the pixels may differ (a
// changed word of a title is more).
// Refresh them with: go test ./viz -run TestGolden -update
func TestGolden(t *testing.T) {
	for _, c := range charts {
		t.Run(c.name, func(t *testing.T) {
			ch, err := c.build()
			if err != nil {
				t.Fatal(err)
			}
			ch.Scale = 1
			b, err := ch.Render("png")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.name+".png")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create the golden images with: go test ./viz -run TestGolden -update)", err)
			}
			got, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			wimg, err := png.Decode(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			n, total := diffPixels(got, wimg, goldenTol)
			if n < 0 {
				t.Fatalf("size %v, golden %v", got.Bounds(), wimg.Bounds())
			}
			if float64(n) > goldenShare*float64(total) {
				t.Errorf("%d of %d pixels differ from %s (max %.2g %%)", n, total, path, 100*goldenShare)
			}
		})
	}
}

// diffPixels counts pixels of a and b whose channels differ by more than
// tol (of 255); -1 if the sizes differ.
func diffPixels(a, b image.Image, tol uint32) (n, total int) {
	if a.Bounds() != b.Bounds() {
		return -1, 0
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			if absDiff(r1, r2) > tol<<8 || absDiff(g1, g2) > tol<<8 || absDiff(b1, b2) > tol<<8 || absDiff(a1, a2) > tol<<8 {
				n++
			}
		}
	}
	return n, r.Dx() * r.Dy()
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

const (
	goldenTol   = 24     // channel difference (of 255) that makes a pixel differ
	goldenShare = 0.0005 // share of pixels that may differ
)

// The golden comparison must catch a small real change: the spectrum chart
// with one word of its title changed differs from its golden image.
func TestGoldenDetectsChange(t *testing.T) {
	ch, err := spectrumChart()
	if err != nil {
		t.Fatal(err)
	}
	ch.Scale = 1
	ch.Title = "blocks.0.attn.k"
	want, err := os.ReadFile(filepath.Join("testdata", "spectrum.png"))
	if err != nil {
		t.Fatalf("%v (create the golden images with: go test ./viz -run TestGolden -update)", err)
	}
	a, err := png.Decode(bytes.NewReader(ch.PNG()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := png.Decode(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	n, total := diffPixels(a, b, goldenTol)
	if n < 0 {
		t.Fatalf("size %v, golden %v: the comparison cannot run", a.Bounds(), b.Bounds())
	}
	if float64(n) <= goldenShare*float64(total) {
		t.Errorf("a changed title differs in only %d of %d pixels: the tolerance hides it", n, total)
	}
	t.Logf("changed title: %d of %d pixels differ", n, total)
}
