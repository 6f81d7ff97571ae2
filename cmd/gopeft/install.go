package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// kernelSpec is the content of kernel.json.
type kernelSpec struct {
	Argv          []string       `json:"argv"`
	DisplayName   string         `json:"display_name"`
	Language      string         `json:"language"`
	InterruptMode string         `json:"interrupt_mode"`
	Env           map[string]any `json:"env"`
	Metadata      map[string]any `json:"metadata"`
}

// installMain runs `gopeft install`.
func installMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gopeft install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.Bool("user", false, "install for the current user (the default): $JUPYTER_DATA_DIR or the user's Jupyter data directory")
	prefix := fs.String("prefix", "", "install under `DIR`/share/jupyter/kernels")
	sysPrefix := fs.Bool("sys-prefix", false, "install under the Python environment's prefix (virtualenv, conda, or python3's sys.prefix)")
	name := fs.String("name", "gopeft", "kernel name (directory and `jupyter --kernel NAME`)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	n := 0
	for _, set := range []bool{*user, *prefix != "", *sysPrefix} {
		if set {
			n++
		}
	}
	if n > 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gopeft install [--user | --prefix DIR | --sys-prefix] [--name NAME]")
		return 2
	}
	var dataDir string
	var err error
	switch {
	case *prefix != "":
		dataDir, err = filepath.Abs(filepath.Join(*prefix, "share", "jupyter"))
	case *sysPrefix:
		var p string
		if p, err = envPrefix(); err == nil {
			dataDir = filepath.Join(p, "share", "jupyter")
		}
	default:
		dataDir, err = userDataDir()
	}
	if err != nil {
		fmt.Fprintf(stderr, "gopeft install: %v\n", err)
		return 1
	}
	exe, err := executable()
	if err != nil {
		fmt.Fprintf(stderr, "gopeft install: %v\n", err)
		return 1
	}
	dir := filepath.Join(dataDir, "kernels", *name)
	if err := writeKernelSpec(dir, exe); err != nil {
		fmt.Fprintf(stderr, "gopeft install: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "installed kernelspec %s in %s\n", *name, dir)
	return 0
}

func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find the gopeft binary: %w", err)
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return filepath.Abs(exe)
}

// userDataDir is Jupyter's user data directory: $JUPYTER_DATA_DIR, else
// ~/Library/Jupyter (macOS), %APPDATA%\jupyter (Windows) or
// $XDG_DATA_HOME/jupyter (default ~/.local/share/jupyter).
func userDataDir() (string, error) {
	if d := os.Getenv("JUPYTER_DATA_DIR"); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	switch runtime.GOOS {
	case "darwin":
		return filepath.Join(home, "Library", "Jupyter"), nil
	case "windows":
		if a := os.Getenv("APPDATA"); a != "" {
			return filepath.Join(a, "jupyter"), nil
		}
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "jupyter"), nil
	}
	return filepath.Join(home, ".local", "share", "jupyter"), nil
}

// envPrefix is the prefix of the active Python environment.
func envPrefix() (string, error) {
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := os.Getenv(v); p != "" {
			return p, nil
		}
	}
	for _, py := range []string{"python3", "python"} {
		out, err := exec.Command(py, "-c", "import sys; print(sys.prefix)").Output()
		if err == nil {
			if p := strings.TrimSpace(string(out)); p != "" {
				return p, nil
			}
		}
	}
	return "", errors.New("--sys-prefix: no virtualenv or conda environment is active and python3 was not found")
}

// writeKernelSpec writes kernel.json and the logos into dir.
func writeKernelSpec(dir, exe string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	spec := kernelSpec{
		Argv:          []string{exe, "kernel", "-f", "{connection_file}"},
		DisplayName:   "Go (gopeft)",
		Language:      "go",
		InterruptMode: "message",
		Env:           map[string]any{},
		Metadata:      map[string]any{},
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "logo-svg.svg"), []byte(logoSVG), 0o644); err != nil {
		return err
	}
	for _, size := range []int{32, 64} {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("logo-%dx%d.png", size, size)))
		if err != nil {
			return err
		}
		err = png.Encode(f, drawLogo(size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// The logo is LoRA's picture on Go's blue: a tall bar B (d×r) and a wide bar
// A (r×k) whose product fills the square ΔW = B·A. Coordinates are on a
// 64×64 grid; the SVG and the PNGs are drawn from the same shapes.
type logoShape struct {
	x0, y0, x1, y1, radius float64
	c                      color.NRGBA
}

var logoShapes = []logoShape{
	{0, 0, 64, 64, 12, color.NRGBA{0x00, 0xAD, 0xD8, 0xFF}},  // background, Go blue
	{8, 8, 18, 56, 2, color.NRGBA{0xFF, 0xFF, 0xFF, 0xFF}},   // B: tall, d×r
	{24, 8, 56, 18, 2, color.NRGBA{0xFF, 0xFF, 0xFF, 0xFF}},  // A: wide, r×k
	{24, 24, 56, 56, 3, color.NRGBA{0xFF, 0xFF, 0xFF, 0x8C}}, // ΔW = B·A
	{24, 24, 56, 27, 0, color.NRGBA{0xCE, 0x30, 0x62, 0xFF}}, // a low-rank stripe
}

var logoSVG = func() string {
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">` + "\n")
	for _, s := range logoShapes {
		fmt.Fprintf(&b, `  <rect x="%g" y="%g" width="%g" height="%g" rx="%g" fill="#%02X%02X%02X" fill-opacity="%.3f"/>`+"\n",
			s.x0, s.y0, s.x1-s.x0, s.y1-s.y0, s.radius, s.c.R, s.c.G, s.c.B, float64(s.c.A)/255)
	}
	b.WriteString("</svg>\n")
	return b.String()
}()

// drawLogo rasterizes the logo at size×size with 4×4 supersampling.
func drawLogo(size int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	const ss = 4
	scale := 64 / float64(size)
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			var r, g, b, a float64 // premultiplied accumulation over subsamples
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/ss) * scale
					y := (float64(py) + (float64(sy)+0.5)/ss) * scale
					var cr, cg, cb, ca float64
					for _, s := range logoShapes {
						if !s.contains(x, y) {
							continue
						}
						sa := float64(s.c.A) / 255
						cr = float64(s.c.R)/255*sa + cr*(1-sa)
						cg = float64(s.c.G)/255*sa + cg*(1-sa)
						cb = float64(s.c.B)/255*sa + cb*(1-sa)
						ca = sa + ca*(1-sa)
					}
					r, g, b, a = r+cr, g+cg, b+cb, a+ca
				}
			}
			n := float64(ss * ss)
			r, g, b, a = r/n, g/n, b/n, a/n
			if a > 0 {
				img.SetNRGBA(px, py, color.NRGBA{uint8(r/a*255 + 0.5), uint8(g/a*255 + 0.5), uint8(b/a*255 + 0.5), uint8(a*255 + 0.5)})
			}
		}
	}
	return img
}

func (s logoShape) contains(x, y float64) bool {
	if x < s.x0 || x > s.x1 || y < s.y0 || y > s.y1 {
		return false
	}
	r := s.radius
	cx := min(max(x, s.x0+r), s.x1-r)
	cy := min(max(y, s.y0+r), s.y1-r)
	dx, dy := x-cx, y-cy
	return dx*dx+dy*dy <= r*r
}
