package peft

// This file reads and writes the safetensors format
// (https://github.com/huggingface/safetensors), in which PyTorch, HuggingFace
// transformers and PEFT store weights:
//
//	8 bytes    N, the header length, little-endian uint64
//	N bytes    JSON: {"<name>": {"dtype": "F32", "shape": [d0, d1, …],
//	                              "data_offsets": [begin, end]}, …,
//	                  "__metadata__": {"<key>": "<string>", …}}
//	the rest   the data buffer; each tensor's bytes are buffer[begin:end],
//	           row-major, little-endian.
//
// gopeft's tensors are matrices, so a tensor of shape
//
//	[]           (0-D, a scalar) reads as 1×1,
//	[n]          (1-D: a bias, a LayerNorm gain) reads as 1×n,
//	[r, c]       reads as r×c,
//	[d0, d1, …]  (more than 2-D) reads as d0 × (d1·d2·…), row-major,
//
// and Shape always reports the shape stored in the file. Every value is
// converted to float64.
//
// The reader trusts nothing in a file: the header length is capped at
// maxSafetensorsHeader, every offset and shape is checked against the real
// size of the data before anything is allocated from it, and a malformed
// file is an error naming the file and the tensor, never a panic.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"gonum.org/v1/gonum/mat"
)

// maxSafetensorsHeader caps the JSON header's length (the reference
// implementation uses the same 100 MB limit).
const maxSafetensorsHeader = 100_000_000

// SafetensorsError is the error of a malformed or unreadable safetensors file.
// Tensor is empty when the problem is not one tensor's.
type SafetensorsError struct {
	File   string // the file's path, or "(bytes)" for ParseSafetensors
	Tensor string // the tensor concerned, or ""
	Msg    string // what is wrong
	Err    error  // an underlying error (I/O, JSON), or nil
}

func (e *SafetensorsError) Error() string {
	var b strings.Builder
	b.WriteString("peft: safetensors ")
	b.WriteString(e.File)
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *SafetensorsError) Unwrap() error { return e.Err }

// dtypeSize gives the size in bytes of every element type that can be read.
// Integers and booleans read as float64 too (an I64 above 2⁵³ loses its low
// bits); only F64, F32, F16 and BF16 can be written.
var dtypeSize = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2,
	"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}

// stEntry is one tensor's header entry, checked.
type stEntry struct {
	dtype      string
	shape      []int
	begin, end int64 // in the data buffer
	rows, cols int   // its matrix shape
}

// SafetensorsFile is an opened safetensors file whose header has been read
// and checked; Tensor reads one tensor's bytes when asked, so a large file
// costs only what is used. Close it when done (a no-op for one made by
// ParseSafetensors).
type SafetensorsFile struct {
	name     string
	f        *os.File // nil for ParseSafetensors
	data     []byte   // the data buffer, for ParseSafetensors
	dataAt   int64    // where the data buffer starts in f
	entries  map[string]*stEntry
	names    []string // sorted
	metadata map[string]string
}

// OpenSafetensors opens the safetensors file at path and reads and checks
// only its header.
func OpenSafetensors(path string) (*SafetensorsFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &SafetensorsError{File: path, Msg: "cannot open", Err: err}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &SafetensorsError{File: path, Msg: "cannot stat", Err: err}
	}
	size := fi.Size()
	var lenBuf [8]byte
	if _, err := io.ReadFull(f, lenBuf[:]); err != nil {
		f.Close()
		return nil, &SafetensorsError{File: path, Msg: fmt.Sprintf("truncated: %d bytes, shorter than the 8-byte header length", size)}
	}
	n, err := checkHeaderLen(path, binary.LittleEndian.Uint64(lenBuf[:]), size-8)
	if err != nil {
		f.Close()
		return nil, err
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		f.Close()
		return nil, &SafetensorsError{File: path, Msg: "cannot read header", Err: err}
	}
	sf := &SafetensorsFile{name: path, f: f, dataAt: 8 + n}
	if err := sf.parseHeader(hdr, size-8-n); err != nil {
		f.Close()
		return nil, err
	}
	return sf, nil
}

// ParseSafetensors reads the safetensors file held in data (for example
// bytes embedded with go:embed). data is not copied; the tensors Tensor
// returns are.
func ParseSafetensors(data []byte) (*SafetensorsFile, error) {
	const name = "(bytes)"
	if len(data) < 8 {
		return nil, &SafetensorsError{File: name, Msg: fmt.Sprintf("truncated: %d bytes, shorter than the 8-byte header length", len(data))}
	}
	n, err := checkHeaderLen(name, binary.LittleEndian.Uint64(data), int64(len(data))-8)
	if err != nil {
		return nil, err
	}
	sf := &SafetensorsFile{name: name, data: data[8+n:]}
	if err := sf.parseHeader(data[8:8+n], int64(len(data))-8-n); err != nil {
		return nil, err
	}
	return sf, nil
}

// checkHeaderLen checks a header length n read from a file with avail bytes
// after the length itself.
func checkHeaderLen(name string, n uint64, avail int64) (int64, error) {
	switch {
	case n < 2:
		return 0, &SafetensorsError{File: name, Msg: fmt.Sprintf("header length %d is too small for a JSON object", n)}
	case n > maxSafetensorsHeader:
		return 0, &SafetensorsError{File: name, Msg: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, maxSafetensorsHeader)}
	case int64(n) > avail:
		return 0, &SafetensorsError{File: name, Msg: fmt.Sprintf("truncated: header length %d but only %d bytes follow", n, avail)}
	}
	return int64(n), nil
}

// parseHeader decodes and checks the JSON header hdr of a file whose data
// buffer is bufLen bytes long.
func (sf *SafetensorsFile) parseHeader(hdr []byte, bufLen int64) error {
	fail := func(tensor, msg string, err error) error {
		return &SafetensorsError{File: sf.name, Tensor: tensor, Msg: msg, Err: err}
	}
	// The header is walked token by token, not decoded into a map, so that a
	// name given twice is caught rather than silently overwritten.
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return fail("", "header is not a JSON object", err)
	}
	sf.entries = map[string]*stEntry{}
	seenMeta := false
	for dec.More() {
		keyAt := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return fail("", "bad header JSON", err)
		}
		name, ok := tok.(string)
		if !ok {
			return fail("", "bad header JSON: key is not a string", nil)
		}
		// encoding/json turns invalid UTF-8 (and an unpaired surrogate
		// escape) into U+FFFD: read the name from its bytes instead.
		if bad, ok := invalidJSONString(hdr[keyAt:dec.InputOffset()]); ok {
			return fail(bad, "tensor name is not valid UTF-8", nil)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fail(name, "bad header JSON", err)
		}
		if bad, ok := invalidJSONString(raw); ok {
			return fail(name, fmt.Sprintf("header entry holds the string %q, which is not valid UTF-8", bad), nil)
		}
		if name == "__metadata__" {
			if seenMeta {
				return fail("", "__metadata__ given twice", nil)
			}
			seenMeta = true
			if string(raw) == "null" {
				continue
			}
			if err := json.Unmarshal(raw, &sf.metadata); err != nil {
				return fail("", "__metadata__ must map strings to strings", err)
			}
			continue
		}
		if _, dup := sf.entries[name]; dup {
			return fail(name, "tensor named twice in the header", nil)
		}
		e, err := checkEntry(raw, bufLen)
		if err != nil {
			return fail(name, err.Error(), nil)
		}
		sf.entries[name] = e
	}
	if _, err := dec.Token(); err != nil {
		return fail("", "bad header JSON", err)
	}
	// Only padding may follow the object.
	if rest := hdr[dec.InputOffset():]; len(bytes.TrimSpace(rest)) > 0 {
		return fail("", "bad header JSON: data after the object", nil)
	}
	for name := range sf.entries {
		sf.names = append(sf.names, name)
	}
	sort.Strings(sf.names)

	// The tensors must tile the data buffer exactly, in offset order: no
	// overlap, no gap, nothing left over (as the reference implementation
	// requires).
	order := slices.Clone(sf.names)
	sort.SliceStable(order, func(i, j int) bool {
		a, b := sf.entries[order[i]], sf.entries[order[j]]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		return a.end < b.end
	})
	var at int64
	for _, name := range order {
		e := sf.entries[name]
		if e.begin != at {
			if e.begin < at {
				return fail(name, fmt.Sprintf("data_offsets [%d, %d] overlap the previous tensor, which ends at %d", e.begin, e.end, at), nil)
			}
			return fail(name, fmt.Sprintf("data_offsets [%d, %d] leave a gap after byte %d", e.begin, e.end, at), nil)
		}
		at = e.end
	}
	if at != bufLen {
		return fail("", fmt.Sprintf("tensors cover %d bytes of a %d-byte data buffer", at, bufLen), nil)
	}
	return nil
}

// invalidJSONString finds the first string literal in the JSON text b
// whose value is not valid UTF-8 (raw invalid bytes, or a \uD800–\uDFFF
// escape not in a surrogate pair) and returns that value, with the bad
// bytes kept (an unpaired surrogate as its 3-byte WTF-8 form), for %q.
// b may start or end outside a literal; a literal cut short counts to the
// end of b.
func invalidJSONString(b []byte) (string, bool) {
	if utf8.Valid(b) && !bytes.Contains(b, []byte(`\u`)) {
		return "", false // the common case: nothing to decode
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '"' {
			continue
		}
		v, n, ok := decodeJSONString(b[i:])
		if !ok {
			return string(v), true
		}
		i += n - 1
	}
	return "", false
}

// decodeJSONString decodes the string literal at the start of s (s[0] is
// '"'), keeping what encoding/json would replace, and returns its value,
// the literal's length and whether the value is valid UTF-8.
func decodeJSONString(s []byte) (v []byte, n int, valid bool) {
	valid = true
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return v, i + 1, valid
		case c == '\\' && i+1 < len(s):
			e := s[i+1]
			if e != 'u' {
				switch e {
				case 'b':
					e = '\b'
				case 'f':
					e = '\f'
				case 'n':
					e = '\n'
				case 'r':
					e = '\r'
				case 't':
					e = '\t'
				} // \" \\ \/ stand for themselves
				v = append(v, e)
				i += 2
				continue
			}
			r, ok := hex4(s[i+2:])
			if !ok {
				v = append(v, s[i:i+2]...)
				i += 2
				continue
			}
			i += 6
			if utf16IsSurrogate(r) {
				if r < 0xDC00 && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2, ok := hex4(s[i+2:]); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
						v = utf8.AppendRune(v, 0x10000+(r-0xD800)<<10+(r2-0xDC00))
						i += 6
						continue
					}
				}
				valid = false
				v = append(v, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
				continue
			}
			v = utf8.AppendRune(v, r)
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				valid = false
			}
			v = append(v, s[i:i+size]...)
			i += size
		}
	}
	return v, len(s), valid
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func utf16IsSurrogate(r rune) bool { return 0xD800 <= r && r <= 0xDFFF }

// checkEntry decodes and checks one tensor's header entry against a data
// buffer of bufLen bytes. Its error names no file or tensor; the caller adds
// them.
func checkEntry(raw json.RawMessage, bufLen int64) (*stEntry, error) {
	var h struct {
		DType       *string       `json:"dtype"`
		Shape       []json.Number `json:"shape"`
		DataOffsets []json.Number `json:"data_offsets"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("bad header entry: %v", err)
	}
	if h.DType == nil || h.Shape == nil || h.DataOffsets == nil {
		return nil, errors.New(`header entry needs "dtype", "shape" and "data_offsets"`)
	}
	e := &stEntry{dtype: *h.DType}
	size, ok := dtypeSize[e.dtype]
	if !ok {
		return nil, fmt.Errorf("unsupported dtype %q (want F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)", e.dtype)
	}
	if len(h.Shape) > 64 {
		return nil, fmt.Errorf("shape has %d dimensions", len(h.Shape))
	}
	// count = ∏ shape, checked for overflow before it is used.
	var count int64 = 1
	e.shape = make([]int, len(h.Shape))
	for i, s := range h.Shape {
		d, err := s.Int64()
		if err != nil || d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("shape %v: dimension %s is not a size", h.Shape, s)
		}
		e.shape[i] = int(d)
		if d != 0 && count > math.MaxInt64/d {
			return nil, fmt.Errorf("shape %v overflows", e.shape)
		}
		count *= d
	}
	if len(h.DataOffsets) != 2 {
		return nil, fmt.Errorf("data_offsets has %d values, want 2", len(h.DataOffsets))
	}
	b, err1 := h.DataOffsets[0].Int64()
	en, err2 := h.DataOffsets[1].Int64()
	if err1 != nil || err2 != nil || b < 0 || en < b {
		return nil, fmt.Errorf("data_offsets %v are not a range", h.DataOffsets)
	}
	if en > bufLen {
		return nil, fmt.Errorf("data_offsets [%d, %d] lie beyond the %d-byte data buffer", b, en, bufLen)
	}
	e.begin, e.end = b, en
	if count > math.MaxInt64/int64(size) || count*int64(size) != en-b {
		return nil, fmt.Errorf("shape %v of %s needs %d×%d bytes but data_offsets [%d, %d] hold %d", e.shape, e.dtype, count, size, b, en, en-b)
	}
	// Matrix shape: 0-D → 1×1, [n] → 1×n, [r, c] → r×c, [d0, …] → d0×rest.
	switch len(e.shape) {
	case 0:
		e.rows, e.cols = 1, 1
	case 1:
		e.rows, e.cols = 1, e.shape[0]
	default:
		e.rows = e.shape[0]
		if e.rows != 0 {
			e.cols = int(count) / e.rows
		} // else empty: cols stays 0 and Tensor refuses it
	}
	return e, nil
}

// Names returns the names of the file's tensors, sorted.
func (f *SafetensorsFile) Names() []string { return slices.Clone(f.names) }

// Has reports whether the file holds a tensor named name.
func (f *SafetensorsFile) Has(name string) bool { _, ok := f.entries[name]; return ok }

// Shape returns the shape of tensor name as stored in the file (nil if there
// is no such tensor). A 0-D tensor has shape [].
func (f *SafetensorsFile) Shape(name string) []int {
	e, ok := f.entries[name]
	if !ok {
		return nil
	}
	return slices.Clone(e.shape)
}

// DType returns the element type of tensor name ("F32", …), or "" if there
// is no such tensor.
func (f *SafetensorsFile) DType(name string) string {
	if e, ok := f.entries[name]; ok {
		return e.dtype
	}
	return ""
}

// Metadata returns a copy of the file's __metadata__ (nil if it has none).
func (f *SafetensorsFile) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Close closes the underlying file.
func (f *SafetensorsFile) Close() error {
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// Tensor reads tensor name, converted to float64, as a matrix (see the file
// comment for how shapes map to matrices). Only that tensor's bytes are read.
// A tensor with no elements cannot be a mat.Dense and is an error.
func (f *SafetensorsFile) Tensor(name string) (*mat.Dense, error) {
	e, ok := f.entries[name]
	if !ok {
		return nil, &SafetensorsError{File: f.name, Tensor: name, Msg: "no such tensor"}
	}
	if e.rows == 0 || e.cols == 0 {
		return nil, &SafetensorsError{File: f.name, Tensor: name, Msg: fmt.Sprintf("shape %v has no elements", e.shape)}
	}
	var raw []byte
	if f.f == nil && f.data == nil && e.end > e.begin {
		return nil, &SafetensorsError{File: f.name, Tensor: name, Msg: "file is closed"}
	}
	if f.f != nil {
		raw = make([]byte, e.end-e.begin)
		if _, err := f.f.ReadAt(raw, f.dataAt+e.begin); err != nil {
			return nil, &SafetensorsError{File: f.name, Tensor: name, Msg: "cannot read data", Err: err}
		}
	} else {
		raw = f.data[e.begin:e.end]
	}
	v := make([]float64, e.rows*e.cols)
	DecodeValues(v, raw, e.dtype)
	return mat.NewDense(e.rows, e.cols, v), nil
}

// DecodeValues converts the little-endian elements of a safetensors dtype
// (F64, F32, F16, BF16, I64 … U8, BOOL) in raw into v, exactly; raw holds
// len(v) elements. It panics on any other dtype. peft/ckpt's streaming
// reader decodes its chunks with it.
func DecodeValues(v []float64, raw []byte, dtype string) {
	le := binary.LittleEndian
	switch dtype {
	case "F64":
		for i := range v {
			v[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
	case "F32":
		for i := range v {
			v[i] = float64(math.Float32frombits(le.Uint32(raw[4*i:])))
		}
	case "F16":
		for i := range v {
			v[i] = F16ToFloat64(le.Uint16(raw[2*i:]))
		}
	case "BF16":
		for i := range v {
			v[i] = BF16ToFloat64(le.Uint16(raw[2*i:]))
		}
	case "I64":
		for i := range v {
			v[i] = float64(int64(le.Uint64(raw[8*i:])))
		}
	case "I32":
		for i := range v {
			v[i] = float64(int32(le.Uint32(raw[4*i:])))
		}
	case "I16":
		for i := range v {
			v[i] = float64(int16(le.Uint16(raw[2*i:])))
		}
	case "I8":
		for i := range v {
			v[i] = float64(int8(raw[i]))
		}
	case "U8":
		for i := range v {
			v[i] = float64(raw[i])
		}
	case "BOOL":
		for i := range v {
			if raw[i] != 0 {
				v[i] = 1
			} else {
				v[i] = 0
			}
		}
	default:
		panic("peft: DecodeValues: unchecked dtype " + dtype)
	}
}

// ReadSafetensors reads every tensor of the safetensors file at path, and its
// metadata.
func ReadSafetensors(path string) (map[string]*mat.Dense, map[string]string, error) {
	f, err := OpenSafetensors(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return f.all()
}

// all reads every tensor of f.
func (f *SafetensorsFile) all() (map[string]*mat.Dense, map[string]string, error) {
	out := make(map[string]*mat.Dense, len(f.names))
	for _, name := range f.names {
		t, err := f.Tensor(name)
		if err != nil {
			return nil, nil, err
		}
		out[name] = t
	}
	return out, f.Metadata(), nil
}

// WriteSafetensors writes tensors to path in the safetensors format,
// converted to dtype ("F64", "F32", "F16" or "BF16"; F32, F16 and BF16 round
// to nearest, ties to even, and keep infinities and NaNs), with metadata in
// the header's __metadata__ (none if metadata is nil). Each r×c matrix is
// stored with the 2-D shape [r, c]; use WriteSafetensorsShaped to store a
// PyTorch shape such as a bias's 1-D [n]. The write is atomic: a crash leaves
// the old file whole. The same tensors give the same bytes.
func WriteSafetensors(path string, tensors map[string]*mat.Dense, dtype string, metadata map[string]string) error {
	return WriteSafetensorsShaped(path, tensors, nil, dtype, metadata)
}

// WriteSafetensorsShaped is WriteSafetensors with the stored shape of some
// tensors given in shapes: shapes[name] must have as many elements as the
// r×c matrix (for example [n] for a 1×n bias, [] for a 1×1 scalar, [a, b, c]
// for an a×(b·c) matrix). Tensors not in shapes are stored as [r, c].
func WriteSafetensorsShaped(path string, tensors map[string]*mat.Dense, shapes map[string][]int, dtype string, metadata map[string]string) error {
	hdr, names, err := safetensorsHeader(path, tensors, shapes, dtype, metadata)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, func(w io.Writer) error {
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		return writeValues(w, tensors, names, dtype)
	})
}

// EncodeSafetensors returns the bytes WriteSafetensorsShaped would write.
func EncodeSafetensors(tensors map[string]*mat.Dense, shapes map[string][]int, dtype string, metadata map[string]string) ([]byte, error) {
	hdr, names, err := safetensorsHeader("(bytes)", tensors, shapes, dtype, metadata)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(hdr)
	if err := writeValues(&buf, tensors, names, dtype); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// safetensorsHeader checks the arguments of a write and returns the 8-byte
// length followed by the JSON header, and the tensor names in data order
// (sorted).
func safetensorsHeader(path string, tensors map[string]*mat.Dense, shapes map[string][]int, dtype string, metadata map[string]string) ([]byte, []string, error) {
	size, ok := dtypeSize[dtype]
	if !ok || !(dtype == "F64" || dtype == "F32" || dtype == "F16" || dtype == "BF16") {
		return nil, nil, &SafetensorsError{File: path, Msg: fmt.Sprintf("cannot write dtype %q (want F64, F32, F16 or BF16)", dtype)}
	}
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	for name := range shapes {
		if _, ok := tensors[name]; !ok {
			return nil, nil, &SafetensorsError{File: path, Tensor: name, Msg: "shape given for a tensor that is not written"}
		}
	}
	type entry struct {
		DType       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	header := make(map[string]any, len(tensors)+1)
	var at int64
	for _, name := range names {
		t := tensors[name]
		if name == "" || name == "__metadata__" {
			return nil, nil, &SafetensorsError{File: path, Tensor: name, Msg: "reserved tensor name"}
		}
		if !utf8.ValidString(name) {
			// JSON would write U+FFFD in its place: another name.
			return nil, nil, &SafetensorsError{File: path, Tensor: name, Msg: "tensor name is not valid UTF-8"}
		}
		if t == nil {
			return nil, nil, &SafetensorsError{File: path, Tensor: name, Msg: "nil matrix"}
		}
		r, c := t.Dims()
		shape := []int{r, c}
		if s, ok := shapes[name]; ok {
			n := 1
			for _, d := range s {
				if d < 0 {
					return nil, nil, &SafetensorsError{File: path, Tensor: name, Msg: fmt.Sprintf("negative dimension in shape %v", s)}
				}
				n *= d
			}
			if n != r*c {
				return nil, nil, &SafetensorsError{File: path, Tensor: name, Msg: fmt.Sprintf("shape %v has %d elements but the matrix is %s", s, n, ShapeOf(r, c))}
			}
			shape = slices.Clone(s)
		}
		n := int64(r*c) * int64(size)
		header[name] = entry{DType: dtype, Shape: shape, DataOffsets: [2]int64{at, at + n}}
		at += n
	}
	if metadata != nil {
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, &SafetensorsError{File: path, Msg: fmt.Sprintf("__metadata__ %q: %q: not valid UTF-8", k, v)}
			}
		}
		header["__metadata__"] = metadata
	}
	var js bytes.Buffer
	js.Write(make([]byte, 8))
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(header); err != nil {
		return nil, nil, &SafetensorsError{File: path, Msg: "cannot encode header", Err: err}
	}
	js.Truncate(js.Len() - 1) // Encode's newline
	// Pad with spaces so the data starts 8-byte aligned, as the reference
	// writer does.
	for js.Len()%8 != 0 {
		js.WriteByte(' ')
	}
	out := js.Bytes()
	binary.LittleEndian.PutUint64(out, uint64(len(out)-8))
	return out, names, nil
}

// writeValues writes the tensors' values, in names' order, as dtype.
func writeValues(w io.Writer, tensors map[string]*mat.Dense, names []string, dtype string) error {
	size := dtypeSize[dtype]
	le := binary.LittleEndian
	for _, name := range names {
		t := tensors[name]
		r, c := t.Dims()
		buf := make([]byte, c*size)
		for i := 0; i < r; i++ {
			for j := 0; j < c; j++ {
				x := t.At(i, j)
				switch dtype {
				case "F64":
					le.PutUint64(buf[8*j:], math.Float64bits(x))
				case "F32":
					le.PutUint32(buf[4*j:], math.Float32bits(float32(x)))
				case "F16":
					le.PutUint16(buf[2*j:], float64ToF16(x))
				case "BF16":
					le.PutUint16(buf[2*j:], float64ToBF16(x))
				}
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// float64ToF16 rounds x to IEEE 754 half precision (1 sign, 5 exponent, 10
// fraction bits), to nearest with ties to even, directly from float64 (going
// through float32 would round twice).
func float64ToF16(x float64) uint16 { return roundToSmallFloat(x, 5, 10) }

// float64ToBF16 rounds x to bfloat16 (1 sign, 8 exponent, 7 fraction bits),
// to nearest with ties to even, directly from float64.
func float64ToBF16(x float64) uint16 { return roundToSmallFloat(x, 8, 7) }

// roundToSmallFloat rounds x to a binary format with eb exponent bits and mb
// fraction bits (at most 16 bits in all), to nearest with ties to even:
// overflow gives ±Inf, underflow gradual subnormals then ±0, and a NaN stays
// a (quiet) NaN with the top bits of its payload.
func roundToSmallFloat(x float64, eb, mb uint) uint16 {
	bits := math.Float64bits(x)
	sign := uint16(bits>>63) << (eb + mb)
	exp := int((bits >> 52) & 0x7ff)
	frac := bits & (1<<52 - 1)
	expAll := uint16(1<<eb-1) << mb // the all-ones exponent field
	if exp == 0x7ff {
		if frac == 0 {
			return sign | expAll // ±Inf
		}
		quiet := uint16(1) << (mb - 1)
		return sign | expAll | quiet | uint16(frac>>(52-mb))
	}
	if exp == 0 {
		// Zero or a float64 subnormal (< 2⁻¹⁰²²): far below half the
		// smallest subnormal of either target, so it rounds to ±0.
		return sign
	}
	bias := 1<<(eb-1) - 1
	e := exp - 1023 // x = 1.frac × 2^e
	emin, emax := 1-bias, bias
	if e > emax {
		return sign | expAll
	}
	sig := uint64(1)<<52 | frac // 53 significant bits
	// Keep mb fraction bits of a normal result, or fewer for a subnormal
	// one, whose unit is 2^(emin−mb).
	shift := uint(52 - mb)
	if e < emin {
		s := 52 - int(mb) + emin - e
		if s > 54 {
			return sign // below a quarter of the smallest subnormal
		}
		shift = uint(s)
	}
	m := sig >> shift
	rem := sig & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || (rem == half && m&1 == 1) {
		m++
	}
	if e < emin {
		// A subnormal: m < 2^mb, or m == 2^mb after rounding up, which is
		// exactly the encoding of the smallest normal.
		return sign | uint16(m)
	}
	if m == 1<<(mb+1) { // rounding carried into the next binade
		m >>= 1
		e++
		if e > emax {
			return sign | expAll
		}
	}
	return sign | uint16(e+bias)<<mb | uint16(m&(1<<mb-1))
}

// BF16ToFloat64 converts a bfloat16 (1 sign, 8 exponent, 7 fraction bits,
// the top half of a float32) to float64, exactly.
func BF16ToFloat64(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }

// F16ToFloat64 converts an IEEE 754 half (1 sign, 5 exponent, 10 fraction
// bits) to float64, exactly: subnormals are frac·2⁻²⁴, the all-ones
// exponent is ±Inf or NaN.
func F16ToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}
