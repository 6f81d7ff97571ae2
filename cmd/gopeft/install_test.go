package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestInstallUserHonoursJupyterDataDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("JUPYTER_DATA_DIR", dir)
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"install", "--user"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	checkSpec(t, filepath.Join(dir, "kernels", "gopeft"))
}

func TestInstallPrefix(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"install", "--prefix", dir, "--name", "gopeft-test"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	checkSpec(t, filepath.Join(dir, "share", "jupyter", "kernels", "gopeft-test"))
	if code := mainArgs([]string{"install", "--user", "--prefix", dir}, &out, &errb); code != 2 {
		t.Errorf("--user with --prefix: exit %d, want 2", code)
	}
}

func TestInstallSysPrefixUsesTheActiveEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VIRTUAL_ENV", dir)
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"install", "--sys-prefix"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	checkSpec(t, filepath.Join(dir, "share", "jupyter", "kernels", "gopeft"))
}

func checkSpec(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Argv          []string `json:"argv"`
		DisplayName   string   `json:"display_name"`
		Language      string   `json:"language"`
		InterruptMode string   `json:"interrupt_mode"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	exe, _ := executable()
	if len(spec.Argv) != 4 || spec.Argv[0] != exe || !filepath.IsAbs(spec.Argv[0]) ||
		strings.Join(spec.Argv[1:], " ") != "kernel -f {connection_file}" {
		t.Errorf("argv %q", spec.Argv)
	}
	if spec.DisplayName != "Go (gopeft)" || spec.Language != "go" || spec.InterruptMode != "message" {
		t.Errorf("spec %+v", spec)
	}
	for _, size := range []int{32, 64} {
		f, err := os.Open(filepath.Join(dir, "logo-"+itoa(size)+"x"+itoa(size)+".png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
			t.Errorf("logo %d is %v", size, b)
		}
		// Corners are transparent (rounded), the centre of B is white.
		if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
			t.Errorf("logo %d: corner alpha %d", size, a)
		}
		if r, g, b, _ := img.At(size*13/64, size/2).RGBA(); r>>8 != 255 || g>>8 != 255 || b>>8 != 255 {
			t.Errorf("logo %d: B bar not white", size)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "logo-svg.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{})); err != nil {
		t.Errorf("logo-svg.svg is not XML: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "gopeft ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	if code := mainArgs([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code := mainArgs([]string{"kernel"}, &out, &errb); code != 2 {
		t.Errorf("kernel without -f: exit %d", code)
	}
	if code := mainArgs([]string{"kernel", "-f", filepath.Join(t.TempDir(), "missing.json")}, &out, &errb); code != 1 {
		t.Errorf("kernel with a missing file: exit %d", code)
	}
}
