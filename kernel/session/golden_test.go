package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenRecorder writes what a cell publishes as a transcript: stdout as
// is, stderr lines prefixed with [stderr], displays as "[display id] text".
type goldenRecorder struct{ b strings.Builder }

func (g *goldenRecorder) Stream(name, text string) {
	if name == "stdout" {
		g.b.WriteString(text)
		return
	}
	for _, l := range strings.SplitAfter(text, "\n") {
		if l != "" {
			g.b.WriteString("[stderr] " + l)
		}
	}
}

func (g *goldenRecorder) Display(data, md map[string]any, id string, update bool) {
	kind := "display"
	if update {
		kind = "update"
	}
	if id != "" {
		kind += " " + id
	}
	t, _ := data["text/plain"].(string)
	g.b.WriteString("[" + kind + "] " + t + "\n")
}

func (g *goldenRecorder) ClearOutput(bool) { g.b.WriteString("[clear]\n") }

func (g *goldenRecorder) Input(string, bool) (string, error) { return "", nil }

// parseGolden splits a golden file into cells (separated by //--- lines)
// and its expected output and error blocks.
func parseGolden(src string) (cells []string, output, errLines []string) {
	var cur []string
	block := ""
	for _, l := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		switch {
		case l == "// Output:":
			block = "output"
			continue
		case l == "// Error:":
			block = "error"
			continue
		}
		switch block {
		case "output":
			output = append(output, strings.TrimPrefix(strings.TrimPrefix(l, "//"), " "))
		case "error":
			errLines = append(errLines, strings.TrimPrefix(strings.TrimPrefix(l, "//"), " "))
		default:
			if l == "//---" {
				cells = append(cells, strings.Join(cur, "\n"))
				cur = nil
				continue
			}
			cur = append(cur, l)
		}
	}
	cells = append(cells, strings.Join(cur, "\n"))
	return cells, output, errLines
}

// TestGolden runs kernel/testdata/*.gocell (Go cells, not Go files, hence
// not .go: gofmt would reject them): cells separated by //--- lines, run
// in one session, then `// Output:` (the transcript of streams, displays
// and shown values) and/or `// Error:` (first line "Name: Value" of the
// failing cell, then lines its traceback must contain).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("../testdata/*.gocell")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".gocell"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cells, wantOut, wantErr := parseGolden(string(b))
			s := newSession(t)
			rec := &goldenRecorder{}
			var failed *ExecError
			for i, c := range cells {
				res := s.Execute(context.Background(), c, i+1, rec)
				if res.Data != nil {
					txt, _ := res.Data["text/plain"].(string)
					rec.b.WriteString(txt + "\n")
				}
				if res.Error != nil {
					failed = res.Error
					break
				}
			}
			got := strings.TrimRight(rec.b.String(), "\n")
			if want := strings.Join(wantOut, "\n"); got != want {
				t.Errorf("output:\n--- got\n%s\n--- want\n%s", got, want)
			}
			switch {
			case failed == nil && len(wantErr) > 0:
				t.Errorf("no error, want %q", wantErr[0])
			case failed != nil && len(wantErr) == 0:
				t.Errorf("unexpected error %s: %s\n%s", failed.Name, failed.Value, strings.Join(failed.Traceback, "\n"))
			case failed != nil:
				head := failed.Name + ": " + failed.Value
				tb := strings.Join(failed.Traceback, "\n")
				if !strings.HasPrefix(head, wantErr[0]) {
					t.Errorf("error %q, want %q", head, wantErr[0])
				}
				for _, w := range wantErr[1:] {
					if !strings.Contains(tb, w) {
						t.Errorf("traceback lacks %q:\n%s", w, tb)
					}
				}
			}
		})
	}
}
