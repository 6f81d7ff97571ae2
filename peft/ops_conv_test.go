package peft

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// convGeoms are the geometries the conv tests run: odd sizes, non-square
// kernels, stride 2 and padding, and a kernel as large as the padded input.
var convGeoms = []ConvGeom{
	{C: 1, H: 3, W: 3, KH: 1, KW: 1, Stride: 1, Pad: 0},
	{C: 2, H: 5, W: 4, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{C: 3, H: 5, W: 6, KH: 2, KW: 3, Stride: 2, Pad: 1},
	{C: 2, H: 4, W: 3, KH: 3, KW: 2, Stride: 1, Pad: 0},
	{C: 1, H: 3, W: 3, KH: 5, KW: 5, Stride: 1, Pad: 1},
	{C: 2, H: 7, W: 5, KH: 3, KW: 3, Stride: 3, Pad: 2},
}

// conv2DNaive is the reference for Conv2D, written as the 7 nested loops
// of the definition (image, output channel, output row and column, input
// channel, kernel row and column), used only for testing.
func conv2DNaive(x, w, b *mat.Dense, g ConvGeom) *mat.Dense {
	n, _ := x.Dims()
	cout, _ := w.Dims()
	oh, ow := g.Out()
	out := mat.NewDense(n, cout*oh*ow, nil)
	for i := 0; i < n; i++ {
		for o := 0; o < cout; o++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					s := 0.0
					if b != nil {
						s = b.At(0, o)
					}
					for c := 0; c < g.C; c++ {
						for ky := 0; ky < g.KH; ky++ {
							for kx := 0; kx < g.KW; kx++ {
								iy, ix := oy*g.Stride-g.Pad+ky, ox*g.Stride-g.Pad+kx
								if iy < 0 || iy >= g.H || ix < 0 || ix >= g.W {
									continue
								}
								s += w.At(o, (c*g.KH+ky)*g.KW+kx) * x.At(i, (c*g.H+iy)*g.W+ix)
							}
						}
					}
					out.Set(i, (o*oh+oy)*ow+ox, s)
				}
			}
		}
	}
	return out
}

func TestConvOpGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	P := func(name string, r, c int) *Tensor { return randParam(rng, name, r, c, -1, 1) }
	type gcase struct {
		name   string
		params []*Tensor
		f      func() *Tensor
	}
	var cases []gcase
	for gi, g := range convGeoms {
		g := g
		const n, cout = 2, 3
		oh, ow := g.Out()
		x, w, b := P("x", n, g.InSize()), P("w", cout, g.PatchSize()), P("b", 1, cout)
		y, bt := P("y", n, cout*oh*ow), P("bt", 1, g.C)
		cases = append(cases,
			gcase{fmt.Sprintf("Im2Col/%d", gi), []*Tensor{x}, func() *Tensor { return Im2Col(x, g) }},
			gcase{fmt.Sprintf("Conv2D/%d", gi), []*Tensor{x, w, b}, func() *Tensor { return Conv2D(x, w, b, g) }},
			gcase{fmt.Sprintf("Conv2DNoBias/%d", gi), []*Tensor{x, w}, func() *Tensor { return Conv2D(x, w, nil, g) }},
			gcase{fmt.Sprintf("ConvTranspose2D/%d", gi), []*Tensor{y, w, bt}, func() *Tensor { return ConvTranspose2D(y, w, bt, g) }},
			gcase{fmt.Sprintf("ConvTranspose2DNoBias/%d", gi), []*Tensor{y, w}, func() *Tensor { return ConvTranspose2D(y, w, nil, g) }},
		)
	}
	y := P("y", 12, 5)
	x := P("x", 3, 20)
	ps := P("ps", 2, 2*9*2*3)
	cases = append(cases,
		gcase{"NHWCToNCHW", []*Tensor{y}, func() *Tensor { return NHWCToNCHW(y, 3) }},
		gcase{"NCHWToNHWC", []*Tensor{x}, func() *Tensor { return NCHWToNHWC(x, 4) }},
		gcase{"PixelShuffle", []*Tensor{ps}, func() *Tensor { return PixelShuffle(ps, 2, 2, 3, 3) }},
		gcase{"Reshape", []*Tensor{x}, func() *Tensor { return Tanh(Reshape(x, 6, 10)) }},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c.params, c.f, 1e-5) })
	}
}

// TestConv2DReference checks Conv2D against the 7-loop conv2DNaive on every
// test geometry, and that NCHWToNHWC undoes NHWCToNCHW exactly.
func TestConv2DReference(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	var worst float64
	for _, g := range convGeoms {
		for _, cout := range []int{1, 4} {
			x := randParam(rng, "x", 3, g.InSize(), -1, 1)
			w := randParam(rng, "w", cout, g.PatchSize(), -1, 1)
			b := randParam(rng, "b", 1, cout, -1, 1)
			for _, bias := range []*Tensor{b, nil} {
				var bv *mat.Dense
				if bias != nil {
					bv = bias.Value
				}
				got, want := Conv2D(x, w, bias, g).Value, conv2DNaive(x.Value, w.Value, bv, g)
				var d mat.Dense
				d.Sub(got, want)
				worst = math.Max(worst, mat.Norm(&d, math.Inf(1)))
				if !mat.EqualApprox(got, want, 1e-12) {
					t.Errorf("%v, C_out = %d: Conv2D differs from conv2DNaive", g, cout)
				}
			}
		}
	}
	t.Logf("max |Conv2D − conv2DNaive| = %.2g", worst)
	x := randParam(rng, "x", 4, 3*10, -1, 1)
	if back := NHWCToNCHW(NCHWToNHWC(x, 3), 4).Value; !mat.Equal(back, x.Value) {
		t.Error("NHWCToNCHW(NCHWToNHWC(x)) ≠ x")
	}
}

// TestConvTransposeAdjoint checks ⟨ConvTranspose2D(y), x⟩ = ⟨y, Conv2D(x)⟩
// to 1e-12 relative on every test geometry: the transposed convolution is
// the adjoint of the convolution with the same kernel.
func TestConvTransposeAdjoint(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	var worst float64
	for _, g := range convGeoms {
		const n, cout = 3, 2
		oh, ow := g.Out()
		x := randParam(rng, "x", n, g.InSize(), -1, 1)
		y := randParam(rng, "y", n, cout*oh*ow, -1, 1)
		w := randParam(rng, "w", cout, g.PatchSize(), -1, 1)
		lhs := mat.Sum(elemMul(ConvTranspose2D(y, w, nil, g).Value, x.Value))
		rhs := mat.Sum(elemMul(y.Value, Conv2D(x, w, nil, g).Value))
		rel := math.Abs(lhs-rhs) / math.Max(math.Abs(rhs), 1e-300)
		worst = math.Max(worst, rel)
		if rel > 1e-12 {
			t.Errorf("%v: ⟨Conv2Dᵀ y, x⟩ = %.15g, ⟨y, Conv2D x⟩ = %.15g (rel %.2g)", g, lhs, rhs, rel)
		}
	}
	t.Logf("max relative gap of the adjoint identity %.2g", worst)
	// Upsampling: the transposed 2×2 stride-2 conv with a kernel of ones
	// repeats each pixel in a 2×2 block (nearest-neighbour upsampling).
	g := ConvGeom{C: 1, H: 4, W: 4, KH: 2, KW: 2, Stride: 2, Pad: 0}
	y := NewConst(mat.NewDense(1, 4, []float64{1, 2, 3, 4}))
	up := ConvTranspose2D(y, NewConst(mat.NewDense(1, 4, []float64{1, 1, 1, 1})), nil, g).Value
	want := mat.NewDense(1, 16, []float64{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4})
	if !mat.Equal(up, want) {
		t.Errorf("nearest upsampling by ConvTranspose2D: got %v, want %v", up.RawRowView(0), want.RawRowView(0))
	}
}

func elemMul(a, b *mat.Dense) *mat.Dense {
	var c mat.Dense
	c.MulElem(a, b)
	return &c
}

// TestPixelShuffle checks PixelShuffle on a known answer: 4 channels of
// 1×2 (values 0…7) into one channel of 2×4.
func TestPixelShuffle(t *testing.T) {
	x := NewConst(mat.NewDense(1, 8, []float64{0, 1, 2, 3, 4, 5, 6, 7}))
	// channel k = i·2 + j holds offsets (i, j) of pixels (0,0) and (0,1).
	got := PixelShuffle(x, 1, 1, 2, 2).Value.RawRowView(0)
	want := []float64{0, 2, 1, 3, 4, 6, 5, 7}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("PixelShuffle: got %v, want %v", got, want)
		}
	}
}

func TestConvOpShapeErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	g := ConvGeom{C: 2, H: 4, W: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}
	x := randParam(rng, "x", 2, 30, -1, 1)  // wrong: want 32 columns
	xg := randParam(rng, "x", 2, 32, -1, 1) // right
	w := randParam(rng, "w", 3, 17, -1, 1)  // wrong: want 18 columns
	wg := randParam(rng, "w", 3, 18, -1, 1)
	b := randParam(rng, "b", 1, 5, -1, 1)
	y := randParam(rng, "y", 2, 40, -1, 1) // wrong: want 3·16 = 48
	cases := []struct {
		name string
		f    func()
		want []string
	}{
		{"Im2Col", func() { Im2Col(x, g) }, []string{"Im2Col", "(2×30)", "(n×32)"}},
		{"Conv2DInput", func() { Conv2D(x, wg, nil, g) }, []string{"Conv2D", "(2×30)", "(n×32)"}},
		{"Conv2DKernel", func() { Conv2D(xg, w, nil, g) }, []string{"Conv2D", "(2×32)", "(3×17)", "18"}},
		{"Conv2DBias", func() { Conv2D(xg, wg, b, g) }, []string{"Conv2D", "(3×18)", "(1×5)", "(1×3)"}},
		{"ConvTranspose2D", func() { ConvTranspose2D(y, wg, nil, g) }, []string{"ConvTranspose2D", "(2×40)", "(3×18)", "(n × 48)"}},
		{"ConvTranspose2DBias", func() { ConvTranspose2D(xg, wg, b, g) }, []string{"ConvTranspose2D", "(1×5)", "(1×2)"}},
		{"NHWCToNCHW", func() { NHWCToNCHW(x, 3) }, []string{"NHWCToNCHW", "(2×30)", "3 images"}},
		{"NCHWToNHWC", func() { NCHWToNHWC(x, 7) }, []string{"NCHWToNHWC", "(2×30)", "7 channels"}},
		{"PixelShuffle", func() { PixelShuffle(x, 1, 2, 2, 2) }, []string{"PixelShuffle", "(2×30)", "(n×16)"}},
		{"Reshape", func() { Reshape(x, 7, 8) }, []string{"Reshape", "(2×30)", "(7×8)"}},
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
	for name, bad := range map[string]ConvGeom{
		"stride 0":   {C: 1, H: 4, W: 4, KH: 3, KW: 3},
		"too large":  {C: 1, H: 2, W: 2, KH: 5, KW: 5, Stride: 1},
		"negative":   {C: 1, H: 4, W: 4, KH: 3, KW: 3, Stride: 1, Pad: -1},
		"no channel": {C: 0, H: 4, W: 4, KH: 3, KW: 3, Stride: 1},
	} {
		var ae ArgError
		if err := Maybe(func() { Im2Col(randParam(rng, "x", 1, max(bad.InSize(), 1), 0, 1), bad) }); !errors.As(err, &ae) {
			t.Errorf("%s geometry: got %v, want an ArgError", name, err)
		}
	}
	if oh, ow := (ConvGeom{C: 1, H: 8, W: 6, KH: 4, KW: 3, Stride: 2, Pad: 1}).Out(); oh != 4 || ow != 3 {
		t.Errorf("Out of 8×6, kernel 4×3, stride 2, pad 1 = %d×%d, want 4×3", oh, ow)
	}
}
