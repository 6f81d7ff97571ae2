package ckpt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// randDense returns an r×c matrix of N(0, 1) values (always the same seed
// for reproducible results).
func randDense(rng *rand.Rand, r, c int) *mat.Dense {
	v := make([]float64, r*c)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, v)
}

// sameBits reports the first entry where a and b differ bit for bit.
func sameBits(t *testing.T, what string, a, b *mat.Dense) {
	t.Helper()
	ar, ac := a.Dims()
	br, bc := b.Dims()
	if ar != br || ac != bc {
		t.Fatalf("%s: shape %d×%d, want %d×%d", what, ar, ac, br, bc)
	}
	for i := range ar {
		for j := range ac {
			if math.Float64bits(a.At(i, j)) != math.Float64bits(b.At(i, j)) {
				t.Fatalf("%s: (%d, %d) = %v, want %v", what, i, j, a.At(i, j), b.At(i, j))
			}
		}
	}
}

// TestReadBackAllDTypes writes tensors with peft's independent writer in
// every dtype and checks that ReadTo returns exactly what peft's reader
// returns, across chunk boundaries and with one reused destination.
func TestReadBackAllDTypes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tensors := map[string]*mat.Dense{
		"big":    randDense(rng, 300, 500), // 1.2 MB as F64: crosses the 1 MiB chunk
		"small":  randDense(rng, 3, 5),
		"bias":   randDense(rng, 1, 7),
		"conv":   randDense(rng, 4, 6), // stored 3-D
		"scalar": mat.NewDense(1, 1, []float64{-2.5}),
	}
	tensors["small"].Set(0, 0, math.Inf(1))
	tensors["small"].Set(0, 1, 1e-30) // underflows in F16
	shapes := map[string][]int{"bias": {7}, "conv": {4, 2, 3}, "scalar": {}}
	for _, dt := range []string{"F64", "F32", "F16", "BF16"} {
		t.Run(dt, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "model.safetensors")
			if err := peft.WriteSafetensorsShaped(p, tensors, shapes, dt, map[string]string{"format": "pt"}); err != nil {
				t.Fatal(err)
			}
			ref, err := peft.OpenSafetensors(p)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			c, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, want := len(c.Tensors()), len(tensors); got != want {
				t.Fatalf("%d tensors, want %d", got, want)
			}
			var dst mat.Dense
			for _, ti := range c.Tensors() {
				if ti.DType != dt || !slices.Equal(ti.Shape, ref.Shape(ti.Name)) {
					t.Errorf("%s: %s %v, want %s %v", ti.Name, ti.DType, ti.Shape, dt, ref.Shape(ti.Name))
				}
				if err := c.ReadTo(context.Background(), &dst, ti.Name); err != nil {
					t.Fatal(err)
				}
				want, err := ref.Tensor(ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				sameBits(t, ti.Name, &dst, want)
			}
			if got, want := c.BytesRead(), c.TotalBytes(); got != want {
				t.Errorf("read %d bytes, want %d", got, want)
			}
			if c.BufferBytes() != chunkSize {
				t.Errorf("buffer %d bytes, want %d", c.BufferBytes(), chunkSize)
			}
		})
	}
}

func TestShardedIndex(t *testing.T) {
	dir := t.TempDir()
	p, err := Generate(dir, GenConfig{Layers: 3, Hidden: 24, FFN: 40, DType: "F32", Shards: 4, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "model.safetensors.index.json" {
		t.Fatalf("Generate returned %s, want the index", p)
	}
	for _, open := range []string{p, dir} { // the index, or its folder
		c, err := Open(open)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Files()) != 4 {
			t.Errorf("%d shards, want 4", len(c.Files()))
		}
		ts := c.Tensors()
		if len(ts) != 27 {
			t.Fatalf("%d tensors, want 27", len(ts))
		}
		var dst mat.Dense
		for _, ti := range ts {
			ref, err := peft.OpenSafetensors(ti.File)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.Tensor(ti.Name)
			ref.Close()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ReadTo(context.Background(), &dst, ti.Name); err != nil {
				t.Fatal(err)
			}
			sameBits(t, ti.Name, &dst, want)
		}
		c.Close()
	}
}

// TestGenerateDeterministic checks that the base of a pair is the plain
// checkpoint, byte for byte, whatever the sharding.
func TestGenerateDeterministic(t *testing.T) {
	cfg := GenConfig{Layers: 1, Hidden: 16, FFN: 24, DType: "BF16", Seed: 3}
	a, err := Generate(filepath.Join(t.TempDir(), "a"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := GeneratePair(filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "c"), cfg, UpdateConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !slices.Equal(ba, bb) {
		t.Error("the pair's base differs from Generate's checkpoint")
	}
}

func TestConversionKnownAnswers(t *testing.T) {
	bf := []struct {
		h    uint16
		want float64
	}{
		{0x0000, 0}, {0x3F80, 1}, {0xC000, -2}, {0x3EAB, 0.333984375},
		{0x4049, 3.140625}, {0x7F7F, 0x1.fep127}, {0x0080, 0x1p-126},
		{0x0001, 0x1p-133}, {0x7F80, math.Inf(1)}, {0xFF80, math.Inf(-1)},
	}
	for _, c := range bf {
		if got := peft.BF16ToFloat64(c.h); got != c.want {
			t.Errorf("BF16 %#04x = %v, want %v", c.h, got, c.want)
		}
	}
	if !math.IsNaN(peft.BF16ToFloat64(0x7FC0)) {
		t.Error("BF16 0x7FC0 is not NaN")
	}
	if math.Signbit(peft.BF16ToFloat64(0x8000)) != true {
		t.Error("BF16 0x8000 is not -0")
	}
	f16 := []struct {
		h    uint16
		want float64
	}{
		{0x0000, 0}, {0x3C00, 1}, {0xC000, -2}, {0x3555, 0.333251953125},
		{0x4248, 3.140625}, {0x7BFF, 65504}, {0x0400, 0x1p-14},
		{0x0001, 0x1p-24}, {0x03FF, 1023 * 0x1p-24}, {0x7C00, math.Inf(1)}, {0xFC00, math.Inf(-1)},
	}
	for _, c := range f16 {
		if got := peft.F16ToFloat64(c.h); got != c.want {
			t.Errorf("F16 %#04x = %v, want %v", c.h, got, c.want)
		}
	}
	if !math.IsNaN(peft.F16ToFloat64(0x7E00)) || !math.IsNaN(peft.F16ToFloat64(0xFC01)) {
		t.Error("F16 0x7E00 or 0xFC01 is not NaN")
	}
	if !math.Signbit(peft.F16ToFloat64(0x8000)) || peft.F16ToFloat64(0x8000) != 0 {
		t.Error("F16 0x8000 is not -0")
	}
	// Every finite half against the definition (−1)^s·2^(e−15)·(1 + f/1024),
	// or 2⁻¹⁴·f/1024 for e = 0.
	for h := range 1 << 16 {
		s, e, f := h>>15, (h>>10)&0x1f, h&0x3ff
		if e == 0x1f {
			continue
		}
		want := math.Ldexp(float64(f)/1024, -14)
		if e > 0 {
			want = math.Ldexp(1+float64(f)/1024, e-15)
		}
		if s == 1 {
			want = -want
		}
		if got := peft.F16ToFloat64(uint16(h)); got != want {
			t.Fatalf("F16 %#04x = %v, want %v", h, got, want)
		}
	}
}

// rawFile writes a safetensors file with the given header (JSON text) and
// data bytes.
func rawFile(t *testing.T, dir, name, header string, data int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	b := make([]byte, 8, 8+len(header)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	b = append(b, make([]byte, data)...)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMalformed(t *testing.T) {
	dir := t.TempDir()
	good := `{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`
	cases := []struct {
		name, header string
		data         int
		tensor       string
		field        string
		msg          string
	}{
		{"badjson.safetensors", `{"w":{"dtype":"F32",`, 16, "", "", "bad header JSON"},
		{"badentry.safetensors", `{"w":{"dtype":5,"shape":[2,2],"data_offsets":[0,16]}}`, 16, "w", "", "bad header entry"},
		{"range.safetensors", `{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,1000]}}`, 16, "w", "data_offsets", "beyond the 16-byte data buffer"},
		{"size.safetensors", `{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}`, 16, "w", "data_offsets", "needs 24"},
		{"order.safetensors", `{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}}`, 16, "w", "data_offsets", "not a range"},
		{"dtype.safetensors", `{"w":{"dtype":"F12","shape":[2,2],"data_offsets":[0,16]}}`, 16, "w", "dtype", `unknown dtype "F12"`},
		{"nodtype.safetensors", `{"w":{"shape":[2,2],"data_offsets":[0,16]}}`, 16, "w", "dtype", "missing"},
		{"shape.safetensors", `{"w":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}}`, 16, "w", "shape", "not a size"},
	}
	for _, c := range cases {
		p := rawFile(t, dir, c.name, c.header, c.data)
		_, err := Open(p)
		checkErr(t, c.name, err, p, c.tensor, c.field, c.msg)
	}

	// A header length beyond the file.
	p := filepath.Join(dir, "short.safetensors")
	os.WriteFile(p, []byte{200, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, 0o644)
	_, err := Open(p)
	checkErr(t, "short", err, p, "", "header length", "only 2 bytes follow")

	// A missing shard, and a shard without a tensor the index names.
	rawFile(t, dir, "model-00001-of-00002.safetensors", good, 16)
	idx := func(name string, wm map[string]string) string {
		js, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 16}, "weight_map": wm})
		p := filepath.Join(dir, name)
		os.WriteFile(p, js, 0o644)
		return p
	}
	p = idx("missing.index.json", map[string]string{"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"})
	_, err = Open(p)
	checkErr(t, "missing shard", err, p, "v", "weight_map", "model-00002-of-00002.safetensors")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing shard: %v does not wrap os.ErrNotExist", err)
	}
	p = idx("lacks.index.json", map[string]string{"w": "model-00001-of-00002.safetensors", "u": "model-00001-of-00002.safetensors"})
	_, err = Open(p)
	checkErr(t, "shard lacks", err, p, "u", "weight_map", "does not hold")
	p = idx("empty.index.json", nil)
	_, err = Open(p)
	checkErr(t, "empty index", err, p, "", "weight_map", "missing or empty")

	// An integer tensor opens but does not read.
	p = rawFile(t, dir, "int.safetensors", `{"ids":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}}`, 16)
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var dst mat.Dense
	err = c.ReadTo(context.Background(), &dst, "ids")
	checkErr(t, "I32", err, p, "ids", "dtype", "cannot be read")
	err = c.ReadTo(context.Background(), &dst, "nope")
	checkErr(t, "no tensor", err, p, "nope", "", "no such tensor")
	c.Close()

	// A file truncated after its header was read.
	p = rawFile(t, dir, "cut.safetensors", good, 16)
	c, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	os.Truncate(p, 8+int64(len(good))+8)
	err = c.ReadTo(context.Background(), &dst, "w")
	checkErr(t, "truncated", err, p, "w", "data_offsets", "cannot read bytes")
}

// checkErr checks that err is an *Error naming file, tensor and field, with
// msg in its text, and that the text names them too.
func checkErr(t *testing.T, what string, err error, file, tensor, field, msg string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %v, want a *ckpt.Error", what, err)
		return
	}
	if e.File != file || e.Tensor != tensor || e.Field != field {
		t.Errorf("%s: error names file %q tensor %q field %q, want %q %q %q", what, e.File, e.Tensor, e.Field, file, tensor, field)
	}
	s := err.Error()
	for _, want := range []string{file, tensor, field, msg} {
		if !strings.Contains(s, want) {
			t.Errorf("%s: %q does not contain %q", what, s, want)
		}
	}
}

func TestReadToCancelled(t *testing.T) {
	p, err := Generate(t.TempDir(), GenConfig{Layers: 1, Hidden: 16, FFN: 16, DType: "F32"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var dst mat.Dense
	if err := c.ReadTo(ctx, &dst, "model.layers.0.mlp.up_proj.weight"); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadTo with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestNaturalOrder(t *testing.T) {
	got := []string{"layers.10.a", "layers.2.b", "layers.2.a", "layers.1.z", "embed", "layers.02.c", "layers.100"}
	slices.SortFunc(got, func(a, b string) int {
		if naturalLess(a, b) {
			return -1
		}
		if naturalLess(b, a) {
			return 1
		}
		return 0
	})
	want := []string{"embed", "layers.1.z", "layers.2.a", "layers.2.b", "layers.02.c", "layers.10.a", "layers.100"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}
