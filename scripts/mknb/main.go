// Command mknb writes the workshop notebooks (notebooks/NN-name.ipynb) from
// their readable sources (notebooks/src/NN-name.md), so that a lesson is
// edited as one Markdown file and committed as the notebook users open.
//
//	go run ./scripts/mknb           # rewrite every notebooks/*.ipynb from notebooks/src
//	go run ./scripts/mknb -check    # exit 1 if a notebook differs from its source
//
// A source is Markdown. Each fenced block opened by a line "```go" is a code
// cell; the prose between two code cells is one Markdown cell, and a line
// "<!-- cell -->" splits the prose into several. The notebooks are written
// clean: nbformat 4.5, no outputs, execution counts null, the gopeft kernelspec,
// and cell ids derived from the notebook's name and the cell's index, so that
// the same source always gives the same bytes.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	check := flag.Bool("check", false, "do not write; exit 1 if a notebook differs from its source")
	dir := flag.String("dir", "notebooks", "the notebooks directory (sources in DIR/src)")
	flag.Parse()
	srcs, err := filepath.Glob(filepath.Join(*dir, "src", "*.md"))
	if err != nil || len(srcs) == 0 {
		fmt.Fprintf(os.Stderr, "mknb: no sources in %s\n", filepath.Join(*dir, "src"))
		os.Exit(1)
	}
	stale := 0
	for _, src := range srcs {
		text, err := os.ReadFile(src)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mknb:", err)
			os.Exit(1)
		}
		name := strings.TrimSuffix(filepath.Base(src), ".md")
		out, err := build(name, string(text))
		if err != nil {
			fmt.Fprintf(os.Stderr, "mknb: %s: %v\n", src, err)
			os.Exit(1)
		}
		dst := filepath.Join(*dir, name+".ipynb")
		if *check {
			old, _ := os.ReadFile(dst)
			if !bytes.Equal(old, out) {
				fmt.Fprintf(os.Stderr, "mknb: %s is not what %s gives (run go run ./scripts/mknb)\n", dst, src)
				stale++
			}
			continue
		}
		if err := os.WriteFile(dst, out, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mknb:", err)
			os.Exit(1)
		}
	}
	if stale > 0 {
		os.Exit(1)
	}
}

// cell is one notebook cell: Markdown prose or Go code.
type cell struct {
	code   bool
	id     string
	source []string // lines, each but the last ending in "\n"
}

// MarshalJSON writes a code cell's null execution_count and empty outputs,
// which omitempty would drop.
func (c cell) MarshalJSON() ([]byte, error) {
	src := c.source
	if c.code {
		return json.Marshal(struct {
			CellType       string   `json:"cell_type"`
			ExecutionCount *int     `json:"execution_count"`
			ID             string   `json:"id"`
			Metadata       struct{} `json:"metadata"`
			Outputs        []any    `json:"outputs"`
			Source         []string `json:"source"`
		}{"code", nil, c.id, struct{}{}, []any{}, src})
	}
	return json.Marshal(struct {
		CellType string   `json:"cell_type"`
		ID       string   `json:"id"`
		Metadata struct{} `json:"metadata"`
		Source   []string `json:"source"`
	}{"markdown", c.id, struct{}{}, src})
}

type notebook struct {
	Cells    []cell `json:"cells"`
	Metadata struct {
		Kernelspec struct {
			DisplayName string `json:"display_name"`
			Language    string `json:"language"`
			Name        string `json:"name"`
		} `json:"kernelspec"`
		LanguageInfo struct {
			FileExtension string `json:"file_extension"`
			Mimetype      string `json:"mimetype"`
			Name          string `json:"name"`
		} `json:"language_info"`
	} `json:"metadata"`
	Nbformat      int `json:"nbformat"`
	NbformatMinor int `json:"nbformat_minor"`
}

// build turns the Markdown source of the notebook name into its .ipynb bytes.
func build(name, text string) ([]byte, error) {
	var nb notebook
	nb.Metadata.Kernelspec.DisplayName = "Go (gopeft)"
	nb.Metadata.Kernelspec.Language = "go"
	nb.Metadata.Kernelspec.Name = "gopeft"
	nb.Metadata.LanguageInfo.FileExtension = ".go"
	nb.Metadata.LanguageInfo.Mimetype = "text/x-go"
	nb.Metadata.LanguageInfo.Name = "go"
	nb.Nbformat, nb.NbformatMinor = 4, 5

	add := func(code bool, lines []string) {
		// Trim blank lines around the cell.
		for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
			lines = lines[1:]
		}
		for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) == 0 {
			return
		}
		c := cell{code: code, id: fmt.Sprintf("%s-%02d", idPrefix(name), len(nb.Cells)+1)}
		for i, l := range lines {
			if i < len(lines)-1 {
				l += "\n"
			}
			c.source = append(c.source, l)
		}
		nb.Cells = append(nb.Cells, c)
	}

	var cur []string
	inCode := false
	for i, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		switch {
		case !inCode && strings.TrimSpace(line) == "```go":
			add(false, cur)
			cur, inCode = nil, true
		case inCode && strings.TrimSpace(line) == "```":
			if len(cur) == 0 {
				return nil, fmt.Errorf("line %d: empty code cell", i+1)
			}
			add(true, cur)
			cur, inCode = nil, false
		case !inCode && strings.TrimSpace(line) == "<!-- cell -->":
			add(false, cur)
			cur = nil
		default:
			cur = append(cur, line)
		}
	}
	if inCode {
		return nil, fmt.Errorf("a code cell is not closed by ```")
	}
	add(false, cur)

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(nb); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// idPrefix is the notebook's name as a cell-id prefix: "01-lora-basics"
// gives "lora-basics".
func idPrefix(name string) string {
	if i := strings.IndexByte(name, '-'); i > 0 && i < len(name)-1 {
		return name[i+1:]
	}
	return name
}
