package quant_test

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft/quant"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat/distuv"
)

// nf4Published is NF4 as printed in bitsandbytes' CUDA kernel
// (bitsandbytes-foundation/bitsandbytes csrc/kernels.cu, the nf4 table,
// commit c037a30 in the search index) and in QLoRA's appendix
// (arXiv:2305.14314, Appendix E), copied by hand as the oracle.
var nf4Published = []float64{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// TestNF4Table checks the 16 NF4 values against the published ones bit for
// bit in float32, and against QLoRA's construction recomputed here from the
// normal quantile function (bitsandbytes' create_normal_map: 8 positive
// quantiles of N(0,1) at p = linspace(δ, ½, 9)[:8], 7 negative ones at
// linspace(δ, ½, 8)[:7], and 0, all divided by the largest, δ = 0.9677083)
// to 2e-6, the float32 rounding of p.
func TestNF4Table(t *testing.T) {
	got := quant.NF4Levels()
	if len(got) != 16 {
		t.Fatalf("%d levels, want 16", len(got))
	}
	for i, v := range got {
		if float32(v) != float32(nf4Published[i]) {
			t.Errorf("level %d = %.17g, published %.17g", i, v, nf4Published[i])
		}
	}
	const delta = 0.9677083
	n := distuv.UnitNormal
	top := n.Quantile(delta)
	var built []float64
	for j := 0; j < 7; j++ { // negatives, most negative first
		built = append(built, -n.Quantile(delta+float64(j)*(0.5-delta)/7)/top)
	}
	built = append(built, 0)
	for j := 7; j >= 0; j-- {
		built = append(built, n.Quantile(delta+float64(j)*(0.5-delta)/8)/top)
	}
	for i, v := range got {
		if math.Abs(v-built[i]) > 2e-6 {
			t.Errorf("level %d = %.9g, QLoRA's construction gives %.9g", i, v, built[i])
		}
	}
}

func dense(r, c int, v ...float64) *mat.Dense { return mat.NewDense(r, c, v) }

func mustQ(t *testing.T, q quant.Quantizer, w *mat.Dense) *quant.Quantized {
	t.Helper()
	z, err := q.Quantize(w)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return z
}

// TestRoundTripCodes quantizes matrices whose entries are the code values
// themselves times a power of two, with ±1 present so that absmax is that
// power: every code comes back, and dequantization is exact.
func TestRoundTripCodes(t *testing.T) {
	for _, tc := range []struct {
		q      quant.Quantizer
		levels []float64
	}{
		{quant.NF4{BlockSize: 16}, quant.NF4Levels()},
		{quant.INT8{BlockSize: 255}, quant.LevelsOf("INT8")},
		{quant.INT4{BlockSize: 15}, quant.LevelsOf("INT4")},
		{quant.INT{Bits: 3, BlockSize: 7}, quant.LevelsOf("INT3")},
	} {
		nl := len(tc.levels)
		// Two blocks: the levels times 4, then reversed times 0.25.
		v := make([]float64, 2*nl)
		for i, l := range tc.levels {
			v[i] = 4 * l
			v[2*nl-1-i] = 0.25 * l
		}
		w := dense(2, nl, v...)
		z := mustQ(t, tc.q, w)
		for i := range v {
			want := i
			if i >= nl {
				want = 2*nl - 1 - i
			}
			if c := z.Code(i); c != want {
				t.Errorf("%s: entry %d got code %d, want %d", tc.q, i, c, want)
			}
		}
		if !mat.Equal(z.Dequantize(), w) {
			t.Errorf("%s: dequantized code values differ from the input:\n%v", tc.q, mat.Formatted(z.Dequantize()))
		}
	}
}

// TestKnownAnswers checks hand-worked blocks.
func TestKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		q     quant.Quantizer
		w     *mat.Dense
		codes []int
		want  []float64
	}{
		// absmax 1; 0.5 lies 0.0593 from 0.4407 (code 12), 0.0626 from
		// 0.5626; −0.2 lies 0.0152 from −0.1848 (code 5), 0.0844 from −0.2844.
		{"NF4", quant.NF4{BlockSize: 5}, dense(1, 5, 1, -1, 0.5, 0, -0.2),
			[]int{15, 0, 12, 7, 5}, []float64{1, -1, 0.44070982933044434, 0, -0.18477343022823334}},
		// Two blocks of 2 with absmax 2 and 0.5: 0.7/2 = 0.35 → 0.3379
		// (code 11); 0.1/0.5 = 0.2 → 0.1609 (code 9).
		{"NF4 two blocks", quant.NF4{BlockSize: 2}, dense(2, 2, -2, 0.7, 0.5, 0.1),
			[]int{0, 11, 15, 9}, []float64{-2, 2 * 0.33791524171829224, 0.5, 0.5 * 0.16093020141124725}},
		// absmax 2, q = 7: 0.3·7/2 = 1.05 → 1; −1.2·7/2 = −4.2 → −4.
		{"INT4", quant.INT4{BlockSize: 4}, dense(1, 4, 2, -1.2, 0.3, 0),
			[]int{14, 3, 8, 7}, []float64{2, -8.0 / 7, 2.0 / 7, 0}},
		// absmax 1, q = 127: 0.25·127 = 31.75 → 32; −0.1·127 = −12.7 → −13.
		{"INT8", quant.INT8{BlockSize: 3}, dense(3, 1, -1, 0.25, -0.1),
			[]int{0, 159, 114}, []float64{-1, 32.0 / 127, -13.0 / 127}},
	} {
		z := mustQ(t, tc.q, tc.w)
		got := z.Dequantize().RawMatrix().Data
		for i := range tc.codes {
			if z.Code(i) != tc.codes[i] {
				t.Errorf("%s: entry %d: code %d, want %d", tc.name, i, z.Code(i), tc.codes[i])
			}
			if math.Abs(got[i]-tc.want[i]) > 1e-15 {
				t.Errorf("%s: entry %d: %.17g, want %.17g", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

// halfGap returns half the widest gap between neighbouring levels.
func halfGap(levels []float64) float64 {
	var g float64
	for i := 1; i < len(levels); i++ {
		g = math.Max(g, levels[i]-levels[i-1])
	}
	return g / 2
}

// TestHalfStepBound quantizes Gaussian matrices whose size is not a
// multiple of the block (so the last block is short) and checks each
// entry's code is the nearest level to w/s (brute force) and its error is
// at most half the widest gap times the block's scale, with the scale ≥
// absmax and < absmax·(1 + 2⁻²³). With double quantization the bound is
// half the gap times |s'| plus whatever of absmax exceeds |s'|.
func TestHalfStepBound(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	w := mat.NewDense(37, 29, nil)
	for i := 0; i < 37; i++ {
		for j := 0; j < 29; j++ {
			w.Set(i, j, rng.NormFloat64()*math.Exp(rng.NormFloat64()))
		}
	}
	x := w.RawMatrix().Data
	n := len(x)
	for _, tc := range []struct {
		q      quant.Quantizer
		levels []float64
	}{
		{quant.NF4{BlockSize: 16}, quant.NF4Levels()},
		{quant.NF4{BlockSize: 5, DoubleQuant: true, ScaleBlockSize: 7}, quant.NF4Levels()},
		{quant.INT8{BlockSize: 64}, quant.LevelsOf("INT8")},
		{quant.INT4{}, quant.LevelsOf("INT4")},
		{quant.INT{Bits: 3, BlockSize: 9}, quant.LevelsOf("INT3")},
		{quant.INT{Bits: 2, BlockSize: 9}, quant.LevelsOf("INT2")},
	} {
		z := mustQ(t, tc.q, w)
		dq := z.Dequantize().RawMatrix().Data
		hg := halfGap(tc.levels)
		var worst float64 // error / bound
		for b := 0; b < z.Blocks(); b++ {
			lo, hi := b*z.BlockSize, min((b+1)*z.BlockSize, n)
			var absmax float64
			for _, v := range x[lo:hi] {
				absmax = math.Max(absmax, math.Abs(v))
			}
			s := z.Scale(b)
			bound := hg*math.Abs(s) + math.Max(0, absmax-math.Abs(s))
			if z.ScaleCodes == nil && (s < absmax || s > absmax*(1+1.0/(1<<23))) {
				t.Errorf("%s: block %d: scale %.17g for absmax %.17g", tc.q, b, s, absmax)
			}
			for i := lo; i < hi; i++ {
				e := math.Abs(x[i] - dq[i])
				if e > bound*(1+1e-12) {
					t.Errorf("%s: entry %d: error %g above the bound %g", tc.q, i, e, bound)
				}
				worst = math.Max(worst, e/bound)
				// The code is the nearest level to x/s.
				c := z.Code(i)
				for j, l := range tc.levels {
					if math.Abs(x[i]-l*s) < math.Abs(x[i]-tc.levels[c]*s)-1e-12*math.Abs(s) {
						t.Errorf("%s: entry %d: code %d, but level %d is nearer", tc.q, i, c, j)
					}
				}
			}
		}
		t.Logf("%s: worst error / bound = %.3f, %.4f bits per entry", tc.q, worst, z.Bits())
		if worst < 0.5 {
			t.Errorf("%s: worst error only %.3f of the bound: the bound is not being tested", tc.q, worst)
		}
	}
}

// TestBits checks bits per entry, scales included, and the packing.
func TestBits(t *testing.T) {
	w := func(r, c int) *mat.Dense {
		rng := rand.New(rand.NewSource(2))
		m := mat.NewDense(r, c, nil)
		m.Apply(func(_, _ int, _ float64) float64 { return rng.NormFloat64() }, m)
		return m
	}
	for _, tc := range []struct {
		q     quant.Quantizer
		r, c  int
		bits  float64
		bytes int
	}{
		{quant.NF4{BlockSize: 64}, 64, 64, 4.5, 2048},
		{quant.NF4{}, 10, 64, 4.5, 320},
		{quant.INT8{BlockSize: 64}, 64, 64, 8.5, 4096},
		{quant.INT4{BlockSize: 128}, 64, 64, 4.25, 2048},
		{quant.INT{Bits: 3, BlockSize: 64}, 64, 64, 3.5, 1536},
		// 4·262144 + 8·4096 + 32·16 + 32 bits over 262144 entries.
		{quant.NF4{BlockSize: 64, DoubleQuant: true}, 256, 1024, (4*262144 + 8*4096 + 32*16 + 32) / 262144.0, 131072},
		// 3×3 = 9 codes in 5 bytes (a padding nibble) and one scale.
		{quant.NF4{}, 3, 3, (40 + 32) / 9.0, 5},
		{quant.Identity{}, 3, 5, 64, 0},
	} {
		z := mustQ(t, tc.q, w(tc.r, tc.c))
		if math.Abs(z.Bits()-tc.bits) > 1e-12 || len(z.Codes) != tc.bytes {
			t.Errorf("%s on %d×%d: %.6f bits per entry in %d code bytes, want %.6f in %d", tc.q, tc.r, tc.c, z.Bits(), len(z.Codes), tc.bits, tc.bytes)
		}
	}
	z := mustQ(t, quant.NF4{DoubleQuant: true}, w(256, 1024))
	if math.Abs(z.Bits()-4.127) > 5e-4 {
		t.Errorf("NF4 with double quantization: %.5f bits per entry, QLoRA gives ≈ 4.127", z.Bits())
	}
}

// TestZeroBlocks checks that all-zero blocks (absmax 0) come back as exact
// zeros, beside nonzero blocks, with and without double quantization.
func TestZeroBlocks(t *testing.T) {
	w := dense(2, 4, 0, 0, 0, 0, 0.5, -1, 0, 2)
	for _, q := range []quant.Quantizer{quant.NF4{BlockSize: 4}, quant.NF4{BlockSize: 4, DoubleQuant: true}, quant.INT8{BlockSize: 4}, quant.INT4{BlockSize: 4}} {
		z := mustQ(t, q, w)
		got := z.Dequantize()
		for j := 0; j < 4; j++ {
			if got.At(0, j) != 0 {
				t.Errorf("%s: zero block entry %d dequantizes to %g", q, j, got.At(0, j))
			}
		}
		if got.At(1, 2) != 0 {
			t.Errorf("%s: exact zero in a nonzero block dequantizes to %g", q, got.At(1, 2))
		}
		zz := mustQ(t, q, mat.NewDense(3, 3, nil))
		if !mat.Equal(zz.Dequantize(), mat.NewDense(3, 3, nil)) {
			t.Errorf("%s: the zero matrix dequantizes to %v", q, mat.Formatted(zz.Dequantize()))
		}
		if err := z.Check(); err != nil {
			t.Errorf("%s: Check: %v", q, err)
		}
	}
}

// TestBadSettings checks that block sizes, bit widths and inputs out of
// range are errors naming the field and the value.
func TestBadSettings(t *testing.T) {
	w := dense(2, 2, 1, 2, 3, 4)
	for _, tc := range []struct {
		q    quant.Quantizer
		w    *mat.Dense
		want []string
	}{
		{quant.NF4{BlockSize: -3}, w, []string{"NF4", "BlockSize", "-3"}},
		{quant.NF4{DoubleQuant: true, ScaleBlockSize: -256}, w, []string{"ScaleBlockSize", "-256"}},
		{quant.NF4{ScaleBlockSize: 128}, w, []string{"ScaleBlockSize", "128", "DoubleQuant"}},
		{quant.INT8{BlockSize: -1}, w, []string{"INT8", "BlockSize", "-1"}},
		{quant.INT4{BlockSize: -64}, w, []string{"INT4", "BlockSize", "-64"}},
		{quant.INT{Bits: 9}, w, []string{"Bits", "9"}},
		{quant.INT{Bits: 1}, w, []string{"Bits", "1"}},
		{quant.NF4{}, dense(1, 2, 1, math.NaN()), []string{"NaN", "[0, 1]"}},
		{quant.Identity{}, dense(1, 2, math.Inf(1), 0), []string{"+Inf", "[0, 0]"}},
	} {
		_, err := tc.q.Quantize(tc.w)
		if err == nil {
			t.Errorf("%+v: no error", tc.q)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%+v: error %q does not name %q", tc.q, err, s)
			}
		}
	}
}

// TestCheck checks that Check accepts what Quantize makes and refuses
// inconsistent parts.
func TestCheck(t *testing.T) {
	z := mustQ(t, quant.NF4{BlockSize: 3}, dense(2, 4, 1, 2, 3, 4, 5, 6, 7, 8))
	if err := z.Check(); err != nil {
		t.Fatal(err)
	}
	bad := *z
	bad.Scales = bad.Scales[:2]
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "2 scales, want 3") {
		t.Errorf("short scales: %v", err)
	}
	bad = *z
	bad.Codes = bad.Codes[:3]
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "3 bytes of codes, want 4") {
		t.Errorf("short codes: %v", err)
	}
	i8 := mustQ(t, quant.INT{Bits: 2}, dense(1, 4, 1, 0, -1, 0.2))
	i8.Codes = []byte{0xff} // code 3 is beyond INT2's 3 levels
	if err := i8.Check(); err == nil || !strings.Contains(err.Error(), "code 3") {
		t.Errorf("code beyond the levels: %v", err)
	}
}
