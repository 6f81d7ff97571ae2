package peft_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

func ExampleWriteSafetensorsShaped() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "layer.safetensors")
	tensors := map[string]*mat.Dense{
		"fc.weight": mat.NewDense(2, 3, []float64{1, 2, 3, 4, 5, 6}),
		"fc.bias":   mat.NewDense(1, 2, []float64{0.1, -0.1}),
	}
	// Store the bias 1-D, as PyTorch does.
	shapes := map[string][]int{"fc.bias": {2}}
	if err := peft.WriteSafetensorsShaped(path, tensors, shapes, "F16", map[string]string{"format": "pt"}); err != nil {
		fmt.Println(err)
		return
	}
	f, err := peft.OpenSafetensors(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	for _, name := range f.Names() {
		t, _ := f.Tensor(name)
		r, c := t.Dims()
		fmt.Printf("%s %s shape %v read as %d×%d: %.4f\n", name, f.DType(name), f.Shape(name), r, c, t.RawMatrix().Data)
	}
	fmt.Println(f.Metadata())
	// Output:
	// fc.bias F16 shape [2] read as 1×2: [0.1000 -0.1000]
	// fc.weight F16 shape [2 3] read as 2×3: [1.0000 2.0000 3.0000 4.0000 5.0000 6.0000]
	// map[format:pt]
}

func ExampleSaveAdapter() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	m := peft.NewMLP([]int{4, 8, 3}, 1)
	if _, err := lora.Add(m, lora.Config{R: 2, Alpha: 4, Targets: []string{"fc1", "fc2"}}); err != nil {
		fmt.Println(err)
		return
	}
	if err := peft.SaveAdapter(dir, m, "default"); err != nil {
		fmt.Println(err)
		return
	}
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	for _, name := range f.Names() {
		fmt.Println(name, f.Shape(name))
	}
	// A fresh copy of the base model takes the adapter back.
	m2 := peft.NewMLP([]int{4, 8, 3}, 1)
	if err := peft.LoadAdapter(dir, m2, "default"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(peft.Ranks(m2))
	// Output:
	// base_model.model.fc1.lora_A.weight [2 4]
	// base_model.model.fc1.lora_B.weight [8 2]
	// base_model.model.fc2.lora_A.weight [2 8]
	// base_model.model.fc2.lora_B.weight [3 2]
	// map[fc1:2 fc2:2]
}

func ExampleSaveModel() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mlp.safetensors")
	m := peft.NewMLP([]int{4, 8, 3}, 1)
	if err := peft.SaveModel(path, m); err != nil {
		fmt.Println(err)
		return
	}
	other := peft.NewMLP([]int{4, 8, 3}, 2)
	if err := peft.LoadModel(path, other); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(mat.Equal(m.Layers[0].W.Value, other.Layers[0].W.Value))
	// A model of another shape is refused, naming the tensor and both shapes.
	fmt.Println(peft.LoadModel(path, peft.NewMLP([]int{4, 9, 3}, 1)) != nil)
	// Output:
	// true
	// true
}

// BenchmarkSafetensors times writing and reading a 256×256 matrix in each dtype.
func BenchmarkSafetensors(b *testing.B) {
	dir := b.TempDir()
	const n = 256
	data := make([]float64, n*n)
	for i := range data {
		data[i] = float64(i%97) / 7
	}
	tensors := map[string]*mat.Dense{"w": mat.NewDense(n, n, data)}
	for _, dtype := range []string{"F64", "F32", "F16", "BF16"} {
		path := filepath.Join(dir, dtype+".safetensors")
		b.Run("write/"+dtype, func(b *testing.B) {
			b.SetBytes(n * n * 8)
			b.ReportAllocs()
			for b.Loop() {
				if err := peft.WriteSafetensors(path, tensors, dtype, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read/"+dtype, func(b *testing.B) {
			b.SetBytes(n * n * 8)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := peft.ReadSafetensors(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
