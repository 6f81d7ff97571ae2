package peft

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
)

func TestF16KnownBits(t *testing.T) {
	for _, c := range []struct {
		x    float64
		want uint16
	}{
		{1, 0x3C00},
		{-2, 0xC000},
		{0, 0x0000},
		{math.Copysign(0, -1), 0x8000},
		{0.1, 0x2E66},
		{1.0 / 3, 0x3555},
		{65504, 0x7BFF},              // largest finite
		{65519.99, 0x7BFF},           // just below the overflow threshold
		{65520, 0x7C00},              // halfway to 2¹⁶: ties to even overflows
		{1e10, 0x7C00},               // overflow
		{-1e10, 0xFC00},              // negative overflow
		{math.Ldexp(1, -14), 0x0400}, // smallest normal
		{math.Ldexp(1, -24), 0x0001}, // smallest subnormal
		{math.Ldexp(1, -25), 0x0000}, // half of it: ties to even, 0
		{math.Ldexp(1.0000001, -25), 0x0001},
		{math.Ldexp(3, -25), 0x0002}, // 1.5 units: ties to even, 2
		{math.Ldexp(1, -14) - math.Ldexp(1, -25), 0x0400}, // 1023.5 units round up into the normals
		{1e-30, 0x0000},
		{1 + math.Ldexp(1, -11), 0x3C00},                      // tie, to even
		{1 + math.Ldexp(3, -11), 0x3C02},                      // tie, to even
		{1 + math.Ldexp(1, -11) + math.Ldexp(1, -40), 0x3C01}, // via float32 would round twice to 0x3C00
		{2047.5, 0x6800},                                      // tie, to even, into the next binade
		{2047.25, 0x67FF},
		{math.Inf(1), 0x7C00},
		{math.Inf(-1), 0xFC00},
		{math.NaN(), 0x7E00},
		{math.SmallestNonzeroFloat64, 0x0000},
	} {
		if got := float64ToF16(c.x); got != c.want {
			t.Errorf("float64ToF16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
}

func TestBF16KnownBits(t *testing.T) {
	for _, c := range []struct {
		x    float64
		want uint16
	}{
		{1, 0x3F80},
		{-2, 0xC000},
		{math.Pi, 0x4049},
		{0.1, 0x3DCD},
		{math.Copysign(0, -1), 0x8000},
		{1 + math.Ldexp(1, -8), 0x3F80}, // tie, to even
		{1 + math.Ldexp(3, -8), 0x3F82}, // tie, to even
		{1 + math.Ldexp(1, -8) + math.Ldexp(1, -30), 0x3F81}, // via float32 would round twice to 0x3F80
		{3.3895313892515355e38, 0x7F7F},                      // largest finite
		{3.4e38, 0x7F80},                                     // overflow
		{math.MaxFloat64, 0x7F80},
		{math.Ldexp(1, -126), 0x0080}, // smallest normal
		{math.Ldexp(1, -133), 0x0001}, // smallest subnormal
		{math.Ldexp(1, -134), 0x0000}, // tie, to even
		{math.Inf(-1), 0xFF80},
		{math.NaN(), 0x7FC0},
	} {
		if got := float64ToBF16(c.x); got != c.want {
			t.Errorf("float64ToBF16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
}

// bf16Ref is the decoding of a bfloat16, used only for testing.
func bf16Ref(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }

// TestSmallFloatExhaustive checks every finite 16-bit pattern of both
// formats: it survives a round trip, and the midpoint between it and the next
// larger value rounds to whichever of the two is even (or, for the largest
// finite value, to infinity).
func TestSmallFloatExhaustive(t *testing.T) {
	for _, f := range []struct {
		name   string
		decode func(uint16) float64
		encode func(float64) uint16
		inf    uint16
	}{
		{"F16", F16ToFloat64, float64ToF16, 0x7C00},
		{"BF16", bf16Ref, float64ToBF16, 0x7F80},
	} {
		bad := 0
		for h := uint32(0); h <= 0xFFFF; h++ {
			b := uint16(h)
			x := f.decode(b)
			if math.IsNaN(x) {
				if !math.IsNaN(f.decode(f.encode(x))) {
					t.Errorf("%s: NaN %#04x does not stay NaN", f.name, b)
				}
				continue
			}
			if got := f.encode(x); got != b && !(x == 0 && got&0x7FFF == 0 && got == b) {
				t.Errorf("%s: round trip of %#04x (%v) gives %#04x", f.name, b, x, got)
				bad++
			}
			if math.IsInf(x, 0) || b&0x7FFF == f.inf-1 {
				// The midpoint above the largest finite value overflows.
				if b&0x7FFF == f.inf-1 {
					mid := math.Abs(x) + (math.Abs(x)-math.Abs(f.decode(b-1)))/2
					if got := f.encode(math.Copysign(mid, x)) & 0x7FFF; got != f.inf {
						t.Errorf("%s: midpoint above the largest finite gives %#04x, want Inf", f.name, got)
					}
				}
				continue
			}
			next := f.decode(b + 1) // the next larger magnitude, same sign
			mid := x + (next-x)/2
			want := b
			if b&1 == 1 {
				want = b + 1
			}
			if got := f.encode(mid); got != want {
				t.Errorf("%s: midpoint of %#04x and %#04x (%v) gives %#04x, want %#04x", f.name, b, b+1, mid, got, want)
				bad++
			}
			// Just off the midpoint it must round to the nearer one.
			if got := f.encode(math.Nextafter(mid, x)); got != b && mid != 0 {
				t.Errorf("%s: just below the midpoint above %#04x gives %#04x", f.name, b, got)
				bad++
			}
			if got := f.encode(math.Nextafter(mid, 2*next-x)); got != b+1 {
				t.Errorf("%s: just above the midpoint above %#04x gives %#04x", f.name, b, got)
				bad++
			}
			if bad > 10 {
				t.Fatal("too many failures")
			}
		}
	}
}

// TestBF16MatchesFloat32Rounding: for float32 inputs (exact in float64) the
// direct rounding agrees with the usual float32 bit trick.
func TestBF16MatchesFloat32Rounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2)) // always the same seed
	for i := 0; i < 200000; i++ {
		u := rng.Uint32()
		f := math.Float32frombits(u)
		if f != f {
			continue
		}
		want := uint16((u + 0x7FFF + (u>>16)&1) >> 16)
		if got := float64ToBF16(float64(f)); got != want {
			t.Fatalf("float64ToBF16(%v = %#08x) = %#04x, want %#04x", f, u, got, want)
		}
	}
}

func testMatrix(r, c int, seed uint64) *mat.Dense {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := mat.NewDense(r, c, nil)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			m.Set(i, j, rng.NormFloat64())
		}
	}
	return m
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tensors := map[string]*mat.Dense{
		"a.weight": testMatrix(3, 5, 1),
		"b":        testMatrix(1, 7, 2),
		"c.scalar": mat.NewDense(1, 1, []float64{math.Pi}),
		"d":        mat.NewDense(2, 3, []float64{math.Inf(1), math.Inf(-1), math.NaN(), 0, math.Copysign(0, -1), 65504}),
	}
	meta := map[string]string{"format": "pt", "<odd> & \"quoted\"": "ünïcode"}
	conv := map[string]func(float64) float64{
		"F64":  func(x float64) float64 { return x },
		"F32":  func(x float64) float64 { return float64(float32(x)) },
		"F16":  func(x float64) float64 { return F16ToFloat64(float64ToF16(x)) },
		"BF16": func(x float64) float64 { return bf16Ref(float64ToBF16(x)) },
	}
	for _, dtype := range []string{"F64", "F32", "F16", "BF16"} {
		path := filepath.Join(dir, dtype+".safetensors")
		if err := WriteSafetensors(path, tensors, dtype, meta); err != nil {
			t.Fatal(err)
		}
		got, gotMeta, err := ReadSafetensors(path)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(gotMeta) != fmt.Sprint(meta) {
			t.Errorf("%s: metadata %v, want %v", dtype, gotMeta, meta)
		}
		if len(got) != len(tensors) {
			t.Errorf("%s: %d tensors, want %d", dtype, len(got), len(tensors))
		}
		for name, want := range tensors {
			g := got[name]
			if g == nil {
				t.Errorf("%s: %s missing", dtype, name)
				continue
			}
			r, c := want.Dims()
			if gr, gc := g.Dims(); gr != r || gc != c {
				t.Errorf("%s: %s is %s, want %s", dtype, name, ShapeOf(gr, gc), ShapeOf(r, c))
				continue
			}
			for i := 0; i < r; i++ {
				for j := 0; j < c; j++ {
					w := conv[dtype](want.At(i, j))
					x := g.At(i, j)
					if math.Float64bits(x) != math.Float64bits(w) && !(math.IsNaN(x) && math.IsNaN(w)) {
						t.Errorf("%s: %s[%d,%d] = %v, want %v", dtype, name, i, j, x, w)
					}
				}
			}
		}
		f, err := OpenSafetensors(path)
		if err != nil {
			t.Fatal(err)
		}
		if s := f.Shape("b"); !slices.Equal(s, []int{1, 7}) {
			t.Errorf("%s: shape of b %v, want [1 7]", dtype, s)
		}
		if f.DType("a.weight") != dtype {
			t.Errorf("dtype %q, want %q", f.DType("a.weight"), dtype)
		}
		f.Close()
	}
}

func TestWriteSafetensorsShaped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.safetensors")
	tensors := map[string]*mat.Dense{
		"bias":   mat.NewDense(1, 3, []float64{1, 2, 3}),
		"scalar": mat.NewDense(1, 1, []float64{4}),
		"conv":   testMatrix(2, 12, 3),
		"w":      testMatrix(2, 3, 4),
	}
	shapes := map[string][]int{"bias": {3}, "scalar": {}, "conv": {2, 3, 4}}
	if err := WriteSafetensorsShaped(path, tensors, shapes, "F64", nil); err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][]int{"bias": {3}, "scalar": {}, "conv": {2, 3, 4}, "w": {2, 3}}
	for name, s := range want {
		if got := f.Shape(name); !slices.Equal(got, s) || got == nil {
			t.Errorf("shape of %s = %v, want %v", name, got, s)
		}
		m, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m, tensors[name]) {
			t.Errorf("%s = %v, want %v", name, mat.Formatted(m), mat.Formatted(tensors[name]))
		}
	}
	if f.Metadata() != nil {
		t.Errorf("metadata %v, want none", f.Metadata())
	}
	// A shape with the wrong number of elements is refused, and leaves no file.
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	err = WriteSafetensorsShaped(bad, tensors, map[string][]int{"bias": {4}}, "F32", nil)
	if err == nil || !strings.Contains(err.Error(), `"bias"`) {
		t.Errorf("wrong shape: err = %v, want one naming bias", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a failed write left a file: %v", err)
	}
	if err := WriteSafetensors(bad, tensors, "F8_E4M3", nil); err == nil {
		t.Error("unknown dtype written")
	}
}

func TestSafetensorsDeterministic(t *testing.T) {
	tensors := map[string]*mat.Dense{}
	for i := 0; i < 20; i++ {
		tensors[fmt.Sprintf("layer.%d.weight", i)] = testMatrix(3, 4, uint64(i))
	}
	meta := map[string]string{"b": "2", "a": "1"}
	first, err := EncodeSafetensors(tensors, nil, "F32", meta)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		again, _ := EncodeSafetensors(tensors, nil, "F32", meta)
		if !bytes.Equal(first, again) {
			t.Fatal("the same tensors gave different bytes")
		}
	}
	// The data starts 8-byte aligned and the file parses.
	n := binary.LittleEndian.Uint64(first)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	path := filepath.Join(t.TempDir(), "d.safetensors")
	if err := WriteSafetensors(path, tensors, "F32", meta); err != nil {
		t.Fatal(err)
	}
	onDisk, _ := os.ReadFile(path)
	if !bytes.Equal(onDisk, first) {
		t.Error("WriteSafetensors and EncodeSafetensors differ")
	}
}

// TestOpenSafetensorsLazy: Tensor reads only its own bytes. The file is cut
// short after opening; the tensor whose bytes remain still reads, the other
// does not.
func TestOpenSafetensorsLazy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.safetensors")
	tensors := map[string]*mat.Dense{"a": testMatrix(4, 4, 1), "b": testMatrix(100, 100, 2)}
	if err := WriteSafetensors(path, tensors, "F64", nil); err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Has("c") || !f.Has("a") {
		t.Error("Has is wrong")
	}
	if err := os.Truncate(path, int64(f.dataAt)+16*8); err != nil {
		t.Fatal(err)
	}
	a, err := f.Tensor("a")
	if err != nil {
		t.Fatalf("reading a after cutting b off: %v", err)
	}
	if !mat.Equal(a, tensors["a"]) {
		t.Error("a changed")
	}
	if _, err := f.Tensor("b"); err == nil || !strings.Contains(err.Error(), `"b"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("reading the cut tensor: err = %v, want one naming the file and b", err)
	}
	if _, err := f.Tensor("nope"); err == nil {
		t.Error("missing tensor read")
	}
}

// rawSafetensors builds a file from a header given as JSON text and a data
// buffer, for hostile-input tests.
func rawSafetensors(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func TestSafetensorsHostile(t *testing.T) {
	eight := make([]byte, 8)
	good := rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, eight)
	if _, err := ParseSafetensors(good); err != nil {
		t.Fatalf("the good file fails: %v", err)
	}
	huge := binary.LittleEndian.AppendUint64(nil, 1<<62)
	for _, c := range []struct {
		name   string
		data   []byte
		tensor string // the tensor the error must name, if any
		msg    string // a fragment of the error
	}{
		{"empty", nil, "", "truncated"},
		{"short length", []byte{1, 2, 3}, "", "truncated"},
		{"header beyond the file", good[:20], "", "truncated"},
		{"absurd header length", append(huge, "{}"...), "", "limit"},
		{"header just over the cap", binary.LittleEndian.AppendUint64(nil, maxSafetensorsHeader+1), "", "limit"},
		{"truncated data", good[:len(good)-1], "w", "beyond"},
		{"bad JSON", rawSafetensors(`{"w":{"dtype":"F32",`, nil), "", "JSON"},
		{"not an object", rawSafetensors(`[1,2]`, nil), "", "not a JSON object"},
		{"trailing junk", rawSafetensors(`{}  x`, nil), "", "after the object"},
		{"entry not an object", rawSafetensors(`{"w":3}`, nil), "w", "bad header entry"},
		{"missing field", rawSafetensors(`{"w":{"dtype":"F32","shape":[2]}}`, eight), "w", "data_offsets"},
		{"unknown dtype", rawSafetensors(`{"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}`, eight), "w", "unsupported dtype"},
		{"negative dim", rawSafetensors(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, eight), "w", "not a size"},
		{"fractional dim", rawSafetensors(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}`, eight), "w", "not a size"},
		{"shape overflow", rawSafetensors(`{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647,2147483647],"data_offsets":[0,8]}}`, eight), "w", "overflows"},
		{"overflow by the dtype size", rawSafetensors(`{"w":{"dtype":"F64","shape":[2147483647,2147483647,2],"data_offsets":[0,8]}}`, eight), "w", "needs"},
		{"size disagrees", rawSafetensors(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, eight), "w", "needs 3×4 bytes"},
		{"offsets reversed", rawSafetensors(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, eight), "w", "not a range"},
		{"negative offset", rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, eight), "w", "not a range"},
		{"three offsets", rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}`, eight), "w", "3 values"},
		{"offset out of range", rawSafetensors(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, eight), "w", "beyond"},
		{"huge offset", rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}`, eight), "w", "not a range"},
		{"overlap", rawSafetensors(`{"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), "v", "overlap"},
		{"gap", rawSafetensors(`{"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), "u", "gap"},
		{"left over data", rawSafetensors(`{"u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, eight), "", "cover 4 bytes of a 8-byte"},
		{"duplicate name", rawSafetensors(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), "w", "twice"},
		{"bad metadata", rawSafetensors(`{"__metadata__":{"a":1}}`, nil), "", "__metadata__"},
		{"metadata twice", rawSafetensors(`{"__metadata__":{},"__metadata__":{}}`, nil), "", "twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSafetensors(c.data)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			var se *SafetensorsError
			if !errors.As(err, &se) || se.File != "(bytes)" {
				t.Errorf("error %v is not a SafetensorsError naming the input", err)
			}
			if c.tensor != "" && se != nil && se.Tensor != c.tensor {
				t.Errorf("error names tensor %q, want %q: %v", se.Tensor, c.tensor, msg)
			}
			if !strings.Contains(msg, c.msg) {
				t.Errorf("error %q does not say %q", msg, c.msg)
			}
			// The same bytes in a file give the same error, naming the path.
			path := filepath.Join(t.TempDir(), "hostile.safetensors")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, ferr := ReadSafetensors(path)
			if ferr == nil || !strings.Contains(ferr.Error(), path) || !strings.Contains(ferr.Error(), c.msg) {
				t.Errorf("from a file: %v", ferr)
			}
		})
	}
	// An empty tensor is legal in the format but is no matrix: Tensor says so.
	f, err := ParseSafetensors(rawSafetensors(`{"e":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]}}`, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("e"); err == nil || !strings.Contains(err.Error(), "no elements") {
		t.Errorf("empty tensor: %v", err)
	}
}

func TestWriteFileAtomicKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.safetensors")
	if err := os.WriteFile(path, []byte("old contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := writeFileAtomic(path, func(w io.Writer) error {
		w.Write(bytes.Repeat([]byte("new"), 100000)) // past the buffer, so bytes reach the temporary file
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old contents" {
		t.Errorf("the failed write changed the file: %q…", b[:min(len(b), 20)])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	if err := writeFileAtomic(path, func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("after a good write: %q, mode %v", b, fi.Mode())
	}
	if err := writeFileAtomic(filepath.Join(dir, "no/such/dir/f"), func(io.Writer) error { return nil }); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// TestSafetensorsNumpyFixture reads a file written by hand with numpy
// (testdata/safetensors/make_fixture.py) and compares it with the values
// numpy decoded.
func TestSafetensorsNumpyFixture(t *testing.T) {
	dir := filepath.Join("testdata", "safetensors")
	var expected map[string]struct {
		Shape  []int
		Values []string
	}
	js, err := os.ReadFile(filepath.Join(dir, "numpy_written.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &expected); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "numpy_written.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseSafetensors(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Metadata(); m["format"] != "pt" || len(m) != 2 {
		t.Errorf("metadata %v", m)
	}
	if len(f.Names()) != len(expected) {
		t.Errorf("names %v, want %d", f.Names(), len(expected))
	}
	for name, e := range expected {
		if s := f.Shape(name); !slices.Equal(s, e.Shape) || s == nil {
			t.Errorf("%s: shape %v, want %v", name, s, e.Shape)
		}
		m, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		r, c := m.Dims()
		switch len(e.Shape) {
		case 0:
			if r != 1 || c != 1 {
				t.Errorf("%s: 0-D read as %s", name, ShapeOf(r, c))
			}
		case 1:
			if r != 1 || c != e.Shape[0] {
				t.Errorf("%s: 1-D read as %s", name, ShapeOf(r, c))
			}
		default:
			if r != e.Shape[0] || r*c != len(e.Values) {
				t.Errorf("%s: %v read as %s", name, e.Shape, ShapeOf(r, c))
			}
		}
		got := m.RawMatrix().Data
		for i, s := range e.Values {
			w, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			if math.Float64bits(got[i]) != math.Float64bits(w) {
				t.Errorf("%s[%d] = %v, want %v", name, i, got[i], w)
			}
		}
	}
	// Reading the file from disk gives the same.
	all, _, err := ReadSafetensors(filepath.Join(dir, "numpy_written.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(expected) {
		t.Errorf("ReadSafetensors: %d tensors", len(all))
	}
}

// TestSafetensorsPythonReadsGo writes a file and has numpy read it back
// (testdata/safetensors/check_go_written.py), checking each dtype's bits
// against numpy's own conversions. Skipped without /usr/bin/python3.
func TestSafetensorsPythonReadsGo(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no", python)
	}
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		t.Skip("no numpy")
	}
	dir := t.TempDir()
	specials := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 65504, 65520, 1e-8, math.Ldexp(1, -25),
		math.Ldexp(3, -25), 1 + math.Ldexp(1, -11) + math.Ldexp(1, -40), 1 + math.Ldexp(1, -8) + math.Ldexp(1, -30), 3.4e38, 1e-45, 0.1}
	rng := rand.New(rand.NewPCG(3, 4))
	vals := slices.Clone(specials)
	for len(vals) < 400 {
		// Values across the formats' ranges, and exact ties of F16/BF16.
		switch len(vals) % 4 {
		case 0:
			vals = append(vals, rng.NormFloat64()*math.Pow(10, float64(rng.IntN(20)-10)))
		case 1:
			vals = append(vals, float64(rng.IntN(4096))/1024+1+math.Ldexp(1, -11))
		case 2:
			vals = append(vals, math.Ldexp(rng.Float64(), rng.IntN(60)-40))
		default:
			vals = append(vals, -math.Ldexp(float64(257+2*rng.IntN(128)), -8)) // BF16 ties
		}
	}
	m := mat.NewDense(20, 20, vals)
	tensors := map[string]*mat.Dense{"m": m, "bias": mat.NewDense(1, 5, vals[:5]), "s": mat.NewDense(1, 1, []float64{math.E})}
	shapes := map[string][]int{"bias": {5}, "s": {}}
	meta := map[string]string{"format": "pt"}
	expected := map[string]any{"__metadata__": meta}
	hexes := func(x []float64) []string {
		var s []string
		for _, v := range x {
			s = append(s, strconv.FormatFloat(v, 'x', -1, 64))
		}
		return s
	}
	expected["m"] = map[string]any{"shape": []int{20, 20}, "values": hexes(vals)}
	expected["bias"] = map[string]any{"shape": []int{5}, "values": hexes(vals[:5])}
	expected["s"] = map[string]any{"shape": []int{}, "values": hexes([]float64{math.E})}
	js, _ := json.Marshal(expected)
	expPath := filepath.Join(dir, "expected.json")
	if err := os.WriteFile(expPath, js, 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs(filepath.Join("testdata", "safetensors", "check_go_written.py"))
	args := []string{script, expPath}
	for _, dtype := range []string{"F64", "F32", "F16", "BF16"} {
		path := filepath.Join(dir, dtype+".safetensors")
		if err := WriteSafetensorsShaped(path, tensors, shapes, dtype, meta); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	out, err := exec.Command(python, args...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok 1624") { // 4 files × 406 values
		t.Errorf("python: %v\n%s", err, out)
	}
}

func FuzzParseSafetensors(f *testing.F) {
	// Seeds: a real file of every dtype and shape kind, and a few broken ones.
	tensors := map[string]*mat.Dense{"a": testMatrix(2, 3, 1), "b": mat.NewDense(1, 2, []float64{1, 2}), "c": mat.NewDense(1, 1, []float64{3})}
	for _, dtype := range []string{"F64", "F32", "F16", "BF16"} {
		b, err := EncodeSafetensors(tensors, map[string][]int{"b": {2}, "c": {}}, dtype, map[string]string{"k": "v"})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if b, err := os.ReadFile(filepath.Join("testdata", "safetensors", "numpy_written.safetensors")); err == nil {
		f.Add(b)
	}
	f.Add(rawSafetensors(`{"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"I8","shape":[1,1,1],"data_offsets":[8,9]}}`, make([]byte, 9)))
	f.Add(rawSafetensors(`{"e":{"dtype":"BOOL","shape":[0,3],"data_offsets":[0,0]}}`, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := ParseSafetensors(data)
		if err != nil {
			if sf != nil {
				t.Fatal("file and error both returned")
			}
			return
		}
		for _, name := range sf.Names() {
			shape := sf.Shape(name)
			m, err := sf.Tensor(name)
			if err != nil {
				continue
			}
			n := 1
			for _, d := range shape {
				n *= d
			}
			r, c := m.Dims()
			if r*c != n {
				t.Fatalf("%s: shape %v read as %s", name, shape, ShapeOf(r, c))
			}
		}
	})
}

// TestWriteFileAtomicCrash kills a process in the middle of a write: the old
// file stays whole. The test binary re-runs itself as the writer.
func TestWriteFileAtomicCrash(t *testing.T) {
	if path := os.Getenv("GOPEFT_CRASH_WRITE"); path != "" {
		// The child: write half a file, say so, and hang until killed.
		writeFileAtomic(path, func(w io.Writer) error {
			w.Write(bytes.Repeat([]byte("new!"), 1<<18)) // 1 MiB, past the buffer
			os.WriteFile(path+".ready", nil, 0o644)
			time.Sleep(time.Minute)
			return nil
		})
		return
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	old := rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFileAtomicCrash$")
	cmd.Env = append(os.Environ(), "GOPEFT_CRASH_WRITE="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path + ".ready"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the writer never got going")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after the crash the file is %d bytes (%v), want the old %d", len(got), err, len(old))
	}
	if _, err := ParseSafetensors(got); err != nil {
		t.Error(err)
	}
	// What the crash leaves is a temporary file beside it, never the target.
	entries, _ := os.ReadDir(dir)
	tmp := 0
	for _, e := range entries {
		switch n := e.Name(); {
		case strings.HasPrefix(n, ".w.safetensors.tmp-"):
			tmp++
			if fi, _ := e.Info(); fi.Size() < 1<<16 {
				t.Errorf("the temporary file has %d bytes: the writer did not get far", fi.Size())
			}
		case n != "w.safetensors" && n != "w.safetensors.ready":
			t.Errorf("unexpected %s", n)
		}
	}
	if tmp != 1 {
		t.Errorf("%d temporary files, want the killed writer's 1", tmp)
	}
}

// TestSafetensorsNamesUTF8: a tensor name that is not valid UTF-8 (raw
// bytes, or an unpaired surrogate escape) is an error naming the file and
// the name, quoted with %q, on reading, rather than a name silently
// changed to U+FFFD; writing refuses such names and metadata; escaped
// valid names read back exactly.
func TestSafetensorsNamesUTF8(t *testing.T) {
	eight := make([]byte, 8)
	entry := `{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	dir := t.TempDir()
	for _, c := range []struct {
		key  string // as written in the header JSON
		want string // %q of the name in the error
	}{
		{"a\xffb", `"a\xffb"`},
		{"fc1.lora_A.weight\xc3", `"fc1.lora_A.weight\xc3"`},
		{`a\udc00b`, `"a\xed\xb0\x80b"`},
		{`a\ud800`, `"a\xed\xa0\x80"`},
		{`a\ud800\u0041`, `"a\xed\xa0\x80A"`},
	} {
		raw := rawSafetensors(`{"ok":`+entry+`, "`+c.key+`":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}`, eight)
		path := filepath.Join(dir, "bad.safetensors")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, open := range []func() error{
			func() error { _, err := ParseSafetensors(raw); return err },
			func() error {
				f, err := OpenSafetensors(path)
				if err == nil {
					f.Close()
				}
				return err
			},
		} {
			err := open()
			if err == nil {
				t.Errorf("%q: read", c.key)
				continue
			}
			if !strings.Contains(err.Error(), "tensor "+c.want) || !strings.Contains(err.Error(), "UTF-8") {
				t.Errorf("%q: error %q lacks %s", c.key, err, c.want)
			}
			if f := err.(*SafetensorsError).File; f != path && f != "(bytes)" {
				t.Errorf("error names file %q", f)
			}
		}
	}
	// Invalid UTF-8 elsewhere in the header: also refused.
	for _, hdr := range []string{
		`{"w":` + entry + `,"__metadata__":{"format":"p` + "\xff" + `t"}}`,
		`{"w":` + entry + `,"__metadata__":{"format":"\udfff"}}`,
		`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":"` + "\xfe" + `"}}`,
	} {
		if _, err := ParseSafetensors(rawSafetensors(hdr, eight)); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%q: %v", hdr, err)
		}
	}
	// Valid names, escaped or not, read back as they are.
	for key, want := range map[string]string{
		`caf\u00e9`:         "café",
		"café":              "café",
		`\ud83d\ude00`:      "😀",
		`a\"b\\c\/d\n\t`:    "a\"b\\c/d\n\t",
		`\uFFFD`:            "\uFFFD",
		"already \uFFFD ok": "already \uFFFD ok",
	} {
		f, err := ParseSafetensors(rawSafetensors(`{"`+key+`":`+entry+`}`, eight))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if n := f.Names(); len(n) != 1 || n[0] != want {
			t.Errorf("%s: read as %q, want %q", key, n, want)
		}
	}
	// Writing: a name or metadata that JSON would change is refused.
	one := mat.NewDense(1, 1, []float64{1})
	path := filepath.Join(dir, "w.safetensors")
	err := WriteSafetensors(path, map[string]*mat.Dense{"ok": one, "a\xffb": one}, "F32", nil)
	if err == nil || !strings.Contains(err.Error(), `"a\xffb"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("writing an invalid name: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused write left a file: %v", err)
	}
	if _, err := EncodeSafetensors(map[string]*mat.Dense{"w": one}, nil, "F32", map[string]string{"k": "v\x80"}); err == nil || !strings.Contains(err.Error(), `"v\x80"`) {
		t.Errorf("writing invalid metadata: %v", err)
	}
	if err := WriteSafetensors(path, map[string]*mat.Dense{"café 😀": one}, "F32", map[string]string{"ключ": "值"}); err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := f.Names(); n[0] != "café 😀" || f.Metadata()["ключ"] != "值" {
		t.Errorf("round trip: %q %v", n, f.Metadata())
	}
}

// FuzzDecodeJSONString: on every string literal encoding/json accepts,
// decodeJSONString reads the whole literal, gives json's value when it
// says the value is valid UTF-8, and says it is not only where json put a
// U+FFFD of its own.
func FuzzDecodeJSONString(f *testing.F) {
	for _, s := range []string{`abc`, `caf\u00e9`, `\ud83d\ude00`, `\ud800`, `\udc00x`, "a\xffb", `\"\\\/\b\f\n\r\t`, `\uFFFD`, `\ud800\ud800`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lit := append(append([]byte{'"'}, b...), '"')
		var want string
		if json.Unmarshal(lit, &want) != nil {
			return
		}
		v, n, valid := decodeJSONString(lit)
		if n != len(lit) {
			t.Fatalf("%q: read %d of %d bytes", lit, n, len(lit))
		}
		if valid && string(v) != want {
			t.Fatalf("%q: decoded %q, json %q", lit, v, want)
		}
		if !valid && !strings.Contains(want, "\uFFFD") {
			t.Fatalf("%q: said invalid, json read %q", lit, want)
		}
		if _, bad := invalidJSONString(lit); bad != !valid {
			t.Fatalf("%q: invalidJSONString %v, decodeJSONString valid %v", lit, bad, valid)
		}
	})
}
