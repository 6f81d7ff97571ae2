package ckpt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// chunkSize is the size of the read buffer: a tensor is read and converted
// this many bytes at a time.
const chunkSize = 1 << 20

// maxHeader caps a safetensors JSON header, as the reference implementation
// does (100 MB).
const maxHeader = 100_000_000

// Error is the error of a malformed or unreadable checkpoint. It names the
// file, and where it applies the tensor and the header field concerned.
type Error struct {
	File   string // the file (a shard, or the index)
	Tensor string // the tensor, or ""
	Field  string // the header field ("dtype", "shape", "data_offsets", "weight_map", …), or ""
	Msg    string
	Err    error // an underlying error (I/O, JSON), or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ckpt: ")
	b.WriteString(e.File)
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
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
func (e *Error) Unwrap() error { return e.Err }

// dtypeSize is the element size of every safetensors dtype. Only F64, F32,
// F16 and BF16 are read as numbers (Readable); the others are listed so that
// their offsets can be checked and the tensors skipped.
var dtypeSize = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2,
	"F8_E4M3": 1, "F8_E5M2": 1,
	"I64": 8, "I32": 4, "I16": 2, "I8": 1,
	"U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}

// Readable reports whether tensors of dtype can be read as float64.
func Readable(dtype string) bool {
	switch dtype {
	case "F64", "F32", "F16", "BF16":
		return true
	}
	return false
}

// TensorInfo describes one tensor of a checkpoint, from its header.
type TensorInfo struct {
	Name  string
	DType string
	Shape []int  // as stored: [out, in] for a linear layer's weight
	File  string // the shard that holds it
	Bytes int64  // stored size

	at int64 // absolute offset of its first byte in File
	sh *shard
}

// Is2D reports whether the tensor is a matrix of a readable dtype with no
// empty dimension: what Analyze looks at.
func (t TensorInfo) Is2D() bool {
	return len(t.Shape) == 2 && t.Shape[0] > 0 && t.Shape[1] > 0 && Readable(t.DType)
}

// Elements returns the number of elements.
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

type shard struct {
	path string
	f    *os.File
}

// Checkpoint is an opened checkpoint: one safetensors file, or the shards of
// an index. Only headers have been read; ReadTo reads one tensor at a time.
// A Checkpoint is not safe for concurrent use. Close it when done.
type Checkpoint struct {
	Path    string // what was opened
	tensors []TensorInfo
	byName  map[string]int
	shards  []*shard
	buf     []byte // the chunk buffer, allocated at the first read
	read    int64  // bytes read so far
}

// Open opens a checkpoint: a safetensors file, a `*.safetensors.index.json`
// index of shards (their paths relative to the index's folder), or a folder
// holding `model.safetensors.index.json` or `model.safetensors`. It reads and
// checks every header; a malformed one is an *Error naming file, tensor and
// field.
func Open(path string) (*Checkpoint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot open", Err: err}
	}
	if fi.IsDir() {
		idx := filepath.Join(path, "model.safetensors.index.json")
		single := filepath.Join(path, "model.safetensors")
		switch {
		case fileExists(idx):
			path = idx
		case fileExists(single):
			path = single
		default:
			return nil, &Error{File: path, Msg: "folder holds neither model.safetensors.index.json nor model.safetensors"}
		}
	}
	c := &Checkpoint{Path: path, byName: map[string]int{}}
	if strings.HasSuffix(path, ".json") {
		err = c.openIndex(path)
	} else {
		var sh *shard
		sh, err = c.openShard(path)
		if err == nil {
			var infos []TensorInfo
			infos, err = readHeader(sh)
			for _, t := range infos {
				c.add(t)
			}
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	sort.Slice(c.tensors, func(i, j int) bool { return naturalLess(c.tensors[i].Name, c.tensors[j].Name) })
	for i, t := range c.tensors {
		c.byName[t.Name] = i
	}
	return c, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func (c *Checkpoint) add(t TensorInfo) { c.tensors = append(c.tensors, t) }

func (c *Checkpoint) openShard(path string) (*shard, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot open", Err: err}
	}
	sh := &shard{path: path, f: f}
	c.shards = append(c.shards, sh)
	return sh, nil
}

// openIndex reads a HuggingFace shard index:
//
//	{"metadata": {"total_size": …}, "weight_map": {"<tensor>": "<shard file>", …}}
//
// and every shard it names. A tensor of the weight map that its shard lacks,
// or a shard that cannot be opened, is an error; tensors a shard holds but
// the weight map does not name are left out, as transformers leaves them.
func (c *Checkpoint) openIndex(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return &Error{File: path, Msg: "cannot read index", Err: err}
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return &Error{File: path, Msg: "bad index JSON", Err: err}
	}
	if len(idx.WeightMap) == 0 {
		return &Error{File: path, Field: "weight_map", Msg: "missing or empty"}
	}
	// Shards in a fixed order, each with the tensors it should hold.
	byShard := map[string][]string{}
	for name, file := range idx.WeightMap {
		if file == "" || filepath.IsAbs(file) || strings.Contains(filepath.ToSlash(file), "../") {
			return &Error{File: path, Tensor: name, Field: "weight_map", Msg: fmt.Sprintf("shard %q is not a file name beside the index", file)}
		}
		byShard[file] = append(byShard[file], name)
	}
	files := make([]string, 0, len(byShard))
	for f := range byShard {
		files = append(files, f)
	}
	sort.Strings(files)
	dir := filepath.Dir(path)
	for _, file := range files {
		names := byShard[file]
		sort.Strings(names)
		p := filepath.Join(dir, file)
		sh, err := c.openShard(p)
		if err != nil {
			return &Error{File: path, Tensor: names[0], Field: "weight_map", Msg: fmt.Sprintf("shard %s of %d tensors cannot be opened", p, len(names)), Err: err}
		}
		infos, err := readHeader(sh)
		if err != nil {
			return err
		}
		have := make(map[string]TensorInfo, len(infos))
		for _, t := range infos {
			have[t.Name] = t
		}
		for _, name := range names {
			t, ok := have[name]
			if !ok {
				return &Error{File: path, Tensor: name, Field: "weight_map", Msg: fmt.Sprintf("shard %s does not hold this tensor", p)}
			}
			c.add(t)
		}
	}
	return nil
}

// readHeader reads and checks the header of a safetensors shard.
func readHeader(sh *shard) ([]TensorInfo, error) {
	fail := func(tensor, field, msg string, err error) error {
		return &Error{File: sh.path, Tensor: tensor, Field: field, Msg: msg, Err: err}
	}
	fi, err := sh.f.Stat()
	if err != nil {
		return nil, fail("", "", "cannot stat", err)
	}
	size := fi.Size()
	var lenBuf [8]byte
	if _, err := sh.f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fail("", "header length", fmt.Sprintf("file of %d bytes is shorter than the 8-byte header length", size), nil)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	switch {
	case n < 2 || n > maxHeader:
		return nil, fail("", "header length", fmt.Sprintf("%d is outside [2, %d]", n, maxHeader), nil)
	case int64(n) > size-8:
		return nil, fail("", "header length", fmt.Sprintf("%d but only %d bytes follow", n, size-8), nil)
	}
	hdr := make([]byte, n)
	if _, err := sh.f.ReadAt(hdr, 8); err != nil {
		return nil, fail("", "", "cannot read header", err)
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &entries); err != nil {
		return nil, fail("", "", "bad header JSON", err)
	}
	dataAt := 8 + int64(n)
	bufLen := size - dataAt
	infos := make([]TensorInfo, 0, len(entries))
	for name, raw := range entries {
		if name == "__metadata__" {
			continue
		}
		var h struct {
			DType       *string `json:"dtype"`
			Shape       []int64 `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fail(name, "", "bad header entry", err)
		}
		switch {
		case h.DType == nil:
			return nil, fail(name, "dtype", "missing", nil)
		case h.Shape == nil:
			return nil, fail(name, "shape", "missing", nil)
		case h.DataOffsets == nil:
			return nil, fail(name, "data_offsets", "missing", nil)
		}
		size, ok := dtypeSize[*h.DType]
		if !ok {
			return nil, fail(name, "dtype", fmt.Sprintf("unknown dtype %q", *h.DType), nil)
		}
		t := TensorInfo{Name: name, DType: *h.DType, File: sh.path, sh: sh, Shape: make([]int, len(h.Shape))}
		count := int64(1)
		for i, d := range h.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fail(name, "shape", fmt.Sprintf("dimension %d of %v is not a size", d, h.Shape), nil)
			}
			t.Shape[i] = int(d)
			if d != 0 && count > math.MaxInt64/16/d {
				return nil, fail(name, "shape", fmt.Sprintf("%v overflows", h.Shape), nil)
			}
			count *= d
		}
		if len(h.DataOffsets) != 2 || h.DataOffsets[0] < 0 || h.DataOffsets[1] < h.DataOffsets[0] {
			return nil, fail(name, "data_offsets", fmt.Sprintf("%v is not a range [begin, end]", h.DataOffsets), nil)
		}
		b, e := h.DataOffsets[0], h.DataOffsets[1]
		if e > bufLen {
			return nil, fail(name, "data_offsets", fmt.Sprintf("[%d, %d] lie beyond the %d-byte data buffer", b, e, bufLen), nil)
		}
		if count*int64(size) != e-b {
			return nil, fail(name, "data_offsets", fmt.Sprintf("[%d, %d] hold %d bytes but shape %v of %s needs %d", b, e, e-b, h.Shape, t.DType, count*int64(size)), nil)
		}
		t.Bytes = e - b
		t.at = dataAt + b
		infos = append(infos, t)
	}
	return infos, nil
}

// Tensors returns every tensor's description, in natural order of names
// (digit runs compare as numbers: layers.2 before layers.10).
func (c *Checkpoint) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(c.tensors))
	copy(out, c.tensors)
	for i := range out {
		out[i].Shape = append([]int(nil), out[i].Shape...)
	}
	return out
}

// Info returns the description of tensor name.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	i, ok := c.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := c.tensors[i]
	t.Shape = append([]int(nil), t.Shape...)
	return t, true
}

// Files returns the files read: the one safetensors file, or the shards.
func (c *Checkpoint) Files() []string {
	out := make([]string, len(c.shards))
	for i, s := range c.shards {
		out[i] = s.path
	}
	return out
}

// TotalBytes returns the stored size of all tensors.
func (c *Checkpoint) TotalBytes() int64 {
	var n int64
	for _, t := range c.tensors {
		n += t.Bytes
	}
	return n
}

// BytesRead returns the tensor bytes ReadTo has read so far.
func (c *Checkpoint) BytesRead() int64 { return c.read }

// BufferBytes returns the bytes the reader itself holds (its chunk buffer):
// apart from the caller's matrix, reading allocates nothing else.
func (c *Checkpoint) BufferBytes() int { return cap(c.buf) }

// Close closes every file.
func (c *Checkpoint) Close() error {
	var first error
	for _, s := range c.shards {
		if s.f != nil {
			if err := s.f.Close(); err != nil && first == nil {
				first = err
			}
			s.f = nil
		}
	}
	return first
}

// ReadTo reads tensor name into dst, converted to float64. A 2-D tensor
// [r, c] reads as r×c; any other shape [d0, d1, …] as d0×(d1·d2·…), a
// 1-D one [n] as 1×n. dst's previous shape and contents are discarded and
// its storage is reused when it is large enough (a zero-value dst is
// allocated), so reading every tensor of a checkpoint into the same dst
// allocates no more than the largest tensor (dst must not be a view into
// a larger matrix: its storage is reused from index 0). The data is read with ReadAt
// in 1 MiB chunks; ctx is checked between chunks.
func (c *Checkpoint) ReadTo(ctx context.Context, dst *mat.Dense, name string) error {
	i, ok := c.byName[name]
	if !ok {
		return &Error{File: c.Path, Tensor: name, Msg: "no such tensor"}
	}
	t := c.tensors[i]
	if !Readable(t.DType) {
		return &Error{File: t.File, Tensor: name, Field: "dtype", Msg: fmt.Sprintf("%s cannot be read as float64 (want F64, F32, F16 or BF16)", t.DType)}
	}
	rows, cols := matrixShape(t.Shape)
	if rows == 0 || cols == 0 {
		return &Error{File: t.File, Tensor: name, Field: "shape", Msg: fmt.Sprintf("%v has no elements", t.Shape)}
	}
	if t.sh.f == nil {
		return &Error{File: t.File, Tensor: name, Msg: "checkpoint is closed"}
	}
	dst.Reset()
	dst.ReuseAs(rows, cols)
	data := dst.RawMatrix().Data[:rows*cols]
	if c.buf == nil {
		c.buf = make([]byte, chunkSize)
	}
	size := dtypeSize[t.DType]
	per := chunkSize / size // elements per chunk
	for done := 0; done < len(data); done += per {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(per, len(data)-done)
		raw := c.buf[:k*size]
		if _, err := t.sh.f.ReadAt(raw, t.at+int64(done*size)); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return &Error{File: t.File, Tensor: name, Field: "data_offsets", Msg: fmt.Sprintf("cannot read bytes %d…%d of the tensor", done*size, (done+k)*size), Err: err}
		}
		peft.DecodeValues(data[done:done+k], raw, t.DType)
		c.read += int64(len(raw))
	}
	return nil
}

// matrixShape maps a stored shape to a matrix: [] → 1×1, [n] → 1×n,
// [r, c] → r×c, [d0, d1, …] → d0×(d1·…).
func matrixShape(shape []int) (rows, cols int) {
	switch len(shape) {
	case 0:
		return 1, 1
	case 1:
		return 1, shape[0]
	}
	cols = 1
	for _, d := range shape[1:] {
		cols *= d
	}
	return shape[0], cols
}

// naturalLess orders names with runs of digits compared as numbers, so that
// "model.layers.2.x" comes before "model.layers.10.x".
func naturalLess(a, b string) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, cb := a[i], b[j]
		if isDigit(ca) && isDigit(cb) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na := strings.TrimLeft(a[si:i], "0")
			nb := strings.TrimLeft(b[sj:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			continue
		}
		if ca != cb {
			return ca < cb
		}
		i++
		j++
	}
	if len(a)-i != len(b)-j {
		return len(a)-i < len(b)-j
	}
	return a < b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
