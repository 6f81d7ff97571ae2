package peft

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// seqDense returns an r×c matrix holding start, start+1, … row by row, so
// that the order of its elements shows.
func seqDense(r, c int, start float64) *mat.Dense {
	v := make([]float64, r*c)
	for i := range v {
		v[i] = start + float64(i)
	}
	return mat.NewDense(r, c, v)
}

func newTestWriter() *AdapterWriter {
	return &AdapterWriter{Config: map[string]any{}, tensors: map[string]*mat.Dense{}, shapes: map[string][]int{}}
}

// encodeWriter returns the safetensors file w's tensors make, parsed.
func encodeWriter(t *testing.T, w *AdapterWriter) (*SafetensorsFile, []byte) {
	t.Helper()
	raw, err := EncodeSafetensors(w.tensors, w.shapes, "F64", map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseSafetensors(raw)
	if err != nil {
		t.Fatal(err)
	}
	return f, raw
}

// tensorValues returns the float64 elements of tensor name of the F64
// safetensors file raw, in stored order, read from the bytes themselves.
func tensorValues(t *testing.T, f *SafetensorsFile, raw []byte, name string) []float64 {
	t.Helper()
	e := f.entries[name]
	data := raw[8+binary.LittleEndian.Uint64(raw):]
	var out []float64
	for at := e.begin; at < e.end; at += 8 {
		out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(data[at:])))
	}
	return out
}

// TestSharedShapedRoundTrip: PutSharedShaped stores a matrix with the shape
// it is given (3-D, 4-D, 1-D, 0-D) and its numbers in row-major order, and
// SharedShaped reads it back, with exact or free dimensions, as the
// d0 × (d1·…) matrix.
func TestSharedShapedRoundTrip(t *testing.T) {
	w := newTestWriter()
	cases := []struct {
		name  string
		m     *mat.Dense
		shape []int // stored
		want  []int // asked for on read
	}{
		{"randlora_A", seqDense(3, 8, 1), []int{3, 1, 8}, []int{3, 1, -1}},
		{"randlora_B", seqDense(8, 9, 100), []int{8, 3, 3}, []int{-1, -1, 3}},
		{"four", seqDense(2, 6, 200), []int{2, 3, 1, 2}, []int{2, 3, 1, 2}},
		{"vec", seqDense(1, 5, 300), []int{5}, []int{-1}},
		{"scalar", seqDense(1, 1, 400), []int{}, []int{}},
	}
	for _, c := range cases {
		w.PutSharedShaped(c.name, c.m, c.shape)
	}
	f, raw := encodeWriter(t, w)
	r := &AdapterReader{file: f, used: map[string]bool{}}
	for _, c := range cases {
		tn := sharedPrefix + c.name
		if got := f.Shape(tn); !slices.Equal(got, c.shape) {
			t.Errorf("%s: stored shape %v, want %v", tn, got, c.shape)
		}
		if got, want := tensorValues(t, f, raw, tn), c.m.RawMatrix().Data; !slices.Equal(got, want) {
			t.Errorf("%s: stored %v, want the matrix's elements row by row %v", tn, got, want)
		}
		got, err := r.SharedShaped(c.name, c.want, "a test tensor")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !mat.Equal(got, c.m) {
			t.Errorf("%s: read %v, want %v", c.name, mat.Formatted(got), mat.Formatted(c.m))
		}
		if !r.used[tn] {
			t.Errorf("%s is not marked read", tn)
		}
	}

	// A matrix of another layout with the same elements reads back as
	// d0 × rest: [8, 3, 3] of a 24×3 B̃ reads as 8×9, the numbers in order.
	w = newTestWriter()
	w.PutSharedShaped("b", seqDense(24, 3, 0), []int{8, 3, 3})
	f, _ = encodeWriter(t, w)
	r = &AdapterReader{file: f, used: map[string]bool{}}
	got, err := r.SharedShaped("b", []int{8, 3, 3}, "b")
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(got, seqDense(8, 9, 0)) {
		t.Errorf("read %v, want 0…71 as 8×9", mat.Formatted(got))
	}

	// A tensor with no elements reads as nil, as Tensor's do.
	w = newTestWriter()
	w.PutSharedShaped("empty", &mat.Dense{}, []int{0, 1, 4})
	f, _ = encodeWriter(t, w)
	r = &AdapterReader{file: f, used: map[string]bool{}}
	if got, err := r.SharedShaped("empty", []int{-1, 1, 4}, "empty"); got != nil || err != nil {
		t.Errorf("empty [0 1 4]: read %v, %v; want nil, nil", got, err)
	}
}

// TestSharedShapedErrors: a shape that does not fit, in its number of
// dimensions or in one of them, and a missing tensor are errors naming the
// file, the tensor, what it is and both shapes.
func TestSharedShapedErrors(t *testing.T) {
	w := newTestWriter()
	w.PutShared("flat", seqDense(3, 8, 0), false)                // [3 8]
	w.PutSharedShaped("cube", seqDense(8, 9, 0), []int{8, 3, 3}) // [8 3 3]
	f, _ := encodeWriter(t, w)
	r := &AdapterReader{file: f, used: map[string]bool{}}
	for _, c := range []struct {
		name  string
		shape []int
		want  []string
	}{
		{"flat", []int{3, 1, -1}, []string{`"base_model.flat"`, "[3 8]", "[3 1 *]"}},
		{"cube", []int{-1, -1, 4}, []string{`"base_model.cube"`, "[8 3 3]", "[* * 4]"}},
		{"cube", []int{8, 9}, []string{`"base_model.cube"`, "[8 3 3]", "[8 9]"}},
		{"cube", []int{8, 3, 3, 1}, []string{"[8 3 3]", "[8 3 3 1]"}},
		{"gone", []int{2, 1, 5}, []string{`"base_model.gone"`, "missing", "[2 1 5]"}},
	} {
		m, err := r.SharedShaped(c.name, c.shape, "the test's basis")
		if err == nil {
			t.Errorf("%s as %v: read %v, want an error", c.name, c.shape, m)
			continue
		}
		var se *SafetensorsError
		if !errors.As(err, &se) {
			t.Errorf("%s as %v: %T, want a *SafetensorsError", c.name, c.shape, err)
		}
		for _, s := range append(c.want, "(bytes)", "the test's basis") {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s as %v: %q does not mention %s", c.name, c.shape, err, s)
			}
		}
	}
}

// TestTensorShaped: a module's tensor of any number of dimensions reads
// the same way, and one that does not fit or is missing is an error.
func TestTensorShaped(t *testing.T) {
	w := newTestWriter()
	name := peftPrefix + "fc.copy"
	w.tensors[name] = seqDense(3, 8, 0)
	w.shapes[name] = []int{3, 1, 8}
	f, _ := encodeWriter(t, w)
	r := &AdapterReader{file: f, used: map[string]bool{}, module: &Linear{Name: "fc"}, tensors: map[string]string{".copy": name}}
	got, err := r.TensorShaped(".copy", []int{3, 1, 8}, "a copy")
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(got, seqDense(3, 8, 0)) || !r.used[name] {
		t.Errorf("read %v (marked read: %v), want 0…23 as 3×8", mat.Formatted(got), r.used[name])
	}
	if _, err := r.TensorShaped(".copy", []int{3, 8}, "a copy"); err == nil || !strings.Contains(err.Error(), "[3 1 8]") || !strings.Contains(err.Error(), "[3 8]") || !strings.Contains(err.Error(), name) {
		t.Errorf("wrong shape: %v", err)
	}
	if _, err := r.TensorShaped(".other", []int{3}, "another"); err == nil || !strings.Contains(err.Error(), "no tensor other") {
		t.Errorf("missing tensor: %v", err)
	}
}

// TestPutSharedShapedPanics: a shape whose size is not the matrix's, or
// with a negative dimension, is a programmer error, and the panic gives
// both shapes.
func TestPutSharedShapedPanics(t *testing.T) {
	for _, c := range []struct {
		shape []int
		want  []string
	}{
		{[]int{3, 1, 7}, []string{"randlora_A", "(3×8)", "[3 1 7]", "24 elements"}},
		{[]int{3, -1, -8}, []string{"(3×8)", "[3 -1 -8]"}},
		{[]int{24, 2}, []string{"(3×8)", "[24 2]"}},
	} {
		func() {
			defer func() {
				p := recover()
				e, ok := p.(ShapeError)
				if !ok {
					t.Errorf("%v: panic %v, want a ShapeError", c.shape, p)
					return
				}
				for _, s := range c.want {
					if !strings.Contains(e.Error(), s) {
						t.Errorf("%v: %q does not mention %s", c.shape, e, s)
					}
				}
			}()
			newTestWriter().PutSharedShaped("randlora_A", seqDense(3, 8, 0), c.shape)
		}()
	}
}
