package display

import (
	"image"
	"strings"
	"testing"
)

// An image's text/plain is a short description, not a dump of its pixels.
func TestImageTextIsShort(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 40, 30))
	d, _ := Bundle(img)
	if _, ok := d["image/png"]; !ok {
		t.Fatal("no image/png")
	}
	s, _ := d["text/plain"].(string)
	if len(s) > 80 || !strings.Contains(s, "image") {
		t.Fatalf("text/plain = %q (%d bytes), want a short description", s, len(s))
	}
}
