// Package nbrun executes a Jupyter notebook headlessly with the kernel's
// engine (kernel/session): no Python, no ZeroMQ. Code cells run in order in
// one session; their outputs (streams, display_data with images,
// execute_result, errors) are written back in nbformat 4.5, as Jupyter would
// have, and the file is replaced atomically. It backs `gopeft run`.
package nbrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gopeft/gopeft/kernel/session"
)

// Options tune a run.
type Options struct {
	// CellTimeout interrupts a cell that runs longer (0: no limit).
	CellTimeout time.Duration
	// Log receives one progress line per code cell (nil: none).
	Log io.Writer
}

// CellError is the failure of one cell.
type CellError struct {
	Index     int    // position of the cell in the notebook, from 0
	FirstLine string // its first non-blank source line
	Err       *session.ExecError
}

func (e *CellError) Error() string {
	return fmt.Sprintf("cell %d (%s) failed: %s: %s", e.Index, e.FirstLine, e.Err.Name, e.Err.Value)
}

// Notebook is a parsed .ipynb. Cells keep every field they had; Run sets
// outputs, execution_count and id.
type Notebook struct {
	raw   map[string]any
	Cells []map[string]any
}

// Parse reads an nbformat 4 notebook.
func Parse(b []byte) (*Notebook, error) {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("nbrun: not a notebook: %w", err)
	}
	if v, _ := raw["nbformat"].(float64); v != 4 {
		return nil, fmt.Errorf("nbrun: nbformat %v is not supported (want 4)", raw["nbformat"])
	}
	cells, ok := raw["cells"].([]any)
	if !ok {
		return nil, errors.New("nbrun: notebook has no cells array")
	}
	nb := &Notebook{raw: raw}
	for i, c := range cells {
		m, ok := c.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("nbrun: cell %d is not an object", i)
		}
		nb.Cells = append(nb.Cells, m)
	}
	return nb, nil
}

// Source returns a cell's source text (a string or a list of lines).
func Source(cell map[string]any) string {
	switch s := cell["source"].(type) {
	case string:
		return s
	case []any:
		var b strings.Builder
		for _, l := range s {
			str, _ := l.(string)
			b.WriteString(str)
		}
		return b.String()
	}
	return ""
}

// Marshal returns the notebook as nbformat 4.5 JSON: every cell has an id.
func (nb *Notebook) Marshal() ([]byte, error) {
	seen := map[string]bool{}
	cells := make([]any, len(nb.Cells))
	for i, c := range nb.Cells {
		id, _ := c["id"].(string)
		if id == "" || seen[id] {
			sum := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s", i, Source(c))))
			id = hex.EncodeToString(sum[:4])
			c["id"] = id
		}
		seen[id] = true
		if c["cell_type"] == "code" {
			if _, ok := c["outputs"]; !ok {
				c["outputs"] = []any{}
			}
			if _, ok := c["execution_count"]; !ok {
				c["execution_count"] = nil
			}
		}
		if _, ok := c["metadata"]; !ok {
			c["metadata"] = map[string]any{}
		}
		cells[i] = c
	}
	nb.raw["cells"] = cells
	nb.raw["nbformat"] = 4
	if minor, _ := nb.raw["nbformat_minor"].(float64); minor < 5 {
		nb.raw["nbformat_minor"] = 5
	}
	md, _ := nb.raw["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		nb.raw["metadata"] = md
	}
	if _, ok := md["kernelspec"]; !ok {
		md["kernelspec"] = map[string]any{"name": "gopeft", "display_name": "Go (gopeft)", "language": "go"}
	}
	if _, ok := md["language_info"]; !ok {
		md["language_info"] = map[string]any{"name": "go", "file_extension": ".go", "mimetype": "text/x-go"}
	}
	b, err := json.MarshalIndent(nb.raw, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Run executes the code cells of nb in order in s, replacing their outputs.
// It stops at the first failing cell and returns a *CellError naming it;
// later cells keep no outputs.
func Run(ctx context.Context, s *session.Session, nb *Notebook, opt Options) error {
	col := &collector{displays: map[string][]map[string]any{}}
	count := 0
	for _, c := range nb.Cells {
		if c["cell_type"] != "code" {
			continue
		}
		c["outputs"] = []any{}
		c["execution_count"] = nil
	}
	for i, c := range nb.Cells {
		if c["cell_type"] != "code" {
			continue
		}
		src := Source(c)
		if strings.TrimSpace(src) == "" {
			continue
		}
		count++
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if opt.CellTimeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, opt.CellTimeout)
		}
		col.start()
		t0 := time.Now()
		res := s.Execute(cctx, src, count, col)
		cancel()
		outs := col.finish()
		if res.Data != nil {
			outs = append(outs, map[string]any{
				"output_type":     "execute_result",
				"execution_count": count,
				"data":            nbData(res.Data),
				"metadata":        orEmpty(res.Metadata),
			})
		}
		for _, p := range res.Payload {
			if p["source"] == "page" {
				if d, ok := p["data"].(map[string]any); ok {
					outs = append(outs, map[string]any{"output_type": "display_data", "data": nbData(d), "metadata": map[string]any{}})
				}
			}
		}
		if res.Error != nil {
			outs = append(outs, map[string]any{
				"output_type": "error",
				"ename":       res.Error.Name,
				"evalue":      res.Error.Value,
				"traceback":   res.Error.Traceback,
			})
		}
		c["outputs"] = outs
		c["execution_count"] = count
		if opt.Log != nil {
			status := "ok"
			if res.Error != nil {
				status = res.Error.Name
			}
			fmt.Fprintf(opt.Log, "cell %d [%d] %s (%s): %s\n", i, count, firstLine(src), time.Since(t0).Round(time.Millisecond), status)
		}
		if res.Error != nil {
			return &CellError{Index: i, FirstLine: firstLine(src), Err: res.Error}
		}
	}
	return nil
}

// RunFile executes the notebook at in and writes it, with outputs, to out
// (in itself when out is ""), atomically. The notebook is written even when
// a cell fails, so the error can be read in it.
func RunFile(ctx context.Context, in, out string, opt Options) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	nb, err := Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	s, err := session.New()
	if err != nil {
		return err
	}
	defer s.Close()
	runErr := Run(ctx, s, nb, opt)
	if out == "" {
		out = in
	}
	data, err := nb.Marshal()
	if err != nil {
		return err
	}
	if err := writeAtomic(out, data); err != nil {
		return err
	}
	return runErr
}

// writeAtomic writes data to path so that a reader never sees half a
// notebook: to a temporary file in the same directory, fsynced, then
// renamed over it. If path is a symbolic link (or a chain of them), the
// file it points to is replaced and the links are kept; an existing
// file's permission bits are kept, a new file gets 0644. On error the
// temporary file is removed.
func writeAtomic(path string, data []byte) (err error) {
	target, err := resolveLinks(path)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("nbrun: %s is not a regular file", target)
		}
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, "."+filepath.Base(target)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, target); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return nil
}

// resolveLinks returns the file that writing to path replaces: path, or
// the end of its chain of symbolic links (filepath.EvalSymlinks; a
// dangling link is followed by hand to the file it would create).
func resolveLinks(path string) (string, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real, nil
	}
	p := path
	for hops := 0; hops <= 40; hops++ {
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			// A new file, or the missing end of a chain: its directory
			// must exist, with its links resolved.
			dir, err := filepath.EvalSymlinks(filepath.Dir(p))
			if err != nil {
				return "", err
			}
			return filepath.Join(dir, filepath.Base(p)), nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(link) {
			dir, err := filepath.EvalSymlinks(filepath.Dir(p))
			if err != nil {
				return "", err
			}
			link = filepath.Join(dir, link)
		}
		p = link
	}
	return "", fmt.Errorf("nbrun: %s: too many symbolic links", path)
}

func firstLine(src string) string {
	for _, l := range strings.Split(src, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if len(l) > 60 {
				l = l[:60] + "…"
			}
			return l
		}
	}
	return ""
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// nbData copies a MIME bundle for nbformat (which stores text as strings
// and images as base64 strings, as display.Bundle already does).
func nbData(d map[string]any) map[string]any {
	out := make(map[string]any, len(d))
	for k, v := range d {
		if b, ok := v.([]byte); ok && strings.HasPrefix(k, "image/") && k != "image/svg+xml" {
			v = b // json encodes []byte as base64
		}
		out[k] = v
	}
	return out
}

// collector is the Publisher of a headless run: it gathers one cell's
// outputs the way a Jupyter front-end would show them.
type collector struct {
	mu        sync.Mutex
	outs      []map[string]any
	clearNext bool
	// displays maps a display id to the outputs showing it, across cells.
	displays map[string][]map[string]any
}

func (c *collector) start() {
	c.mu.Lock()
	c.outs = nil
	c.clearNext = false
	c.mu.Unlock()
}

func (c *collector) finish() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outs == nil {
		return []map[string]any{}
	}
	return c.outs
}

func (c *collector) add(o map[string]any) {
	if c.clearNext {
		c.outs = nil
		c.clearNext = false
	}
	c.outs = append(c.outs, o)
}

func (c *collector) Stream(name, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.clearNext && len(c.outs) > 0 {
		last := c.outs[len(c.outs)-1]
		if last["output_type"] == "stream" && last["name"] == name {
			last["text"] = last["text"].(string) + text
			return
		}
	}
	c.add(map[string]any{"output_type": "stream", "name": name, "text": text})
}

func (c *collector) Display(data, md map[string]any, id string, update bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if update {
		for _, o := range c.displays[id] {
			o["data"] = nbData(data)
			o["metadata"] = orEmpty(md)
		}
		return
	}
	o := map[string]any{"output_type": "display_data", "data": nbData(data), "metadata": orEmpty(md)}
	c.add(o)
	if id != "" {
		c.displays[id] = append(c.displays[id], o)
	}
}

func (c *collector) ClearOutput(wait bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wait {
		c.clearNext = true
		return
	}
	c.outs = nil
}

func (c *collector) Input(prompt string, password bool) (string, error) {
	return "", errors.New("gopeft run: cells cannot read standard input in a headless run")
}
