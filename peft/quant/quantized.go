package quant

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Quantized is a quantized matrix (Rows×Cols): codes, scales and shape.
// Its fields are exported so that files can store it (LQ-LoRA's base
// file); Check says whether a value built by hand is consistent.
type Quantized struct {
	Format     string // "NF4", "INT8", "INT4", "INT<b>", "F64"
	Rows, Cols int
	BlockSize  int       // entries per scale, row-major over the matrix (0 for F64)
	CodeBits   int       // bits per code (64 for F64)
	Codes      []byte    // packed codes, ⌈n·CodeBits/8⌉ bytes (see the package doc)
	Levels     []float64 // the value of each code before scaling, in [−1, 1]

	// Scales are the per-block absmax values, rounded up to float32; nil
	// when the scales are double quantized.
	Scales []float32

	// Double quantization (ScaleCodes non-nil): block b's scale is
	// ScaleMean + (ScaleCodes[b] − 127)/127 · ScaleScales[b/ScaleBlockSize].
	ScaleCodes     []byte
	ScaleScales    []float32
	ScaleMean      float32
	ScaleBlockSize int

	// Values holds the entries row by row for F64 (Identity), else nil.
	Values []float64
}

// Dims returns the matrix's shape.
func (q *Quantized) Dims() (r, c int) { return q.Rows, q.Cols }

// Len returns the number of entries n = Rows·Cols.
func (q *Quantized) Len() int { return q.Rows * q.Cols }

// Blocks returns the number of blocks ⌈n/BlockSize⌉ (0 for F64).
func (q *Quantized) Blocks() int {
	if q.Values != nil || q.BlockSize == 0 {
		return 0
	}
	return (q.Len() + q.BlockSize - 1) / q.BlockSize
}

// Code returns entry i's code (i counts row by row). It panics for F64.
func (q *Quantized) Code(i int) int {
	if q.Values != nil {
		panic("quant: Quantized.Code: an F64 matrix has no codes")
	}
	if i < 0 || i >= q.Len() {
		panic(fmt.Sprintf("quant: Quantized.Code: entry %d out of range for %d×%d", i, q.Rows, q.Cols))
	}
	return getCode(q.Codes, i, q.CodeBits)
}

// Scale returns the scale the decoder uses for block b: the stored absmax,
// or its double-quantized value.
func (q *Quantized) Scale(b int) float64 {
	if q.ScaleCodes == nil {
		return float64(q.Scales[b])
	}
	j := float64(int(q.ScaleCodes[b]) - 127)
	return float64(q.ScaleMean) + j/127*float64(q.ScaleScales[b/q.ScaleBlockSize])
}

// Dequantize returns the matrix the codes stand for (Rows×Cols).
func (q *Quantized) Dequantize() *mat.Dense {
	n := q.Len()
	out := make([]float64, n)
	if q.Values != nil {
		copy(out, q.Values)
	} else {
		for b := 0; b < q.Blocks(); b++ {
			s := q.Scale(b)
			for i := b * q.BlockSize; i < min((b+1)*q.BlockSize, n); i++ {
				out[i] = q.Levels[getCode(q.Codes, i, q.CodeBits)] * s
			}
		}
	}
	return mat.NewDense(q.Rows, q.Cols, out)
}

// StorageBits returns the bits the value stores: 8 per byte of packed
// codes, 32 per float32 scale, and with double quantization 8 per scale
// code, 32 per second-level scale and 32 for the mean; 64 per entry for
// F64.
func (q *Quantized) StorageBits() int64 {
	if q.Values != nil {
		return 64 * int64(len(q.Values))
	}
	b := 8*int64(len(q.Codes)) + 32*int64(len(q.Scales))
	if q.ScaleCodes != nil {
		b += 8*int64(len(q.ScaleCodes)) + 32*int64(len(q.ScaleScales)) + 32
	}
	return b
}

// Bits returns StorageBits per entry: 4.5 for NF4/64 on a matrix of a
// multiple of 64 entries.
func (q *Quantized) Bits() float64 {
	return float64(q.StorageBits()) / float64(q.Len())
}

// Check returns an error if q's parts do not fit together (lengths of
// codes and scales for its shape and block size, codes beyond the levels,
// non-finite scales): for a value read from a file.
func (q *Quantized) Check() error {
	n := q.Len()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("quant: %s %d×%d: %s", q.Format, q.Rows, q.Cols, fmt.Sprintf(format, args...))
	}
	if q.Rows <= 0 || q.Cols <= 0 {
		return bad("shape must be positive")
	}
	if q.Format == "F64" {
		if len(q.Values) != n {
			return bad("%d values, want %d", len(q.Values), n)
		}
		return nil
	}
	switch {
	case q.BlockSize <= 0:
		return bad("BlockSize = %d, want > 0", q.BlockSize)
	case q.CodeBits < 1 || q.CodeBits > 8:
		return bad("CodeBits = %d, want 1…8", q.CodeBits)
	case len(q.Codes) != (n*q.CodeBits+7)/8:
		return bad("%d bytes of codes, want %d", len(q.Codes), (n*q.CodeBits+7)/8)
	case len(q.Levels) == 0 || len(q.Levels) > 1<<q.CodeBits:
		return bad("%d levels for %d-bit codes", len(q.Levels), q.CodeBits)
	}
	nb := q.Blocks()
	if q.ScaleCodes == nil {
		if len(q.Scales) != nb {
			return bad("%d scales, want %d (one per %d entries)", len(q.Scales), nb, q.BlockSize)
		}
	} else {
		if q.Scales != nil {
			return bad("both Scales and ScaleCodes are set")
		}
		if q.ScaleBlockSize <= 0 || len(q.ScaleCodes) != nb || len(q.ScaleScales) != (nb+q.ScaleBlockSize-1)/q.ScaleBlockSize {
			return bad("%d scale codes and %d second-level scales with ScaleBlockSize %d, want %d and %d",
				len(q.ScaleCodes), len(q.ScaleScales), q.ScaleBlockSize, nb, (nb+max(q.ScaleBlockSize, 1)-1)/max(q.ScaleBlockSize, 1))
		}
		for _, c := range q.ScaleCodes {
			if c > 254 {
				return bad("scale code %d beyond 254", c)
			}
		}
	}
	for b := 0; b < nb; b++ {
		if s := q.Scale(b); math.IsNaN(s) || math.IsInf(s, 0) {
			return bad("scale of block %d is %v", b, s)
		}
	}
	for i := 0; i < n; i++ {
		if c := getCode(q.Codes, i, q.CodeBits); c >= len(q.Levels) {
			return bad("entry %d has code %d, beyond the %d levels", i, c, len(q.Levels))
		}
	}
	return nil
}

// LevelsOf returns the levels of format ("NF4", "INT<b>"), nil for F64 or
// an unknown format.
func LevelsOf(format string) []float64 {
	if format == "NF4" {
		return NF4Levels()
	}
	var b int
	if _, err := fmt.Sscanf(format, "INT%d", &b); err == nil && b >= 2 && b <= 8 && format == fmt.Sprintf("INT%d", b) {
		return intLevels(b)
	}
	return nil
}
