// Package quant holds blockwise weight quantizers for methods that keep a
// frozen base in few bits (LQ-LoRA, QLoRA-style bases): NF4, symmetric
// absmax integers (INT8, INT4, any 2–8 bits) and an identity "quantizer"
// for tests.
//
// A quantizer maps a weight W (d×k) to a Quantized value: the entries of
// W, read row by row as one vector of n = d·k numbers, are cut into blocks
// of BlockSize consecutive entries (the last block may be shorter); each
// block b keeps one scale s_b = max_i |w_i| over the block (its absmax)
// and each entry one code c_i, and dequantization is
//
//	ŵ_i = level[c_i] · s_b,   level ⊂ [−1, 1]
//
// where level is NF4's table or the uniform grid j/q, j = −q, …, q, of a
// symmetric integer format with q = 2^(bits−1) − 1. Each code is the one
// nearest w_i/s_b, so for a block whose stored scale is s_b ≥ absmax the
// error is at most half the widest gap between neighbouring levels, times
// s_b: s_b/(2q) for INT, 0.1519·s_b for NF4 (its widest gap is between −1
// and −0.6962).
//
// Storage is honest about bits. Codes are packed, CodeBits each, entry i
// at bits [CodeBits·i, CodeBits·(i+1)) of Codes counted from the least
// significant bit of byte 0 (so 4-bit codes go low nibble first, two per
// byte); scales are float32. Bits reports the stored bits per entry,
// scales included: 4 + 32/64 = 4.5 for NF4 with blocks of 64, and
// 4 + 8/64 + 32/(64·256) ≈ 4.127 with double quantization of the scales.
// The matrix's shape and the quantizer's settings are not counted.
//
// The scale stored is absmax rounded up to float32, never down, so every
// w_i/s_b lies in [−1, 1] and the half-step bound holds exactly (to the
// rounding of the product level·s_b).
package quant

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Quantizer quantizes a matrix.
type Quantizer interface {
	// Quantize returns w quantized. It is an error if the quantizer's
	// settings are out of range (the error names the field and the value)
	// or w holds a NaN or an infinity.
	Quantize(w *mat.Dense) (*Quantized, error)
	// String names the format and its settings: "NF4/64", "NF4/64+DQ/256",
	// "INT8/64", "F64".
	String() string
}

// nf4Levels is NF4, the 4-bit NormalFloat of QLoRA (Dettmers, Pagnoni,
// Holtzman and Zettlemoyer, 2023, "QLoRA: Efficient Finetuning of Quantized
// LLMs", arXiv:2305.14314, Appendix E): quantiles of N(0, 1) normalized to
// [−1, 1], asymmetric so that 0 is exact, 7 levels below it and 8 above.
// The values are the float32 constants of bitsandbytes
// (bitsandbytes-foundation/bitsandbytes, csrc/kernels.cu, the nf4 lookup
// table, and bitsandbytes/functional.py's NF4 code), written in full so
// that float32(level) is bit for bit theirs.
var nf4Levels = [16]float64{
	-1.0,
	-0.6961928009986877,
	-0.5250730514526367,
	-0.39491748809814453,
	-0.28444138169288635,
	-0.18477343022823334,
	-0.09105003625154495,
	0.0,
	0.07958029955625534,
	0.16093020141124725,
	0.24611230194568634,
	0.33791524171829224,
	0.44070982933044434,
	0.5626170039176941,
	0.7229568362236023,
	1.0,
}

// NF4Levels returns NF4's 16 code values, code 0 first (−1) and code 15
// last (1); code 7 is 0.
func NF4Levels() []float64 { return append([]float64(nil), nf4Levels[:]...) }

// Default block sizes: QLoRA's 64 entries per absmax and 256 absmax values
// per second-level scale.
const (
	DefaultBlockSize      = 64
	DefaultScaleBlockSize = 256
)

// NF4 quantizes to QLoRA's 4-bit NormalFloat with one absmax per block of
// BlockSize entries (0 means 64). With DoubleQuant the absmax values are
// themselves quantized, as in QLoRA: their mean m is subtracted and the
// differences are stored as 8-bit codes with one float32 scale per
// ScaleBlockSize of them (0 means 256).
//
// Where it departs from bitsandbytes: the second-level codes are symmetric
// absmax INT8 (level j/127) rather than bitsandbytes' 8-bit dynamic tree
// map, and each entry's code is chosen against the scale the decoder will
// use (the double-quantized one), not the exact absmax, which can only
// lower the error. The bits are the same.
type NF4 struct {
	BlockSize      int
	DoubleQuant    bool
	ScaleBlockSize int
}

func (q NF4) String() string {
	bs, sbs := q.BlockSize, q.ScaleBlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if sbs == 0 {
		sbs = DefaultScaleBlockSize
	}
	if q.DoubleQuant {
		return fmt.Sprintf("NF4/%d+DQ/%d", bs, sbs)
	}
	return fmt.Sprintf("NF4/%d", bs)
}

// Quantize returns w in NF4.
func (q NF4) Quantize(w *mat.Dense) (*Quantized, error) {
	bs, err := blockSize("NF4", "BlockSize", q.BlockSize, DefaultBlockSize)
	if err != nil {
		return nil, err
	}
	sbs := 0
	if q.DoubleQuant {
		if sbs, err = blockSize("NF4", "ScaleBlockSize", q.ScaleBlockSize, DefaultScaleBlockSize); err != nil {
			return nil, err
		}
	} else if q.ScaleBlockSize != 0 {
		return nil, fmt.Errorf("quant: NF4: ScaleBlockSize = %d without DoubleQuant: set DoubleQuant, or leave ScaleBlockSize 0", q.ScaleBlockSize)
	}
	return quantize(w, "NF4", 4, nf4Levels[:], bs, sbs)
}

// INT quantizes to symmetric absmax integers of Bits bits (2 to 8), one
// absmax per block of BlockSize entries (0 means 64): entry w in a block of
// scale s gets j = round(w/s·q) ∈ [−q, q], q = 2^(Bits−1) − 1, stored as
// code j + q, and dequantizes to j·s/q. The code 2^Bits − 1 is unused, so
// INT4 has 15 levels and INT8 255; 0 is exact. There is no asymmetric
// (zero-point) variant.
type INT struct {
	Bits      int
	BlockSize int
}

// INT8 is INT with Bits 8: 8 + 32/BlockSize bits per entry.
type INT8 struct{ BlockSize int }

// INT4 is INT with Bits 4: 4 + 32/BlockSize bits per entry.
type INT4 struct{ BlockSize int }

func (q INT8) String() string { return INT{8, q.BlockSize}.String() }
func (q INT4) String() string { return INT{4, q.BlockSize}.String() }

// Quantize returns w as 8-bit integers.
func (q INT8) Quantize(w *mat.Dense) (*Quantized, error) { return INT{8, q.BlockSize}.Quantize(w) }

// Quantize returns w as 4-bit integers.
func (q INT4) Quantize(w *mat.Dense) (*Quantized, error) { return INT{4, q.BlockSize}.Quantize(w) }

func (q INT) String() string {
	bs := q.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	return fmt.Sprintf("INT%d/%d", q.Bits, bs)
}

// Quantize returns w as Bits-bit integers.
func (q INT) Quantize(w *mat.Dense) (*Quantized, error) {
	if q.Bits < 2 || q.Bits > 8 {
		return nil, fmt.Errorf("quant: INT: Bits = %d out of range: want 2 ≤ Bits ≤ 8", q.Bits)
	}
	name := fmt.Sprintf("INT%d", q.Bits)
	bs, err := blockSize(name, "BlockSize", q.BlockSize, DefaultBlockSize)
	if err != nil {
		return nil, err
	}
	return quantize(w, name, q.Bits, intLevels(q.Bits), bs, 0)
}

// intLevels returns the levels (c − q)/q of the codes c = 0, …, 2q of a
// symmetric b-bit integer format, q = 2^(b−1) − 1.
func intLevels(b int) []float64 {
	qm := 1<<(b-1) - 1
	lv := make([]float64, 2*qm+1)
	for c := range lv {
		lv[c] = float64(c-qm) / float64(qm)
	}
	return lv
}

// Identity is the "quantizer" that keeps w as float64 (64 bits per entry):
// LQ-LoRA's tests use it to check the decomposition without quantization.
type Identity struct{}

func (Identity) String() string { return "F64" }

// Quantize returns a copy of w.
func (Identity) Quantize(w *mat.Dense) (*Quantized, error) {
	if err := checkFinite("F64", w); err != nil {
		return nil, err
	}
	r, c := w.Dims()
	return &Quantized{Format: "F64", Rows: r, Cols: c, CodeBits: 64, Values: mat.DenseCopyOf(w).RawMatrix().Data}, nil
}

// blockSize returns v, or def if v is 0, and an error naming format, field
// and value if v is negative.
func blockSize(format, field string, v, def int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return 0, fmt.Errorf("quant: %s: %s = %d out of range: want a positive block size (0 means %d)", format, field, v, def)
	}
	return v, nil
}

func checkFinite(format string, w *mat.Dense) error {
	r, c := w.Dims()
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			if v := w.At(i, j); math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("quant: %s: W[%d, %d] = %v: only finite values can be quantized", format, i, j, v)
			}
		}
	}
	return nil
}

// quantize is the blockwise absmax quantizer over levels (sorted, in
// [−1, 1], containing 0). sbs > 0 double-quantizes the scales in groups of
// sbs.
func quantize(w *mat.Dense, format string, bits int, levels []float64, bs, sbs int) (*Quantized, error) {
	if err := checkFinite(format, w); err != nil {
		return nil, err
	}
	rows, cols := w.Dims()
	n := rows * cols
	x := make([]float64, 0, n) // W row by row
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			x = append(x, w.At(i, j))
		}
	}
	nb := (n + bs - 1) / bs
	absmax := make([]float64, nb)
	for b := range absmax {
		for _, v := range x[b*bs : min((b+1)*bs, n)] {
			absmax[b] = math.Max(absmax[b], math.Abs(v))
		}
	}
	q := &Quantized{
		Format: format, Rows: rows, Cols: cols, BlockSize: bs, CodeBits: bits,
		Levels: levels,
		Codes:  make([]byte, (n*bits+7)/8),
	}
	if sbs == 0 {
		q.Scales = make([]float32, nb)
		for b, a := range absmax {
			q.Scales[b] = roundUp32(a)
		}
	} else {
		q.doubleQuantize(absmax, sbs)
	}
	zero := nearest(levels, 0)
	for b := 0; b < nb; b++ {
		s := q.Scale(b)
		for i := b * bs; i < min((b+1)*bs, n); i++ {
			c := zero
			if s != 0 {
				c = nearest(levels, x[i]/s)
			}
			PutCode(q.Codes, i, bits, c)
		}
	}
	return q, nil
}

// doubleQuantize stores absmax (one per block) as QLoRA's double
// quantization does: the float32 mean m, then for each group of sbs blocks
// the float32 scale c_g = max |absmax_b − m| and 8-bit codes of
// (absmax_b − m)/c_g on the symmetric grid j/127.
func (q *Quantized) doubleQuantize(absmax []float64, sbs int) {
	nb := len(absmax)
	var mean float64
	for _, a := range absmax {
		mean += a
	}
	q.ScaleMean = float32(mean / float64(nb))
	m := float64(q.ScaleMean)
	q.ScaleBlockSize = sbs
	q.ScaleCodes = make([]byte, nb)
	ng := (nb + sbs - 1) / sbs
	q.ScaleScales = make([]float32, ng)
	lv := intLevels(8)
	for g := 0; g < ng; g++ {
		var c float64
		for _, a := range absmax[g*sbs : min((g+1)*sbs, nb)] {
			c = math.Max(c, math.Abs(a-m))
		}
		q.ScaleScales[g] = roundUp32(c)
		cs := float64(q.ScaleScales[g])
		for b := g * sbs; b < min((g+1)*sbs, nb); b++ {
			code := 127
			if cs != 0 {
				code = nearest(lv, (absmax[b]-m)/cs)
			}
			q.ScaleCodes[b] = byte(code)
		}
	}
}

// roundUp32 returns the smallest float32 ≥ a (a ≥ 0, finite).
func roundUp32(a float64) float32 {
	f := float32(a)
	if float64(f) < a {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// nearest returns the index of the level nearest t (the lower on a tie).
func nearest(levels []float64, t float64) int {
	best, bd := 0, math.Inf(1)
	for c, l := range levels {
		if d := math.Abs(t - l); d < bd {
			best, bd = c, d
		}
	}
	return best
}

// PutCode stores code c (bits wide) of entry i in packed (zeroed before
// the first store), least significant bit first: the layout of
// Quantized.Codes. peft/qgalore packs its stochastically rounded codes
// with it.
func PutCode(packed []byte, i, bits, c int) {
	pos := i * bits
	v := uint16(c) << (pos % 8)
	packed[pos/8] |= byte(v)
	if hi := byte(v >> 8); hi != 0 {
		packed[pos/8+1] |= hi
	}
}

// getCode returns the code (bits wide) of entry i in packed.
func getCode(packed []byte, i, bits int) int {
	pos := i * bits
	v := uint16(packed[pos/8])
	if pos%8+bits > 8 {
		v |= uint16(packed[pos/8+1]) << 8
	}
	return int(v>>(pos%8)) & (1<<bits - 1)
}
