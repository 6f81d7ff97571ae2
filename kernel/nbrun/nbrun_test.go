package nbrun

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func copyNotebook(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readNotebook(t *testing.T, p string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var nb map[string]any
	if err := json.Unmarshal(b, &nb); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	return nb
}

func outputs(cell any) []map[string]any {
	var outs []map[string]any
	for _, o := range cell.(map[string]any)["outputs"].([]any) {
		outs = append(outs, o.(map[string]any))
	}
	return outs
}

func TestRunSmallNotebook(t *testing.T) {
	in := copyNotebook(t, "small.ipynb")
	out := filepath.Join(t.TempDir(), "out.ipynb")
	if err := RunFile(context.Background(), in, out, Options{}); err != nil {
		t.Fatal(err)
	}
	nb := readNotebook(t, out)
	if nb["nbformat"].(float64) != 4 || nb["nbformat_minor"].(float64) != 5 {
		t.Errorf("nbformat %v.%v", nb["nbformat"], nb["nbformat_minor"])
	}
	cells := nb["cells"].([]any)
	ids := map[string]bool{}
	for i, c := range cells {
		id, _ := c.(map[string]any)["id"].(string)
		if id == "" || ids[id] {
			t.Errorf("cell %d: id %q missing or repeated", i, id)
		}
		ids[id] = true
	}
	// Cell 1: stream then a PNG display of the 4×3 image.
	o := outputs(cells[1])
	if len(o) != 2 || o[0]["text"] != "drawing\n" || o[1]["output_type"] != "display_data" {
		t.Fatalf("cell 1 outputs: %v", o)
	}
	b, err := base64.StdEncoding.DecodeString(o[1]["data"].(map[string]any)["image/png"].(string))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil || img.Bounds().Dx() != 4 || img.Bounds().Dy() != 3 {
		t.Errorf("image: %v %v", err, img)
	}
	if r, _, _, _ := img.At(1, 1).RGBA(); r != 0xffff {
		t.Errorf("pixel (1,1) = %v", img.At(1, 1))
	}
	// Cell 2: the display was updated in place; streams merged per name.
	o = outputs(cells[2])
	if len(o) != 3 {
		t.Fatalf("cell 2 outputs: %v", o)
	}
	if md := o[0]["data"].(map[string]any)["text/markdown"]; md != "step 3" {
		t.Errorf("updated display shows %v", md)
	}
	if o[1]["text"] != "a\nb\n" || o[2]["name"] != "stderr" || o[2]["text"] != "warn\n" {
		t.Errorf("streams: %v %v", o[1], o[2])
	}
	// Cell 3 is empty: not executed, no outputs, stale ones removed.
	c3 := cells[3].(map[string]any)
	if len(outputs(c3)) != 0 || c3["execution_count"] != nil {
		t.Errorf("empty cell: %v", c3)
	}
	// Cell 4: execute_result with an HTML table.
	o = outputs(cells[4])
	if len(o) != 1 || o[0]["output_type"] != "execute_result" || o[0]["execution_count"].(float64) != 3 {
		t.Fatalf("cell 4: %v", o)
	}
	if h, _ := o[0]["data"].(map[string]any)["text/html"].(string); !strings.Contains(h, "<table") {
		t.Errorf("matrix html: %q", h)
	}
	o = outputs(cells[6])
	if o[0]["data"].(map[string]any)["text/plain"] != "55" {
		t.Errorf("last cell: %v", o)
	}
	if _, ok := cells[5].(map[string]any)["outputs"]; ok {
		t.Error("raw cell got outputs")
	}
	// The input file is untouched when -o is given.
	if in := readNotebook(t, in); in["nbformat_minor"].(float64) != 4 {
		t.Error("input notebook was modified")
	}
}

func TestRunFailingNotebook(t *testing.T) {
	in := copyNotebook(t, "failing.ipynb")
	var log bytes.Buffer
	err := RunFile(context.Background(), in, "", Options{Log: &log})
	var ce *CellError
	if !errors.As(err, &ce) {
		t.Fatalf("want a CellError, got %v", err)
	}
	if ce.Index != 1 || ce.FirstLine != "// second code cell" || ce.Err.Name != "CompileError" {
		t.Errorf("error: %+v", ce)
	}
	if !strings.Contains(err.Error(), "cell 1 (// second code cell)") {
		t.Errorf("message %q", err)
	}
	nb := readNotebook(t, in) // written in place, with the error
	cells := nb["cells"].([]any)
	if o := outputs(cells[1]); len(o) != 1 || o[0]["output_type"] != "error" {
		t.Errorf("failing cell outputs: %v", o)
	}
	if o := outputs(cells[2]); len(o) != 0 {
		t.Errorf("cell after the failure ran: %v", o)
	}
	if !strings.Contains(log.String(), "cell 0 [1] x := 1") {
		t.Errorf("log: %q", log.String())
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(filepath.Dir(in))
	if len(ents) != 1 {
		t.Errorf("directory has %d entries", len(ents))
	}
}

func TestRunTimeout(t *testing.T) {
	p := filepath.Join(t.TempDir(), "loop.ipynb")
	os.WriteFile(p, []byte(`{"nbformat":4,"nbformat_minor":5,"metadata":{},"cells":[{"cell_type":"code","id":"a","metadata":{},"source":"for {}","outputs":[],"execution_count":null}]}`), 0o600)
	t0 := time.Now()
	err := RunFile(context.Background(), p, "", Options{CellTimeout: 200 * time.Millisecond})
	var ce *CellError
	if !errors.As(err, &ce) || ce.Err.Name != "Interrupted" {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{`{`, `{"nbformat":3,"cells":[]}`, `{"nbformat":4}`, `{"nbformat":4,"cells":[1]}`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%s) accepted", in)
		}
	}
}

// TestRunSymlinkedNotebook: running a notebook through a symbolic link
// (relative, from another directory; absolute; and -o naming a dangling
// link) writes the file the link points to, atomically, keeps the link and
// the target's permission bits, and leaves no temporary file.
func TestRunSymlinkedNotebook(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "testdata", "small.ipynb"))
	if err != nil {
		t.Fatal(err)
	}
	// executed reports whether the notebook at p holds cell 6's result.
	executed := func(p string) bool {
		o := outputs(readNotebook(t, p)["cells"].([]any)[6])
		return len(o) == 1 && o[0]["data"].(map[string]any)["text/plain"] == "55"
	}
	noTemp := func(dirs ...string) {
		t.Helper()
		for _, d := range dirs {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("%s: left %s", d, e.Name())
				}
			}
		}
	}
	for _, c := range []struct {
		name string
		link func(root, target string) (linkPath, linkText string)
	}{
		{"relative link in another directory", func(root, target string) (string, string) {
			os.MkdirAll(filepath.Join(root, "b", "c"), 0o755)
			return filepath.Join(root, "b", "c", "link.ipynb"), filepath.Join("..", "..", "a", "nb.ipynb")
		}},
		{"absolute link", func(root, target string) (string, string) {
			return filepath.Join(root, "abs.ipynb"), target
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			target := filepath.Join(root, "a", "nb.ipynb")
			os.MkdirAll(filepath.Dir(target), 0o755)
			if err := os.WriteFile(target, src, 0o640); err != nil {
				t.Fatal(err)
			}
			os.Chmod(target, 0o640) // whatever the umask
			link, text := c.link(root, target)
			if err := os.Symlink(text, link); err != nil {
				t.Fatal(err)
			}
			if err := RunFile(context.Background(), link, "", Options{}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(link)
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
			}
			if got, _ := os.Readlink(link); got != text {
				t.Errorf("link now points to %q, want %q", got, text)
			}
			if !executed(target) {
				t.Error("the target was not updated")
			}
			if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
				t.Errorf("target mode %v, want 0640", fi.Mode().Perm())
			}
			noTemp(filepath.Dir(target), filepath.Dir(link))
		})
	}
	t.Run("output through a dangling link", func(t *testing.T) {
		root := t.TempDir()
		in := filepath.Join(root, "in.ipynb")
		os.WriteFile(in, src, 0o644)
		os.MkdirAll(filepath.Join(root, "out"), 0o755)
		link := filepath.Join(root, "latest.ipynb")
		os.Symlink(filepath.Join("out", "run1.ipynb"), link)
		if err := RunFile(context.Background(), in, link, Options{}); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced: %v", err)
		}
		if !executed(filepath.Join(root, "out", "run1.ipynb")) {
			t.Error("the link's target was not written")
		}
		noTemp(root, filepath.Join(root, "out"))
	})
}
