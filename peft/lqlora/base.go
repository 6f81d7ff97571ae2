package lqlora

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/quant"
)

// This file saves and loads the quantized bases. An LQ-LoRA model is two
// files:
//
//   - the adapter, saved by peft.SaveAdapter in LoRA's format (peft_type
//     "LORA", lora_A = A, lora_B = B, lora_alpha = α): HuggingFace PEFT
//     loads it as a plain LoRA, to be applied to the quantized base, not
//     to the original weights;
//   - the base, saved by SaveBase: a safetensors file holding each adapted
//     module's Q in its packed form, so its size is Q's StorageBits (plus
//     the header). For a module M (weight d×k):
//
//	M.weight.codes          U8  [⌈d·k·b/8⌉]  codes, b bits each, LSB first (4-bit: low nibble first)
//	M.weight.absmax         F32 [blocks]     per-block scales (without double quantization)
//	M.weight.absmax_codes   U8  [blocks]     8-bit codes of absmax − mean (double quantization)
//	M.weight.absmax_scales  F32 [groups]     their scales, one per ScaleBlockSize blocks
//	M.weight.absmax_mean    F32 [1]          the mean
//	M.weight                F64 [d, k]       Q itself, for the identity quantizer
//
//     with __metadata__ {"format": "gopeft-lqlora-base/1", "M.weight":
//     {"format": "NF4", "shape": [d, k], "block_size": 64, "code_bits": 4,
//     "scale_block_size": 256}}. Entry i (row-major) of block b dequantizes
//     to level[code_i]·scale_b, level being NF4's table or (c − q)/q for
//     INT<bits>, q = 2^(bits−1) − 1.
//
// The layout is gopeft's own: bitsandbytes' Params4bit packs nibbles the
// other way round and keeps its quantization state in other tensors, so a
// PEFT user rebuilds W ← dequantize(Q) from this file (a few lines of
// numpy) and then loads the adapter as LoRA.

const baseFormat = "gopeft-lqlora-base/1"

type baseMeta struct {
	Format         string `json:"format"`
	Shape          [2]int `json:"shape"`
	BlockSize      int    `json:"block_size,omitempty"`
	CodeBits       int    `json:"code_bits"`
	ScaleBlockSize int    `json:"scale_block_size,omitempty"`
}

type stTensor struct {
	dtype string
	shape []int
	data  []byte
}

// SaveBase writes the quantized bases of layers to path (see the file
// layout above).
func SaveBase(path string, layers []*Layer) error {
	tensors := map[string]stTensor{}
	meta := map[string]string{"format": baseFormat}
	for _, l := range layers {
		q := l.Dec.Q
		key := l.Module + ".weight"
		m := baseMeta{Format: q.Format, Shape: [2]int{q.Rows, q.Cols}, BlockSize: q.BlockSize, CodeBits: q.CodeBits, ScaleBlockSize: q.ScaleBlockSize}
		js, err := json.Marshal(m)
		if err != nil {
			return err
		}
		meta[key] = string(js)
		if q.Values != nil {
			tensors[key] = stTensor{"F64", []int{q.Rows, q.Cols}, f64Bytes(q.Values)}
			continue
		}
		tensors[key+".codes"] = stTensor{"U8", []int{len(q.Codes)}, q.Codes}
		if q.ScaleCodes == nil {
			tensors[key+".absmax"] = stTensor{"F32", []int{len(q.Scales)}, f32Bytes(q.Scales)}
		} else {
			tensors[key+".absmax_codes"] = stTensor{"U8", []int{len(q.ScaleCodes)}, q.ScaleCodes}
			tensors[key+".absmax_scales"] = stTensor{"F32", []int{len(q.ScaleScales)}, f32Bytes(q.ScaleScales)}
			tensors[key+".absmax_mean"] = stTensor{"F32", []int{1}, f32Bytes([]float32{q.ScaleMean})}
		}
	}
	return writeST(path, tensors, meta)
}

// LoadBase reads a file written by SaveBase and sets the weight of each
// module it names in m to its Q, dequantized; it returns the quantized
// values by module. It is an error if a module is missing from m, has
// another shape, or the file's parts are inconsistent; then no weight is
// changed.
func LoadBase(path string, m peft.Model) (map[string]*quant.Quantized, error) {
	f, err := peft.OpenSafetensors(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	md := f.Metadata()
	if md["format"] != baseFormat {
		return nil, fmt.Errorf("peft: LQ-LoRA: %s: metadata format %q, want %q (a file written by lqlora.SaveBase)", path, md["format"], baseFormat)
	}
	mods := map[string]*peft.Linear{}
	for _, l := range m.Modules() {
		mods[l.Name] = l
	}
	var keys []string
	for k := range md {
		if k != "format" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := map[string]*quant.Quantized{}
	for _, key := range keys {
		module := strings.TrimSuffix(key, ".weight")
		bad := func(format string, args ...any) error {
			return fmt.Errorf("peft: LQ-LoRA: %s: %s: %s", path, module, fmt.Sprintf(format, args...))
		}
		var bm baseMeta
		if err := json.Unmarshal([]byte(md[key]), &bm); err != nil {
			return nil, bad("metadata %q: %v", md[key], err)
		}
		l, ok := mods[module]
		if !ok {
			return nil, bad("no such module in the model")
		}
		if d, k := l.W.Dims(); d != bm.Shape[0] || k != bm.Shape[1] {
			return nil, bad("Q is %s, the module's weight %s", peft.ShapeOf(bm.Shape[0], bm.Shape[1]), peft.ShapeOf(d, k))
		}
		q := &quant.Quantized{Format: bm.Format, Rows: bm.Shape[0], Cols: bm.Shape[1], BlockSize: bm.BlockSize, CodeBits: bm.CodeBits, ScaleBlockSize: bm.ScaleBlockSize}
		read := func(name string) ([]float64, error) {
			if !f.Has(name) {
				return nil, bad("tensor %s missing", name)
			}
			t, err := f.Tensor(name)
			if err != nil {
				return nil, err
			}
			r, c := t.Dims()
			v := make([]float64, 0, r*c)
			for i := 0; i < r; i++ {
				for j := 0; j < c; j++ {
					v = append(v, t.At(i, j))
				}
			}
			return v, nil
		}
		if bm.Format == "F64" {
			if q.Values, err = read(key); err != nil {
				return nil, err
			}
		} else {
			if q.Levels = quant.LevelsOf(bm.Format); q.Levels == nil {
				return nil, bad("unknown format %q", bm.Format)
			}
			v, err := read(key + ".codes")
			if err != nil {
				return nil, err
			}
			q.Codes = toBytes(v)
			if f.Has(key + ".absmax") {
				v, err := read(key + ".absmax")
				if err != nil {
					return nil, err
				}
				q.Scales = toF32(v)
			} else {
				var c, s, mean []float64
				for _, p := range []struct {
					name string
					dst  *[]float64
				}{{".absmax_codes", &c}, {".absmax_scales", &s}, {".absmax_mean", &mean}} {
					if *p.dst, err = read(key + p.name); err != nil {
						return nil, err
					}
				}
				if len(mean) != 1 {
					return nil, bad("absmax_mean has %d values, want 1", len(mean))
				}
				q.ScaleCodes, q.ScaleScales, q.ScaleMean = toBytes(c), toF32(s), float32(mean[0])
			}
		}
		if err := q.Check(); err != nil {
			return nil, bad("%v", err)
		}
		out[module] = q
	}
	for module, q := range out {
		mods[module].W.Value.Copy(q.Dequantize())
	}
	return out, nil
}

func toBytes(v []float64) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x) // U8 values read back exactly
	}
	return b
}

func toF32(v []float64) []float32 {
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x) // F32 values read back exactly
	}
	return f
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func f64Bytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

// writeST writes a safetensors file of tensors with mixed element types
// (peft.WriteSafetensors writes one float type for all).
func writeST(path string, tensors map[string]stTensor, meta map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	hdr := map[string]any{"__metadata__": meta}
	var at int
	for _, n := range names {
		t := tensors[n]
		hdr[n] = map[string]any{"dtype": t.dtype, "shape": t.shape, "data_offsets": []int{at, at + len(t.data)}}
		at += len(t.data)
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, uint64(len(js)))
	buf.Write(js)
	for _, n := range names {
		buf.Write(tensors[n].data)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("peft: LQ-LoRA: SaveBase: %w", err)
	}
	return nil
}
