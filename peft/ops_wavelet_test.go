package peft

import (
	"errors"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// haarMatrixRef returns P_n (n×n, n even), the one-level 1-D orthonormal
// Haar matrix written from its definition: row i < n/2 is (e_2i +
// e_2i+1)/√2, row n/2 + i is (e_2i − e_2i+1)/√2. Used only for testing.
func haarMatrixRef(n int) *mat.Dense {
	p := mat.NewDense(n, n, nil)
	s := 1 / math.Sqrt2
	for i := 0; i < n/2; i++ {
		p.Set(i, 2*i, s)
		p.Set(i, 2*i+1, s)
		p.Set(n/2+i, 2*i, s)
		p.Set(n/2+i, 2*i+1, -s)
	}
	return p
}

// dwtRef returns P_d·X·P_kᵀ, one level of the 2-D DWT as two matrix
// products. Used only for testing.
func dwtRef(x *mat.Dense) *mat.Dense {
	d, k := x.Dims()
	var c mat.Dense
	c.Product(haarMatrixRef(d), x, haarMatrixRef(k).T())
	return &c
}

func haarRandDense(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// TestHaarKnownAnswers checks the transform on examples worked by hand:
// a 2×2 block, a 4×4 ramp at one and two levels, and the inverses.
func TestHaarKnownAnswers(t *testing.T) {
	cases := []struct {
		name   string
		x      *mat.Dense
		levels int
		want   *mat.Dense
	}{
		// a, b, c, e = 4, 1, 2, 7: LL = 14/2, LH = (4−1+2−7)/2,
		// HL = (4+1−2−7)/2, HH = (4−1−2+7)/2.
		{"2×2", mat.NewDense(2, 2, []float64{4, 1, 2, 7}), 1, mat.NewDense(2, 2, []float64{7, -1, -2, 4})},
		// Blocks of the ramp 1…16: LL = 7, 11, 23, 27; every LH = −1
		// (a − b + c − e = −2), HL = −4 (a + b − c − e = −8), HH = 0.
		{"4×4 ramp", mat.NewDense(4, 4, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}), 1,
			mat.NewDense(4, 4, []float64{
				7, 11, -1, -1,
				23, 27, -1, -1,
				-4, -4, 0, 0,
				-4, -4, 0, 0})},
		// Level 2 on LL = [7 11; 23 27]: 68/2, (7−11+23−27)/2, (7+11−23−27)/2, 0.
		{"4×4 ramp, 2 levels", mat.NewDense(4, 4, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}), 2,
			mat.NewDense(4, 4, []float64{
				34, -4, -1, -1,
				-16, 0, -1, -1,
				-4, -4, 0, 0,
				-4, -4, 0, 0})},
	}
	for _, c := range cases {
		var got, back mat.Dense
		HaarDWT(&got, c.x, c.levels)
		if !mat.EqualApprox(&got, c.want, 1e-14) {
			t.Errorf("%s: HaarDWT =\n%v\nwant\n%v", c.name, mat.Formatted(&got), mat.Formatted(c.want))
		}
		if op := DWT(NewConst(c.x), c.levels).Value; !mat.Equal(op, &got) {
			t.Errorf("%s: the DWT op differs from HaarDWT", c.name)
		}
		HaarIDWT(&back, c.want, c.levels)
		if !mat.EqualApprox(&back, c.x, 1e-14) {
			t.Errorf("%s: HaarIDWT of the answer =\n%v\nwant\n%v", c.name, mat.Formatted(&back), mat.Formatted(c.x))
		}
		if op := IDWT(NewConst(c.want), c.levels).Value; !mat.Equal(op, &back) {
			t.Errorf("%s: the IDWT op differs from HaarIDWT", c.name)
		}
	}
}

// TestHaarAgainstMatrixForm checks one level against P_d·X·P_kᵀ built from
// the definition of the 1-D Haar matrix, on random matrices of several
// shapes, to 1e-14.
func TestHaarAgainstMatrixForm(t *testing.T) {
	rng := rand.New(rand.NewSource(1)) // Always the same seed for reproducible results.
	for _, s := range [][2]int{{2, 2}, {2, 8}, {6, 4}, {10, 14}, {32, 16}} {
		x := haarRandDense(rng, s[0], s[1])
		var c mat.Dense
		HaarDWT(&c, x, 1)
		if d := haarMaxDiff(&c, dwtRef(x)); d > 1e-14 {
			t.Errorf("%v: HaarDWT differs from P_d·X·P_kᵀ by %.3g", s, d)
		}
	}
}

// TestHaarRoundTripAndNorm checks IDWT(DWT(x)) = x and DWT(IDWT(x)) = x to
// 1e-14, and ‖DWT x‖_F = ‖x‖_F to 1e-14 relative, at 1 to 3 levels, for
// compact inputs and a strided view, in place and not.
func TestHaarRoundTripAndNorm(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	var worst float64
	for _, s := range []struct{ d, k, levels int }{{2, 2, 1}, {4, 6, 1}, {8, 8, 3}, {16, 8, 2}, {24, 40, 3}} {
		big := haarRandDense(rng, s.d+3, s.k+5)
		for _, x := range []*mat.Dense{haarRandDense(rng, s.d, s.k), big.Slice(1, 1+s.d, 2, 2+s.k).(*mat.Dense)} {
			x0 := mat.DenseCopyOf(x)
			var c, back, fwd mat.Dense
			HaarDWT(&c, x, s.levels)
			HaarIDWT(&back, &c, s.levels)
			HaarIDWT(&fwd, x, s.levels)
			HaarDWT(&fwd, &fwd, s.levels) // in place
			worst = math.Max(worst, math.Max(haarMaxDiff(&back, x), haarMaxDiff(&fwd, x)))
			if !mat.Equal(x, x0) {
				t.Fatalf("%+v: the input changed", s)
			}
			if rel := math.Abs(mat.Norm(&c, 2)-mat.Norm(x, 2)) / mat.Norm(x, 2); rel > 1e-14 {
				t.Errorf("%+v: ‖DWT x‖_F = %.17g, ‖x‖_F = %.17g", s, mat.Norm(&c, 2), mat.Norm(x, 2))
			}
		}
	}
	t.Logf("max |IDWT(DWT x) − x| = %.3g", worst)
	if worst > 1e-14 {
		t.Errorf("round trip off by %.3g, want ≤ 1e-14", worst)
	}
}

// TestHaarOrthogonal builds the matrix M (dk×dk) of the transform on
// row-major vec(X), column by column from the basis matrices, and checks
// M·Mᵀ = I, and that the matrix of the inverse is Mᵀ, to 1e-15.
func TestHaarOrthogonal(t *testing.T) {
	for _, s := range []struct{ d, k, levels int }{{2, 4, 1}, {4, 4, 2}, {6, 8, 1}, {8, 4, 2}} {
		n := s.d * s.k
		m, mi := mat.NewDense(n, n, nil), mat.NewDense(n, n, nil)
		for col := 0; col < n; col++ {
			e := mat.NewDense(s.d, s.k, nil)
			e.Set(col/s.k, col%s.k, 1)
			var c, ci mat.Dense
			HaarDWT(&c, e, s.levels)
			HaarIDWT(&ci, e, s.levels)
			m.SetCol(col, c.RawMatrix().Data)
			mi.SetCol(col, ci.RawMatrix().Data)
		}
		var mmt mat.Dense
		mmt.Mul(m, m.T())
		var id mat.Dense
		id.CloneFrom(haarEye(n))
		if d := haarMaxDiff(&mmt, &id); d > 1e-15 {
			t.Errorf("%+v: M·Mᵀ differs from I by %.3g", s, d)
		}
		if d := haarMaxDiff(mi, m.T()); d > 1e-15 {
			t.Errorf("%+v: the inverse's matrix differs from Mᵀ by %.3g", s, d)
		}
	}
}

func haarEye(n int) *mat.Dense {
	m := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		m.Set(i, i, 1)
	}
	return m
}

func haarMaxDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return math.Max(mat.Max(&d), -mat.Min(&d))
}

// TestHaarGradients checks both ops' backward passes against central
// differences, at one and two levels.
func TestHaarGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	x46 := randParam(rng, "x", 4, 6, -1, 1)
	x84 := randParam(rng, "x", 8, 4, -1, 1)
	y := randParam(rng, "y", 4, 6, -1, 1)
	for _, c := range []struct {
		name   string
		params []*Tensor
		f      func() *Tensor
	}{
		{"DWT", []*Tensor{x46}, func() *Tensor { return DWT(x46, 1) }},
		{"IDWT", []*Tensor{x46}, func() *Tensor { return IDWT(x46, 1) }},
		{"DWT2", []*Tensor{x84}, func() *Tensor { return DWT(x84, 2) }},
		{"IDWT2", []*Tensor{x84}, func() *Tensor { return IDWT(x84, 2) }},
		// A nonlinear loss, so that the gradient reaching the op varies.
		{"IDWT∘Tanh∘DWT", []*Tensor{x46, y}, func() *Tensor { return IDWT(Mul(Tanh(DWT(x46, 1)), y), 1) }},
	} {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c.params, c.f, 1e-6) })
	}
}

// TestHaarShapeErrors: odd sizes, sizes not a multiple of 2^levels, a
// wrong-sized dst and levels < 1 panic, naming the op and the shapes.
func TestHaarShapeErrors(t *testing.T) {
	x35, x46 := NewConst(mat.NewDense(3, 5, nil)), NewConst(mat.NewDense(4, 6, nil))
	x43 := mat.NewDense(4, 3, nil)
	cases := []struct {
		name string
		f    func()
		want []string
	}{
		{"DWT odd", func() { DWT(x35, 1) }, []string{"DWT", "(3×5)", "even"}},
		{"IDWT odd", func() { IDWT(x35, 1) }, []string{"IDWT", "(3×5)", "even"}},
		{"HaarDWT odd columns", func() { HaarDWT(&mat.Dense{}, x43, 1) }, []string{"HaarDWT", "(4×3)", "even"}},
		{"HaarIDWT odd columns", func() { HaarIDWT(&mat.Dense{}, x43, 1) }, []string{"HaarIDWT", "(4×3)", "even"}},
		{"DWT 2 levels of 4×6", func() { DWT(x46, 2) }, []string{"DWT", "(4×6)", "2^levels = 4"}},
		{"HaarDWT dst", func() { HaarDWT(mat.NewDense(2, 6, nil), x46.Value, 1) }, []string{"HaarDWT", "(2×6)", "(4×6)"}},
	}
	for _, c := range cases {
		err := Maybe(c.f)
		var se ShapeError
		if !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a ShapeError", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", c.name, err, w)
			}
		}
	}
	var ae ArgError
	if err := Maybe(func() { DWT(x46, 0) }); !errors.As(err, &ae) || !strings.Contains(err.Error(), "levels = 0") {
		t.Errorf("levels 0: got %v, want an ArgError naming levels = 0", err)
	}
}

// BenchmarkHaar times the one-level transform of an n×n matrix, forward
// and backward, through the op.
func BenchmarkHaar(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) {
			x := NewParam("x", haarRandDense(rand.New(rand.NewSource(1)), n, n))
			b.SetBytes(int64(8 * n * n))
			b.ReportAllocs()
			for b.Loop() {
				SumAll(IDWT(DWT(x, 1), 1)).Backward()
			}
		})
	}
}
