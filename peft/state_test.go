package peft

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func testGPTConfig(seed int64) GPTConfig {
	return GPTConfig{Vocab: 11, Context: 8, Layers: 2, Heads: 2, Dim: 6, Seed: seed}
}

// maxAbsDiff returns max |a − b| over the entries of two same-shaped
// matrices.
func maxAbsDiff(a, b mat.Matrix) float64 {
	r, c := a.Dims()
	d := 0.0
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			d = math.Max(d, math.Abs(a.At(i, j)-b.At(i, j)))
		}
	}
	return d
}

var testTokens = []int{1, 4, 2, 9, 0, 3, 3, 10, 5, 7, 6, 8}

func TestSaveLoadModel(t *testing.T) {
	dir := t.TempDir()
	x := NewConst(testMatrix(4, 5, 9))

	mlp := NewMLP([]int{5, 7, 3}, 1)
	path := filepath.Join(dir, "mlp.safetensors")
	if err := SaveModel(path, mlp); err != nil {
		t.Fatal(err)
	}
	fresh := NewMLP([]int{5, 7, 3}, 2)
	if maxAbsDiff(mlp.Forward(x).Value, fresh.Forward(x).Value) == 0 {
		t.Fatal("two seeds give the same MLP")
	}
	if err := LoadModel(path, fresh); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(mlp.Forward(x).Value, fresh.Forward(x).Value); d != 0 {
		t.Errorf("MLP outputs differ by %g after the round trip", d)
	}
	// PyTorch's shapes and names.
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{"fc1.weight": {7, 5}, "fc1.bias": {7}, "fc2.weight": {3, 7}, "fc2.bias": {3}}
	if got := f.Names(); !slices.Equal(got, []string{"fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"}) {
		t.Errorf("names %v", got)
	}
	for name, s := range want {
		if got := f.Shape(name); !slices.Equal(got, s) {
			t.Errorf("%s: shape %v, want %v", name, got, s)
		}
	}
	f.Close()

	gpt := NewGPT(testGPTConfig(1))
	path = filepath.Join(dir, "gpt.safetensors")
	if err := SaveModel(path, gpt); err != nil {
		t.Fatal(err)
	}
	g2 := NewGPT(testGPTConfig(2))
	if err := LoadModel(path, g2); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(gpt.Forward(testTokens, 2).Value, g2.Forward(testTokens, 2).Value); d != 0 {
		t.Errorf("GPT logits differ by %g after the round trip", d)
	}
	f, err = OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, s := range map[string][]int{"wte.weight": {11, 6}, "blocks.1.ln2.weight": {6}, "blocks.0.attn.q.bias": {6},
		"blocks.0.mlp.fc.weight": {24, 6}, "head.weight": {11, 6}, "ln_f.bias": {6}} {
		if got := f.Shape(name); !slices.Equal(got, s) {
			t.Errorf("%s: shape %v, want %v", name, got, s)
		}
	}
	// From embedded bytes.
	raw, _ := os.ReadFile(path)
	pf, err := ParseSafetensors(raw)
	if err != nil {
		t.Fatal(err)
	}
	g3 := NewGPT(testGPTConfig(3))
	if err := LoadModelFrom(pf, g3); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(gpt.Forward(testTokens, 2).Value, g3.Forward(testTokens, 2).Value); d != 0 {
		t.Errorf("GPT from bytes differs by %g", d)
	}
}

func TestLoadModelErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	if err := SaveModel(path, NewMLP([]int{5, 7, 3}, 1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		model *MLP
		frags []string
	}{
		{"mis-shaped", NewMLP([]int{5, 8, 3}, 2), []string{`"fc1.weight"`, "[7 5]", "(8×5)"}},
		{"missing", NewMLP([]int{5, 7, 3, 2}, 2), []string{"lacks", `"fc3.weight"`, `"fc3.bias"`}},
		{"extra", NewMLP([]int{5, 3}, 2), []string{"has tensors the model does not", `"fc2.weight"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := mat.DenseCopyOf(c.model.Layers[0].W.Value)
			err := LoadModel(path, c.model)
			if err == nil {
				t.Fatal("no error")
			}
			for _, frag := range c.frags {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q lacks %q", err, frag)
				}
			}
			if !mat.Equal(before, c.model.Layers[0].W.Value) {
				t.Error("a failed load changed the model")
			}
		})
	}
	// Same names, wrong shape: the error names the tensor and both shapes.
	m := NewMLP([]int{5, 7, 3}, 1)
	bad := filepath.Join(dir, "bad.safetensors")
	tensors := map[string]*mat.Dense{
		"fc1.weight": testMatrix(5, 7, 1), "fc1.bias": testMatrix(1, 7, 2),
		"fc2.weight": testMatrix(3, 7, 3), "fc2.bias": testMatrix(1, 3, 4),
	}
	if err := WriteSafetensors(bad, tensors, "F32", nil); err != nil {
		t.Fatal(err)
	}
	err := LoadModel(bad, m)
	if err == nil || !strings.Contains(err.Error(), `"fc1.weight"`) || !strings.Contains(err.Error(), "[5 7]") || !strings.Contains(err.Error(), "(7×5)") {
		t.Errorf("transposed weight: %v", err)
	}
	// 2-D [1, n] biases are accepted too.
	tensors["fc1.weight"] = testMatrix(7, 5, 1)
	if err := WriteSafetensors(bad, tensors, "F64", nil); err != nil {
		t.Fatal(err)
	}
	if err := LoadModel(bad, m); err != nil {
		t.Errorf("[1, n] biases: %v", err)
	}
	if !mat.Equal(m.Layers[1].B.Value, tensors["fc2.bias"]) {
		t.Error("bias not loaded")
	}
	if err := LoadModel(filepath.Join(dir, "none.safetensors"), m); err == nil || !strings.Contains(err.Error(), "none.safetensors") {
		t.Errorf("missing file: %v", err)
	}
}

// TestSaveModelMerged: a model with a merged adapter saves its base weights,
// and refuses to load over a merge.
func TestSaveModelMerged(t *testing.T) {
	m := NewMLP([]int{5, 7, 3}, 1)
	base := mat.DenseCopyOf(m.Layers[0].W.Value)
	ls, err := addLowRank(m, lowRank{R: 2, Targets: []string{"fc1"}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ls[0].B.Value.Set(0, 0, 1) // a nonzero update
	if err := MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if mat.Equal(base, m.Layers[0].W.Value) {
		t.Fatal("merge changed nothing")
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := SaveModel(path, m); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(got["fc1.weight"], base) {
		t.Error("saved the merged weight, not the base")
	}
	if len(got) != 4 {
		t.Errorf("saved %d tensors, want the 4 base ones", len(got))
	}
	if err := LoadModel(path, m); err == nil || !strings.Contains(err.Error(), "merged") {
		t.Errorf("load over a merge: %v", err)
	}
}
