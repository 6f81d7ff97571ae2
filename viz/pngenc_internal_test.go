package viz

import (
	"bytes"
	"hash/adler32"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"testing"

	"github.com/gopeft/gopeft/peft"
)

// encodePNG's output decodes (image/png checks the CRCs and the zlib
// stream's Adler-32) to the very pixels it was given, in one stripe and in
// several, with stripes of unequal heights.
func TestEncodePNGRoundTrip(t *testing.T) {
	defer func(old int) { stripeBytes = old }(stripeBytes)
	stripeBytes = 1000 // a 37×23 image then has 4 stripes on 4 cores
	for _, stripes := range []int{1, 2, 3, 4} {
		img := image.NewRGBA(image.Rect(0, 0, 37, 23))
		for y := 0; y < 23; y++ {
			for x := 0; x < 37; x++ {
				img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 11), uint8(x*y + 3*stripes), 0xff})
			}
		}
		data, err := zlibStripes(img, stripes)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.WriteString("\x89PNG\r\n\x1a\n")
		ihdr := []byte{0, 0, 0, 37, 0, 0, 0, 23, 8, 2, 0, 0, 0}
		for _, c := range []struct {
			typ  string
			data []byte
		}{{"IHDR", ihdr}, {"IDAT", data}, {"IEND", nil}} {
			if err := writeChunk(&buf, c.typ, c.data); err != nil {
				t.Fatal(err)
			}
		}
		got, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("%d stripes: %v", stripes, err)
		}
		for y := 0; y < 23; y++ {
			for x := 0; x < 37; x++ {
				r1, g1, b1, _ := got.At(x, y).RGBA()
				r2, g2, b2, _ := img.At(x, y).RGBA()
				if r1 != r2 || g1 != g2 || b1 != b2 {
					t.Fatalf("%d stripes: pixel (%d,%d): got %v, want %v", stripes, x, y, got.At(x, y), img.At(x, y))
				}
			}
		}
	}
	// The whole encoder, with pHYs.
	img := image.NewRGBA(image.Rect(0, 0, 5, 3))
	var buf bytes.Buffer
	if err := encodePNG(&buf, img, 192); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&buf); err != nil {
		t.Fatal(err)
	}
}

// adler32Combine agrees with Adler-32 of the concatenation.
func TestAdler32Combine(t *testing.T) {
	a := bytes.Repeat([]byte("gopeft rank "), 9000) // > 65521 bytes
	b := []byte("LoRA, DoRA, AdaLoRA")
	if got, want := adler32Combine(adler32.Checksum(a), adler32.Checksum(b), len(b)), adler32.Checksum(append(a, b...)); got != want {
		t.Errorf("combine = %08x, want %08x", got, want)
	}
	if got, want := adler32Combine(adler32.Checksum(b), adler32.Checksum(a), len(a)), adler32.Checksum(append(append([]byte(nil), b...), a...)); got != want {
		t.Errorf("combine (long second) = %08x, want %08x", got, want)
	}
}

// BenchmarkEncodePNG encodes the 100×200 rank heat map's image (1920×2600)
// with image/png at its default and fastest levels and with encodePNG.
func BenchmarkEncodePNG(b *testing.B) {
	tr := &peft.RankTrace{}
	for i := 0; i < 100; i++ {
		tr.Modules = append(tr.Modules, "m")
		row := make([]int, 200)
		for j := range row {
			row[j] = max(0, 12-(j*(i%7+1))/150+(i*j)%3)
		}
		tr.Ranks = append(tr.Ranks, row)
	}
	for j := 0; j < 200; j++ {
		tr.Steps = append(tr.Steps, j+1)
	}
	c, err := RankHeatmap(RankOptions{}, tr)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := c.Render("png")
	if err != nil {
		b.Fatal(err)
	}
	src, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	img := image.NewRGBA(src.Bounds())
	draw.Draw(img, img.Bounds(), src, image.Point{}, draw.Src)
	for _, e := range []struct {
		name string
		enc  func(*bytes.Buffer) error
	}{
		{"image-png-default", func(w *bytes.Buffer) error { return png.Encode(w, img) }},
		{"image-png-bestspeed", func(w *bytes.Buffer) error {
			return (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(w, img)
		}},
		{"encodePNG", func(w *bytes.Buffer) error { return encodePNG(w, img, 192) }},
	} {
		b.Run(e.name, func(b *testing.B) {
			var buf bytes.Buffer
			defer reportCPU(b)()
			for b.Loop() {
				buf.Reset()
				if err := e.enc(&buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len())/1024, "KiB")
		})
	}
}
