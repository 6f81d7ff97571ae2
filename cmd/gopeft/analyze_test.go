package main

import (
	"bytes"
	"encoding/csv"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft/ckpt"
)

// genPair writes a small F64 base and fine-tune whose update is nonzero on
// ⌈m/2⌉ × ⌈n/4⌉ entries of every weight, with rank 2.
func genPair(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	p1, p2, err := ckpt.GeneratePair(filepath.Join(dir, "base"), filepath.Join(dir, "tuned"),
		ckpt.GenConfig{Layers: 2, Hidden: 32, FFN: 64, DType: "F64", Shards: 2, Seed: 9},
		ckpt.UpdateConfig{Rank: 2, RowFrac: 0.5, ColFrac: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	return p1, p2
}

func TestAnalyzeOne(t *testing.T) {
	p1, _ := genPair(t)
	out := filepath.Join(t.TempDir(), "out.csv")
	pngOut := filepath.Join(t.TempDir(), "out.png")
	var stdout, stderr bytes.Buffer
	// The folder, with flags after it.
	code := mainArgs([]string{"analyze", filepath.Dir(p1), "-csv", out, "-png", pngOut}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	// summary, header, 14 weights, the skipped norms
	if len(lines) != 17 || !strings.Contains(lines[1], "MP out") || !strings.HasPrefix(lines[2], "model.layers.0.mlp.down_proj.weight") {
		t.Errorf("table:\n%s", stdout.String())
	}
	if !strings.Contains(lines[16], "skipped 4 tensors") {
		t.Errorf("last line %q, want the skipped norms", lines[16])
	}
	// One progress line per weight and a last one.
	prog := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(prog) != 15 || !strings.HasPrefix(prog[0], "[ 0/14]") || !strings.HasSuffix(prog[14], "done") {
		t.Errorf("progress on stderr:\n%s", stderr.String())
	}
	recs := readCSV(t, out)
	if len(recs) != 15 || recs[0][0] != "name" {
		t.Errorf("CSV: %d records, header %v", len(recs), recs[0])
	}
	f, err := os.Open(pngOut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("-png wrote no PNG: %v", err)
	}
}

func TestAnalyzePair(t *testing.T) {
	p1, p2 := genPair(t)
	out := filepath.Join(t.TempDir(), "pair.csv")
	var stdout, stderr bytes.Buffer
	code := mainArgs([]string{"analyze", "-q", "-top", "4", "-md", p1, p2, "-csv", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("-q printed progress: %s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "| tensor | dtype | shape |") || !strings.Contains(stdout.String(), "φ_k with k = 4") {
		t.Errorf("Markdown table:\n%s", stdout.String())
	}
	recs := readCSV(t, out)
	if len(recs) != 15 {
		t.Fatalf("CSV: %d records, want 15", len(recs))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, r := range recs[1:] {
		m, _ := strconv.Atoi(r[col["rows"]])
		n, _ := strconv.Atoi(r[col["cols"]])
		sp, _ := strconv.ParseFloat(r[col["sparsity"]], 64)
		want := 1 - math.Ceil(float64(m)/2)*math.Ceil(float64(n)/4)/float64(m*n)
		if sp != want || r[col["rank"]] != "2" || r[col["k"]] != "4" {
			t.Errorf("%s: sparsity %v rank %s k %s, want %v, 2, 4", r[0], sp, r[col["rank"]], r[col["k"]], want)
		}
	}
}

func TestAnalyzeErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := mainArgs([]string{"analyze"}, &stdout, &stderr); code != 2 {
		t.Errorf("no checkpoint: exit %d, want 2", code)
	}
	if code := mainArgs([]string{"analyze", "a", "b", "c"}, &stdout, &stderr); code != 2 {
		t.Errorf("three checkpoints: exit %d, want 2", code)
	}
	if code := mainArgs([]string{"analyze", "a", "-top", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("-top 0: exit %d, want 2", code)
	}
	stderr.Reset()
	missing := filepath.Join(t.TempDir(), "nope.safetensors")
	if code := mainArgs([]string{"analyze", missing}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), missing) {
		t.Errorf("missing file: exit %d, stderr %q; want 1 naming the file", code, stderr.String())
	}
	stderr.Reset()
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, []byte{10, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'w', '"', ':', '{', '}', '}', ' ', ' '}, 0o644)
	if code := mainArgs([]string{"analyze", bad}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `tensor "w": field "dtype": missing`) {
		t.Errorf("bad header: exit %d, stderr %q", code, stderr.String())
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
