package viz

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// encodePNG's output decodes to the very pixels it was given.
func TestEncodePNGRoundTrip(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 37, 23))
	for y := 0; y < 23; y++ {
		for x := 0; x < 37; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 11), uint8(x*y + 3), 0xff})
		}
	}
	var buf bytes.Buffer
	if err := encodePNG(&buf, img); err != nil {
		t.Fatal(err)
	}
	got, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 23; y++ {
		for x := 0; x < 37; x++ {
			r1, g1, b1, _ := got.At(x, y).RGBA()
			r2, g2, b2, _ := img.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				t.Fatalf("pixel (%d,%d): got %v, want %v", x, y, got.At(x, y), img.At(x, y))
			}
		}
	}
}
