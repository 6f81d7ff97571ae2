// Package nb is the contract between gopeft's libraries and a notebook
// front-end (the Jupyter kernel, or the headless runner `gopeft run`).
//
// It imports only the standard library, so any package can show rich output
// without importing the kernel:
//
//   - A value shows richly when it has any of these methods, which the kernel
//     looks for structurally: PNG() []byte, SVG() string, HTML() string,
//     Markdown() string, JSON() any, Text() string. An image.Image shows as
//     a PNG.
//   - Display, DisplayWithID and Update send a value to the front-end while a
//     cell runs; with an id, Update replaces the earlier output in place
//     (Jupyter's update_display_data), which live charts use.
//   - Context returns the running cell's context, cancelled when the user
//     interrupts the cell; compiled loops take it and stop promptly.
//
// Outside a front-end (plain `go run`, tests) Display and Update do nothing
// and Context returns context.Background().
package nb

import (
	"context"
	"sync"
)

// Frontend receives what a running cell displays. The kernel and the headless
// runner implement it; libraries never do.
type Frontend interface {
	// Display shows v. id is "" for a plain display; with update set, the
	// output earlier shown with the same id is replaced.
	Display(v any, id string, update bool)
	// ClearOutput clears the cell's output; with wait set, only when the next
	// output arrives.
	ClearOutput(wait bool)
	// Context is the running cell's context.
	Context() context.Context
}

var (
	mu       sync.RWMutex
	frontend Frontend
)

// SetFrontend installs f as the receiver of displays (nil removes it). It is
// called by the kernel and by `gopeft run`, not by user code.
func SetFrontend(f Frontend) {
	mu.Lock()
	frontend = f
	mu.Unlock()
}

func current() Frontend {
	mu.RLock()
	defer mu.RUnlock()
	return frontend
}

// Display shows v in the running cell's output.
func Display(v any) {
	if f := current(); f != nil {
		f.Display(v, "", false)
	}
}

// DisplayWithID shows v under id, so that Update(id, …) can replace it later.
func DisplayWithID(id string, v any) {
	if f := current(); f != nil {
		f.Display(v, id, false)
	}
}

// Update replaces the output shown earlier under id with v.
func Update(id string, v any) {
	if f := current(); f != nil {
		f.Display(v, id, true)
	}
}

// ClearOutput clears the running cell's output; with wait set, just before
// the next output arrives (no flicker).
func ClearOutput(wait bool) {
	if f := current(); f != nil {
		f.ClearOutput(wait)
	}
}

// Context returns the running cell's context: it is cancelled when the user
// interrupts the cell. Outside a front-end it is context.Background().
func Context() context.Context {
	if f := current(); f != nil {
		if ctx := f.Context(); ctx != nil {
			return ctx
		}
	}
	return context.Background()
}

// HTML is HTML text to show as text/html.
type HTML string

// HTML returns h as a string.
func (h HTML) HTML() string { return string(h) }

// Markdown is Markdown text to show as text/markdown.
type Markdown string

// Markdown returns m as a string.
func (m Markdown) Markdown() string { return string(m) }

// SVG is an SVG document to show as image/svg+xml.
type SVG string

// SVG returns s as a string.
func (s SVG) SVG() string { return string(s) }

// PNG is an encoded PNG image to show as image/png.
type PNG []byte

// PNG returns the encoded bytes.
func (p PNG) PNG() []byte { return []byte(p) }
