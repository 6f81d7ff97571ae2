package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNotebooksUpToDate fails when a committed notebook is not what its
// source gives: edit notebooks/src/*.md, then run go run ./scripts/mknb.
func TestNotebooksUpToDate(t *testing.T) {
	srcs, err := filepath.Glob("../../notebooks/src/*.md")
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no notebook sources: %v", err)
	}
	for _, src := range srcs {
		text, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(src), ".md")
		want, err := build(name, string(text))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := os.ReadFile(filepath.Join("../../notebooks", name+".ipynb"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("notebooks/%s.ipynb differs from %s: run go run ./scripts/mknb", name, src)
		}
	}
}

// TestBuild checks the cell split, the clean code cells and the metadata
// that Jupyter and gopeft run need.
func TestBuild(t *testing.T) {
	src := "# Title\n\nprose\n\n```go\nx := 1\n\nx\n```\nmore\n<!-- cell -->\nsplit\n```go\nfmt.Println(x)\n```\n"
	out, err := build("07-demo", src)
	if err != nil {
		t.Fatal(err)
	}
	var nb struct {
		Cells []struct {
			CellType       string          `json:"cell_type"`
			ID             string          `json:"id"`
			Source         []string        `json:"source"`
			Outputs        []any           `json:"outputs"`
			ExecutionCount json.RawMessage `json:"execution_count"`
		} `json:"cells"`
		Metadata struct {
			Kernelspec   map[string]string `json:"kernelspec"`
			LanguageInfo map[string]string `json:"language_info"`
		} `json:"metadata"`
		Nbformat      int `json:"nbformat"`
		NbformatMinor int `json:"nbformat_minor"`
	}
	if err := json.Unmarshal(out, &nb); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if nb.Nbformat != 4 || nb.NbformatMinor != 5 {
		t.Errorf("nbformat %d.%d, want 4.5", nb.Nbformat, nb.NbformatMinor)
	}
	if nb.Metadata.Kernelspec["name"] != "gopeft" || nb.Metadata.LanguageInfo["name"] != "go" {
		t.Errorf("metadata %+v", nb.Metadata)
	}
	kinds := []string{"markdown", "code", "markdown", "markdown", "code"}
	if len(nb.Cells) != len(kinds) {
		t.Fatalf("%d cells, want %d: %s", len(nb.Cells), len(kinds), out)
	}
	ids := map[string]bool{}
	for i, c := range nb.Cells {
		if c.CellType != kinds[i] {
			t.Errorf("cell %d is %s, want %s", i, c.CellType, kinds[i])
		}
		if ids[c.ID] || !strings.HasPrefix(c.ID, "demo-") {
			t.Errorf("cell %d id %q: want unique, prefixed demo-", i, c.ID)
		}
		ids[c.ID] = true
		if c.CellType == "code" && (c.Outputs == nil || len(c.Outputs) != 0 || string(c.ExecutionCount) != "null") {
			t.Errorf("code cell %d not clean: outputs %v, execution_count %s", i, c.Outputs, c.ExecutionCount)
		}
	}
	if got := strings.Join(nb.Cells[1].Source, ""); got != "x := 1\n\nx" {
		t.Errorf("code cell source %q", got)
	}
	if _, err := build("bad", "```go\nx := 1\n"); err == nil {
		t.Error("an unclosed code cell is not an error")
	}
}
