package peft

import "fmt"

// This file holds the 2-D convolution ops of the autograd, each with one
// explicit backward (llm.c style). Tensors stay 2-D: an image batch is
// (n×C·H·W), one image per row, each row the image's channels one after the
// other and each channel row after row (PyTorch's NCHW order, flattened).
// Letters: n = batch size, C = input channels, H×W = input size, KH×KW =
// kernel size, OH×OW = output size, C_out = output channels, P = OH·OW.
//
// A convolution is the product of im2col patches with the flattened kernel:
//
//	cols = Im2Col(x)                  (n·P × C·KH·KW)
//	y    = cols·Wᵀ + b                (n·P × C_out),  W (C_out × C·KH·KW)
//	out  = NHWCToNCHW(y, n)           (n × C_out·P)
//
// which is Conv2D, and is how a Conv2d layer runs its Linear (and so any
// adapter) on the patches. ConvTranspose2D is the adjoint of Conv2D in x.

// ConvGeom is the geometry of a 2-D convolution: its input (C channels of
// H×W), its kernel (KH×KW), its stride and its zero padding on every side.
// The output is OH×OW (see Out), the same for every output channel.
type ConvGeom struct {
	C, H, W int // input channels, height, width
	KH, KW  int // kernel height and width
	Stride  int // step between kernel positions, ≥ 1
	Pad     int // zero rows and columns added on each side, ≥ 0
}

// Out returns the output size: OH = (H + 2·Pad − KH)/Stride + 1 and OW
// likewise (integer division, as PyTorch's Conv2d).
func (g ConvGeom) Out() (oh, ow int) {
	if g.Stride < 1 {
		return 0, 0
	}
	return (g.H+2*g.Pad-g.KH)/g.Stride + 1, (g.W+2*g.Pad-g.KW)/g.Stride + 1
}

// InSize returns C·H·W, the width of an input row.
func (g ConvGeom) InSize() int { return g.C * g.H * g.W }

// PatchSize returns C·KH·KW, the width of an im2col row and of a flattened
// kernel's row.
func (g ConvGeom) PatchSize() int { return g.C * g.KH * g.KW }

// String returns the geometry as "C×H×W, kernel KH×KW, stride S, pad P".
func (g ConvGeom) String() string {
	return fmt.Sprintf("%d×%d×%d, kernel %d×%d, stride %d, pad %d", g.C, g.H, g.W, g.KH, g.KW, g.Stride, g.Pad)
}

// check panics with an ArgError naming op unless g is a valid geometry with
// an output of at least 1×1.
func (g ConvGeom) check(op string) {
	oh, ow := g.Out()
	switch {
	case g.C < 1 || g.H < 1 || g.W < 1 || g.KH < 1 || g.KW < 1:
		panic(ArgError{Op: op, Msg: fmt.Sprintf("geometry %v: sizes must be ≥ 1", g)})
	case g.Stride < 1:
		panic(ArgError{Op: op, Msg: fmt.Sprintf("geometry %v: Stride = %d; want ≥ 1", g, g.Stride)})
	case g.Pad < 0:
		panic(ArgError{Op: op, Msg: fmt.Sprintf("geometry %v: Pad = %d; want ≥ 0", g, g.Pad)})
	case oh < 1 || ow < 1:
		panic(ArgError{Op: op, Msg: fmt.Sprintf("geometry %v: the kernel does not fit the padded input (output %d×%d)", g, oh, ow)})
	}
}

// patchIndex returns, for one image, the table idx (P × C·KH·KW): idx[p·K +
// q] is the offset in the image row (0…C·H·W−1) that patch column q of
// output position p reads, or −1 where it reads the zero padding. Column q
// = (c·KH + ky)·KW + kx, the order of a PyTorch kernel (C_out, C, KH, KW)
// flattened.
func (g ConvGeom) patchIndex() []int {
	oh, ow := g.Out()
	K := g.PatchSize()
	idx := make([]int, oh*ow*K)
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < ow; ox++ {
			row := idx[(oy*ow+ox)*K : (oy*ow+ox+1)*K]
			for c := 0; c < g.C; c++ {
				for ky := 0; ky < g.KH; ky++ {
					iy := oy*g.Stride - g.Pad + ky
					for kx := 0; kx < g.KW; kx++ {
						ix := ox*g.Stride - g.Pad + kx
						q := (c*g.KH+ky)*g.KW + kx
						if iy < 0 || iy >= g.H || ix < 0 || ix >= g.W {
							row[q] = -1
						} else {
							row[q] = (c*g.H+iy)*g.W + ix
						}
					}
				}
			}
		}
	}
	return idx
}

// gatherPatches writes the patches of n images x (n×CHW) into cols (n·P×K)
// through the table idx (P×K) of patchIndex.
func gatherPatches(cols, x []float64, idx []int, n, CHW int) {
	PK := len(idx)
	for b := 0; b < n; b++ {
		xb, cb := x[b*CHW:(b+1)*CHW], cols[b*PK:(b+1)*PK]
		for i, s := range idx {
			if s >= 0 {
				cb[i] = xb[s]
			} else {
				cb[i] = 0
			}
		}
	}
}

// scatterPatches adds the patches cols (n·P×K) back into the images dx
// (n×CHW) through idx: col2im, the adjoint of gatherPatches.
func scatterPatches(dx, cols []float64, idx []int, n, CHW int) {
	PK := len(idx)
	for b := 0; b < n; b++ {
		db, cb := dx[b*CHW:(b+1)*CHW], cols[b*PK:(b+1)*PK]
		for i, s := range idx {
			if s >= 0 {
				db[s] += cb[i]
			}
		}
	}
}

// checkImages panics with a ShapeError naming op unless x is (n×C·H·W) for
// g, and returns n.
func checkImages(op string, x *Tensor, g ConvGeom) int {
	g.check(op)
	n, m := x.Dims()
	if m != g.InSize() {
		panic(ShapeError{Op: op, Got: "x " + ShapeOf(n, m) + " for input " + fmt.Sprintf("%d×%d×%d", g.C, g.H, g.W),
			Want: fmt.Sprintf("x (n×%d), C·H·W = %d·%d·%d", g.InSize(), g.C, g.H, g.W)})
	}
	return n
}

// Im2Col returns the convolution patches of the images x (n×C·H·W) for
// geometry g: (n·OH·OW × C·KH·KW), row (b·OH + oy)·OW + ox holding the
// input window under output position (oy, ox) of image b, zeros where it
// overlaps the padding, column (c·KH + ky)·KW + kx. Its backward is col2im:
// each patch entry's gradient is added back to the pixel it was read from.
func Im2Col(x *Tensor, g ConvGeom) *Tensor {
	n := checkImages("Im2Col", x, g)
	oh, ow := g.Out()
	P, K, CHW := oh*ow, g.PatchSize(), g.InSize()
	idx := g.patchIndex() // (P×K), kept for backward
	xd := vals(x.Value)
	out, od := newDense(n*P, K)
	gatherPatches(od, xd, idx, n, CHW)
	return newOp(out, func(o *Tensor) {
		scatterPatches(gdata(x), gdata(o), idx, n, CHW) // col2im
	}, x)
}

// NHWCToNCHW returns the rows of y (n·P × C), P positions of each of n
// images one row per position, as n images (n × C·P) in NCHW order:
// out[b, c·P + p] = y[b·P + p, c]. It turns a convolution's per-position
// outputs into images; its backward is the inverse rearrangement.
func NHWCToNCHW(y *Tensor, n int) *Tensor {
	N, C := y.Dims()
	if n < 1 || N%n != 0 {
		panic(ShapeError{Op: "NHWCToNCHW", Got: fmt.Sprintf("y %s for %d images", ShapeOf(N, C), n), Want: "(n·P × C) with n ≥ 1 dividing the rows"})
	}
	P := N / n
	yd := vals(y.Value)
	out, od := newDense(n, C*P)
	for b := 0; b < n; b++ {
		for p := 0; p < P; p++ {
			for c := 0; c < C; c++ {
				od[b*C*P+c*P+p] = yd[(b*P+p)*C+c]
			}
		}
	}
	return newOp(out, func(o *Tensor) {
		dO, dY := gdata(o), gdata(y)
		for b := 0; b < n; b++ {
			for p := 0; p < P; p++ {
				for c := 0; c < C; c++ {
					dY[(b*P+p)*C+c] += dO[b*C*P+c*P+p]
				}
			}
		}
	}, y)
}

// NCHWToNHWC returns the images x (n × C·P) in NCHW order as one row per
// position (n·P × C): out[b·P + p, c] = x[b, c·P + p], the inverse of
// NHWCToNCHW. Each row is then a position's channel vector.
func NCHWToNHWC(x *Tensor, C int) *Tensor {
	n, m := x.Dims()
	if C < 1 || m%C != 0 {
		panic(ShapeError{Op: "NCHWToNHWC", Got: fmt.Sprintf("x %s with %d channels", ShapeOf(n, m), C), Want: "(n × C·P) with C ≥ 1 dividing the columns"})
	}
	P := m / C
	xd := vals(x.Value)
	out, od := newDense(n*P, C)
	for b := 0; b < n; b++ {
		for c := 0; c < C; c++ {
			for p := 0; p < P; p++ {
				od[(b*P+p)*C+c] = xd[b*m+c*P+p]
			}
		}
	}
	return newOp(out, func(o *Tensor) {
		dO, dX := gdata(o), gdata(x)
		for b := 0; b < n; b++ {
			for c := 0; c < C; c++ {
				for p := 0; p < P; p++ {
					dX[b*m+c*P+p] += dO[(b*P+p)*C+c]
				}
			}
		}
	}, x)
}

// checkKernel panics with a ShapeError naming op unless w is (C_out ×
// C·KH·KW) for g and b is nil or (1 × channels); it returns C_out.
func checkKernel(op string, x, w, b *Tensor, g ConvGeom, biasWidth func(cout int) int) int {
	cout, k := w.Dims()
	xr, xc := x.Dims()
	if cout < 1 || k != g.PatchSize() {
		panic(ShapeError{Op: op, Got: "x " + ShapeOf(xr, xc) + ", w " + ShapeOf(cout, k),
			Want: fmt.Sprintf("w (C_out × %d), C·KH·KW = %d·%d·%d", g.PatchSize(), g.C, g.KH, g.KW)})
	}
	if b != nil {
		if br, bc := b.Dims(); br != 1 || bc != biasWidth(cout) {
			panic(ShapeError{Op: op, Got: "w " + ShapeOf(cout, k) + ", b " + ShapeOf(br, bc), Want: fmt.Sprintf("b (1×%d)", biasWidth(cout))})
		}
	}
	return cout
}

// Conv2D returns the 2-D convolution (cross-correlation, as PyTorch's
// Conv2d) of the images x (n×C·H·W) with the kernel w (C_out × C·KH·KW, a
// (C_out, C, KH, KW) kernel flattened row-major) plus the bias b (1×C_out,
// or nil), for geometry g:
//
//	out[b, o, oy, ox] = b_o + Σ_{c,ky,kx} w[o, c, ky, kx]·x[b, c, oy·S−P+ky, ox·S−P+kx]
//
// → (n × C_out·OH·OW). It is Im2Col, Affine and NHWCToNCHW composed, so its
// gradient is theirs.
func Conv2D(x, w, b *Tensor, g ConvGeom) *Tensor {
	n := checkImages("Conv2D", x, g)
	checkKernel("Conv2D", x, w, b, g, func(cout int) int { return cout })
	return NHWCToNCHW(Affine(Im2Col(x, g), w, b), n) // (n × C_out·P)
}

// ConvTranspose2D returns the transposed convolution of y (n × C_out·OH·OW)
// with the kernel w (C_out × C·KH·KW) plus the bias b (1×C, or nil, one per
// output channel), where g is the geometry of the forward convolution it
// transposes (input C×H×W, output OH×OW): → (n × C·H·W). Without bias it is
// the adjoint of Conv2D in x, ⟨ConvTranspose2D(y), x⟩ = ⟨y, Conv2D(x)⟩, as
// PyTorch's ConvTranspose2d with the same weight is; it upsamples when the
// stride is above 1 (H, W name the output size, which fixes PyTorch's
// output_padding). Forward and backward, with cols = NCHWToNHWC(y)·w
// (n·P × C·KH·KW):
//
//	out = col2im(cols) + b
//	dY  = NHWCToNCHW(im2col(dOut)·wᵀ),  dW = NCHWToNHWC(y)ᵀ·im2col(dOut),  db = Σ dOut per channel
func ConvTranspose2D(y, w, b *Tensor, g ConvGeom) *Tensor {
	g.check("ConvTranspose2D")
	oh, ow := g.Out()
	P, K, CHW := oh*ow, g.PatchSize(), g.InSize()
	n, m := y.Dims()
	cout := checkKernel("ConvTranspose2D", y, w, b, g, func(int) int { return g.C })
	if m != cout*P {
		panic(ShapeError{Op: "ConvTranspose2D", Got: "y " + ShapeOf(n, m) + ", w " + ShapeOf(cout, K),
			Want: fmt.Sprintf("y (n × %d), C_out·OH·OW = %d·%d·%d for input %d×%d×%d", cout*P, cout, oh, ow, g.C, g.H, g.W)})
	}
	idx := g.patchIndex() // (P×K), kept for backward
	yd, wd := vals(y.Value), vals(w.Value)
	yt := make([]float64, n*P*cout) // (n·P × C_out), y one row per position, kept for backward
	for bi := 0; bi < n; bi++ {
		for o := 0; o < cout; o++ {
			for p := 0; p < P; p++ {
				yt[(bi*P+p)*cout+o] = yd[bi*m+o*P+p]
			}
		}
	}
	cols := make([]float64, n*P*K)                                   // (n·P × K)
	gemm(false, false, n*P, K, cout, 1, yt, cout, wd, K, 0, cols, K) // cols = yt·w
	out, od := newDense(n, CHW)
	scatterPatches(od, cols, idx, n, CHW) // col2im
	var bd []float64
	HW := g.H * g.W
	if b != nil {
		bd = vals(b.Value)
		for bi := 0; bi < n; bi++ {
			for c := 0; c < g.C; c++ {
				row := od[bi*CHW+c*HW : bi*CHW+(c+1)*HW]
				for i := range row {
					row[i] += bd[c]
				}
			}
		}
	}
	return newOp(out, func(o *Tensor) {
		dO := gdata(o) // (n × C·H·W)
		dcols := make([]float64, n*P*K)
		gatherPatches(dcols, dO, idx, n, CHW) // im2col(dOut), (n·P × K)
		if y.NeedsGrad() {
			dyt := make([]float64, n*P*cout)
			gemm(false, true, n*P, cout, K, 1, dcols, K, wd, K, 0, dyt, cout) // (n·P × C_out) = dcols·wᵀ
			dY := gdata(y)
			for bi := 0; bi < n; bi++ {
				for o := 0; o < cout; o++ {
					for p := 0; p < P; p++ {
						dY[bi*m+o*P+p] += dyt[(bi*P+p)*cout+o]
					}
				}
			}
		}
		if w.NeedsGrad() {
			gemm(true, false, cout, K, n*P, 1, yt, cout, dcols, K, 1, gdata(w), K) // dW (C_out × K) += ytᵀ·dcols
		}
		if b != nil && b.NeedsGrad() {
			dB := gdata(b)
			for bi := 0; bi < n; bi++ {
				for c := 0; c < g.C; c++ {
					for _, v := range dO[bi*CHW+c*HW : bi*CHW+(c+1)*HW] {
						dB[c] += v
					}
				}
			}
		}
	}, y, w, b)
}

// PixelShuffle rearranges the images x (n × C·r²·H·W) into (n × C·rH·rW)
// as PyTorch's PixelShuffle(r): channel c·r² + i·r + j of pixel (y, x)
// becomes pixel (y·r + i, x·r + j) of channel c. With a convolution to
// C·r² channels before it, it is the sub-pixel upsampler of ESPCN and SPAN.
// Its backward is the inverse permutation.
func PixelShuffle(x *Tensor, C, H, W, r int) *Tensor {
	n, m := x.Dims()
	if C < 1 || H < 1 || W < 1 || r < 1 || m != C*r*r*H*W {
		panic(ShapeError{Op: "PixelShuffle", Got: fmt.Sprintf("x %s for C = %d, H = %d, W = %d, r = %d", ShapeOf(n, m), C, H, W, r),
			Want: fmt.Sprintf("x (n × C·r²·H·W) = (n×%d), all sizes ≥ 1", C*r*r*H*W)})
	}
	// src[j] is the input offset of output offset j within one image.
	src := make([]int, m)
	RH, RW := r*H, r*W
	for c := 0; c < C; c++ {
		for yy := 0; yy < RH; yy++ {
			for xx := 0; xx < RW; xx++ {
				i, j := yy%r, xx%r
				src[(c*RH+yy)*RW+xx] = ((c*r*r+i*r+j)*H+yy/r)*W + xx/r
			}
		}
	}
	xd := vals(x.Value)
	out, od := newDense(n, m)
	for b := 0; b < n; b++ {
		for j, s := range src {
			od[b*m+j] = xd[b*m+s]
		}
	}
	return newOp(out, func(o *Tensor) {
		dO, dX := gdata(o), gdata(x)
		for b := 0; b < n; b++ {
			for j, s := range src {
				dX[b*m+s] += dO[b*m+j]
			}
		}
	}, x)
}

// Reshape returns a's elements, in row-major order, as an (r×c) matrix;
// r·c must equal a's size. A flattened kernel and loralib's ConvLoRA
// product B·A are such views of each other. Its backward reshapes the
// gradient back.
func Reshape(a *Tensor, r, c int) *Tensor {
	n, m := a.Dims()
	if r < 1 || c < 1 || r*c != n*m {
		panic(ShapeError{Op: "Reshape", Got: ShapeOf(n, m) + " to " + ShapeOf(r, c), Want: fmt.Sprintf("a shape of %d elements", n*m)})
	}
	out, od := newDense(r, c)
	copy(od, vals(a.Value))
	return newOp(out, func(o *Tensor) {
		dA := gdata(a)
		for i, g := range gdata(o) {
			dA[i] += g
		}
	}, a)
}
