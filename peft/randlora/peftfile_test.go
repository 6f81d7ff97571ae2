package randlora_test

import (
	"encoding/binary"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/randlora"
	"gonum.org/v1/gonum/mat"
)

// stTensor is one tensor of a safetensors file written by hand: its dtype,
// shape and little-endian bytes.
type stTensor struct {
	dtype string
	shape []int
	data  []byte
}

// encodeAs returns m rounded to dtype, and the bytes of m as a tensor of
// that dtype (row-major, little-endian), as PyTorch would store it.
func encodeAs(t *testing.T, m *mat.Dense, dtype string) (*mat.Dense, []byte) {
	t.Helper()
	raw, err := peft.EncodeSafetensors(map[string]*mat.Dense{"x": m}, nil, dtype, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := peft.ParseSafetensors(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.Tensor("x")
	if err != nil {
		t.Fatal(err)
	}
	return v, raw[8+binary.LittleEndian.Uint64(raw):]
}

// writeSafetensors writes tensors to path the way the safetensors library
// does: a JSON header with each tensor's dtype, shape and data_offsets and
// __metadata__ {"format": "pt"}, padded with spaces to 8 bytes, then the
// data.
func writeSafetensors(t *testing.T, path string, tensors map[string]stTensor) {
	t.Helper()
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	slices.Sort(names)
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, n := range names {
		e := tensors[n]
		begin := len(data)
		data = append(data, e.data...)
		header[n] = map[string]any{"dtype": e.dtype, "shape": e.shape, "data_offsets": []int{begin, len(data)}}
	}
	hdr, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	out = append(append(out, hdr...), data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// peftConfig is adapter_config.json as PEFT's save_pretrained writes a
// RandLoraConfig(r=3, randlora_alpha=6, target_modules=["a", "b", "c"],
// projection_prng_key=7): every field, sorted, indented.
const peftConfig = `{
  "auto_mapping": null,
  "base_model_name_or_path": null,
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_weights": true,
  "layers_pattern": null,
  "layers_to_transform": null,
  "modules_to_save": null,
  "peft_type": "RANDLORA",
  "peft_version": "0.15.2",
  "projection_prng_key": 7,
  "r": 3,
  "randlora_alpha": 6,
  "randlora_dropout": 0.0,
  "revision": null,
  "save_projection": true,
  "sparse": false,
  "target_modules": [
    "c",
    "a",
    "b"
  ],
  "task_type": null,
  "very_sparse": false
}
`

// TestLoadPEFTFile loads an adapter written the way PEFT writes one: the
// shared bases as PEFT's float16 CPU buffers in its 3-D shapes,
// base_model.randlora_A [r, 1, m_max] and base_model.randlora_B
// [M_max, n_max, r], every layer's copy of them under its own name, and Λ
// and Γ in float32. The loaded model's outputs must equal, bit for bit,
// those of the gopeft model whose numbers the file holds. The same file
// with a basis in another shape (gopeft's former 2-D ones among them) is
// refused with an error naming the file, the tensor and both shapes.
func TestLoadPEFTFile(t *testing.T) {
	m := newModel()
	as, err := randlora.Add(m, randlora.Config{R: 3, Alpha: 6, Targets: names, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(21)), as)
	// m_max = M_max = 8 (the largest in and out widths), n_max = ⌈8/3⌉ = 3.
	file := map[string]stTensor{}
	put := func(name string, v *peft.Tensor, dtype string, shape ...int) {
		rounded, data := encodeAs(t, v.Value, dtype)
		r, c := v.Dims()
		v.Value.Copy(mat.NewDense(r, c, rounded.RawMatrix().Data)) // the model holds what the file holds
		file[name] = stTensor{dtype, shape, data}
	}
	a, b := as[0].A, as[0].B
	put("base_model.randlora_A", a, "F16", 3, 1, 8)
	put("base_model.randlora_B", b, "F16", 8, 3, 3)
	for i, n := range names {
		put("base_model.model."+n+".randlora_A", a, "F16", 3, 1, 8)
		put("base_model.model."+n+".randlora_B", b, "F16", 8, 3, 3)
		lr, lc := as[i].Lambda.Dims()
		put("base_model.model."+n+".randlora_lambda", as[i].Lambda, "F32", lr, lc)
		gr, gc := as[i].Gamma.Dims()
		put("base_model.model."+n+".randlora_gamma", as[i].Gamma, "F32", gr, gc)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(22)), 4, 5))
	want := m.Forward(x).Value

	write := func(edit func(map[string]stTensor)) string {
		dir := filepath.Join(t.TempDir(), "adapter")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), []byte(peftConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		ts := map[string]stTensor{}
		for k, v := range file {
			ts[k] = v
		}
		if edit != nil {
			edit(ts)
		}
		writeSafetensors(t, filepath.Join(dir, peft.AdapterWeightsFile), ts)
		return dir
	}

	dir := write(nil)
	fresh := newModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Forward(x).Value; !mat.Equal(got, want) {
		t.Errorf("output of the loaded PEFT file differs from the model it was written from by %.3g relative", relDiff(got, want))
	}
	for i, l := range fresh.Mods {
		v := l.ActiveAdapter().(*randlora.RandLoRA)
		if v.A != fresh.Mods[0].ActiveAdapter().(*randlora.RandLoRA).A {
			t.Errorf("%s does not share the first layer's A", l.Name)
		}
		if !mat.Equal(v.A.Value, a.Value) || !mat.Equal(v.B.Value, b.Value) {
			t.Errorf("%s: the bases differ from the file's", l.Name)
		}
		if v.Alpha != 6 || v.Rank() != 3 || v.N != as[i].N || !mat.Equal(v.Delta(), as[i].Delta()) {
			t.Errorf("%s: α %g, r %d, n %d (want 6, 3, %d), or ΔW differs", l.Name, v.Alpha, v.Rank(), v.N, as[i].N)
		}
	}

	// Bases in other shapes: the same bytes, another stored shape.
	reshape := func(name string, shape ...int) func(map[string]stTensor) {
		return func(ts map[string]stTensor) {
			e := ts[name]
			e.shape = shape
			ts[name] = e
		}
	}
	for _, c := range []struct {
		what string
		edit func(map[string]stTensor)
		want []string
	}{
		{"randlora_A 2-D", reshape("base_model.randlora_A", 3, 8), []string{"base_model.randlora_A", "[3 8]", "[3 1 *]"}},
		{"randlora_B 2-D", reshape("base_model.randlora_B", 8, 9), []string{"base_model.randlora_B", "[8 9]", "[* * 3]"}},
		{"randlora_A transposed", reshape("base_model.randlora_A", 8, 1, 3), []string{"base_model.randlora_A", "[8 1 3]", "[3 1 *]"}},
		{"randlora_B with r first", reshape("base_model.randlora_B", 3, 3, 8), []string{"base_model.randlora_B", "[3 3 8]", "[* * 3]"}},
		{"a layer's copy 2-D", reshape("base_model.model.b.randlora_B", 8, 9), []string{"base_model.model.b.randlora_B", "[8 9]", "[8 3 3]"}},
	} {
		dir := write(c.edit)
		fresh := newModel()
		err := peft.LoadAdapter(dir, fresh, "")
		if e := adaptertest.ErrorMentions(err, append(c.want, filepath.Join(dir, peft.AdapterWeightsFile))...); e != nil {
			t.Errorf("%s: %v", c.what, e)
			continue
		}
		t.Logf("%s: %v", c.what, err)
		for _, l := range fresh.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%s: %s has an adapter after the failed load", c.what, l.Name)
			}
		}
	}
}
