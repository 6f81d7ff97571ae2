package peft

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"gonum.org/v1/gonum/mat"
)

// This file is a small single-image super-resolution task on the shipped
// digits, for convolutional PEFT (ConvLoRA, DSCLoRA): the 8×8 digit images
// are the high-resolution (HR) targets, their 2×2 average pools (4×4) the
// low-resolution (LR) inputs, and SRNet a SPAN-like network of 3×3
// convolutions on the LR grid with a sub-pixel upsampler. Images are single
// channel, values in [0, 1]; a batch is X (n×16) LR and Y (n×64) HR, row
// after row of each image.

// The digits' super-resolution geometry: LR SRLowRes×SRLowRes, upscaled by
// SRScale to the 8×8 HR images.
const (
	SRLowRes = 4
	SRScale  = 2
	srHigh   = SRLowRes * SRScale
)

// AvgPool returns the f×f average pools of the single-channel images x
// (n × H·W) → (n × (H/f)·(W/f)); f must divide H and W.
func AvgPool(x *mat.Dense, H, W, f int) *mat.Dense {
	n, m := x.Dims()
	if f < 1 || H%f != 0 || W%f != 0 || m != H*W {
		panic(ShapeError{Op: "AvgPool", Got: fmt.Sprintf("x %s for %d×%d images, factor %d", ShapeOf(n, m), H, W, f), Want: fmt.Sprintf("x (n×%d) and f ≥ 1 dividing H and W", H*W)})
	}
	h, w := H/f, W/f
	out := mat.NewDense(n, h*w, nil)
	inv := 1 / float64(f*f)
	for b := 0; b < n; b++ {
		src, dst := x.RawRowView(b), out.RawRowView(b)
		for y := 0; y < H; y++ {
			for xx := 0; xx < W; xx++ {
				dst[(y/f)*w+xx/f] += inv * src[y*W+xx]
			}
		}
	}
	return out
}

// UpsampleMatrix returns the fixed linear map of single-channel upsampling
// by scale from h×w: U ((h·w) × (s·h·s·w)), so that the upsampled images
// are X·U for X (n × h·w). mode is "nearest" (PyTorch's mode="nearest"),
// "bilinear" or "bicubic" (PyTorch's, align_corners=False; bicubic with
// a = −0.75 and edge pixels repeated). Each output pixel's weights sum to 1.
func UpsampleMatrix(h, w, scale int, mode string) *mat.Dense {
	if h < 1 || w < 1 || scale < 1 {
		panic(ArgError{Op: "UpsampleMatrix", Msg: fmt.Sprintf("h = %d, w = %d, scale = %d; want all ≥ 1", h, w, scale)})
	}
	uy, ux := upsample1D(h, scale, mode), upsample1D(w, scale, mode)
	H, W := h*scale, w*scale
	u := mat.NewDense(h*w, H*W, nil)
	for iy := 0; iy < h; iy++ {
		for ix := 0; ix < w; ix++ {
			for oy := 0; oy < H; oy++ {
				for ox := 0; ox < W; ox++ {
					if v := uy[iy][oy] * ux[ix][ox]; v != 0 {
						u.Set(iy*w+ix, oy*W+ox, v)
					}
				}
			}
		}
	}
	return u
}

// upsample1D returns the 1-D weights u[i][o] of input i in output o.
func upsample1D(n, scale int, mode string) [][]float64 {
	u := make([][]float64, n)
	for i := range u {
		u[i] = make([]float64, n*scale)
	}
	clamp := func(i int) int { return min(max(i, 0), n-1) }
	for o := 0; o < n*scale; o++ {
		src := (float64(o)+0.5)/float64(scale) - 0.5 // align_corners=False
		switch mode {
		case "nearest":
			u[o/scale][o] = 1
		case "bilinear":
			src = math.Max(src, 0)
			i0 := int(math.Floor(src))
			t := src - float64(i0)
			u[clamp(i0)][o] += 1 - t
			u[clamp(i0+1)][o] += t
		case "bicubic":
			i0 := int(math.Floor(src))
			t := src - float64(i0)
			for k := -1; k <= 2; k++ {
				u[clamp(i0+k)][o] += cubicWeight(float64(k) - t)
			}
		default:
			panic(ArgError{Op: "UpsampleMatrix", Msg: fmt.Sprintf("mode %q; want \"nearest\", \"bilinear\" or \"bicubic\"", mode)})
		}
	}
	return u
}

// cubicWeight is Keys' cubic convolution kernel with a = −0.75 (PyTorch's
// bicubic) at distance x.
func cubicWeight(x float64) float64 {
	const a = -0.75
	x = math.Abs(x)
	switch {
	case x <= 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}

// PSNR returns the mean over images (rows) of the peak signal-to-noise
// ratio 10·log₁₀(1/MSE) in dB of pred against target, both (n×m) with
// peak value 1; pred is clamped to [0, 1] first, as SR benchmarks clamp
// the output to the valid range. An image's MSE is floored at 1e-10, so an
// exact image counts as 100 dB.
func PSNR(pred, target *mat.Dense) float64 {
	n, m := pred.Dims()
	tr, tc := target.Dims()
	if n != tr || m != tc || n == 0 {
		panic(ShapeError{Op: "PSNR", Got: ShapeOf(n, m) + " and " + ShapeOf(tr, tc), Want: "pred and target of one shape, ≥ 1 row"})
	}
	var sum float64
	for i := 0; i < n; i++ {
		p, t := pred.RawRowView(i), target.RawRowView(i)
		var mse float64
		for j := range p {
			d := math.Min(math.Max(p[j], 0), 1) - t[j]
			mse += d * d
		}
		sum += 10 * math.Log10(1/math.Max(mse/float64(m), 1e-10))
	}
	return sum / float64(n)
}

// SuperResolution is a super-resolution Dataset: LR inputs and HR targets,
// split into training and evaluation rows. A Batch holds LR images in X and
// the HR images in Y.
type SuperResolution struct {
	X         *mat.Dense // (n × 16) training LR images, 4×4
	Y         *mat.Dense // (n × 64) training HR images, 8×8
	EvalX     *mat.Dense // (m × 16) evaluation LR images
	EvalY     *mat.Dense // (m × 64) evaluation HR images
	Labels    []int      // (n) the training images' digits
	EvalBatch int        // rows per evaluation batch, all at once if 0
}

// DigitsSR returns the digits (values in [0, 1]) as ×2 super-resolution:
// HR the 8×8 images, LR their 2×2 average pools. The split is DigitsData's
// (evalFrac held out after a shuffle with seed, then both parts filtered to
// classes, all ten if none), so a network pretrained on DigitsSR(f, s, 0,
// 1, 2, 3, 4) has not seen the evaluation images of DigitsSR(f, s, 5, 6,
// 7, 8, 9): the domain shift of the tutorials.
func DigitsSR(evalFrac float64, seed int64, classes ...int) *SuperResolution {
	c := DigitsData(evalFrac, seed, classes...)
	sr := &SuperResolution{Y: c.X, Labels: c.Labels, EvalY: c.EvalX}
	if c.X != nil {
		sr.X = AvgPool(c.X, srHigh, srHigh, SRScale)
	}
	if c.EvalX != nil {
		sr.EvalX = AvgPool(c.EvalX, srHigh, srHigh, SRScale)
	}
	return sr
}

// Subset returns a SuperResolution with the first n training rows of s
// (all if n exceeds them) and the same evaluation rows: a small adaptation
// set.
func (s *SuperResolution) Subset(n int) *SuperResolution {
	rows, _ := s.X.Dims()
	n = min(max(n, 1), rows)
	return &SuperResolution{
		X: mat.DenseCopyOf(s.X.Slice(0, n, 0, SRLowRes*SRLowRes)), Y: mat.DenseCopyOf(s.Y.Slice(0, n, 0, srHigh*srHigh)),
		Labels: append([]int(nil), s.Labels[:n]...), EvalX: s.EvalX, EvalY: s.EvalY, EvalBatch: s.EvalBatch,
	}
}

// Sample returns size training pairs drawn without replacement (with, if
// size exceeds the rows).
func (s *SuperResolution) Sample(rng *rand.Rand, size int) Batch {
	n, _ := s.X.Dims()
	var idx []int
	if size <= n {
		idx = rng.Perm(n)[:size]
	} else {
		idx = make([]int, size)
		for i := range idx {
			idx[i] = rng.Intn(n)
		}
	}
	_, dx := s.X.Dims()
	_, dy := s.Y.Dims()
	x, y := mat.NewDense(size, dx, nil), mat.NewDense(size, dy, nil)
	for r, i := range idx {
		x.SetRow(r, s.X.RawRowView(i))
		y.SetRow(r, s.Y.RawRowView(i))
	}
	return Batch{X: x, Y: y}
}

// EvalBatches returns the evaluation pairs in batches of EvalBatch.
func (s *SuperResolution) EvalBatches() []Batch {
	if s.EvalX == nil {
		return nil
	}
	m, dx := s.EvalX.Dims()
	_, dy := s.EvalY.Dims()
	step := s.EvalBatch
	if step <= 0 {
		step = m
	}
	var bs []Batch
	for i := 0; i < m; i += step {
		j := min(i+step, m)
		bs = append(bs, Batch{X: mat.DenseCopyOf(s.EvalX.Slice(i, j, 0, dx)), Y: mat.DenseCopyOf(s.EvalY.Slice(i, j, 0, dy))})
	}
	return bs
}

// UpsamplePSNR returns the PSNR (see PSNR) on s's evaluation images of
// fixed upsampling of the LR images by mode ("nearest", "bilinear",
// "bicubic"): the baseline a learned network must beat.
func (s *SuperResolution) UpsamplePSNR(mode string) float64 {
	var up mat.Dense
	up.Mul(s.EvalX, UpsampleMatrix(SRLowRes, SRLowRes, SRScale, mode))
	return PSNR(&up, s.EvalY)
}

// SRNet is a small SPAN-like ×2 super-resolution network for the 4×4 → 8×8
// digits (after Wan et al., 2024, "Swift Parameter-free Attention Network
// for Efficient Super-Resolution", arXiv:2405.12971, much reduced):
//
//	f₀  = head(x)                        x (n×1·4·4) → (n×C·16), 3×3 conv, C = Width
//	hᵢ  = ReLU(bodyᵢ(hᵢ₋₁)), h₀ = f₀    (n×C·16), 3×3 convs, i = 1…Depth
//	out = bilinear(x) + PixelShuffle(up(h_D + f₀), 2)   up: 3×3 conv C → 4, → (n×64)
//
// every conv padded by 1, so features stay on the 4×4 LR grid, and the
// network learns the residual over bilinear upsampling. Its Modules are the
// convolutions' Linears "head", "body.0", …, "up", which adapters target
// by name. Its loss is the MSE against Batch.Y; its metric PSNR.
type SRNet struct {
	Width, Depth int
	Head         *Conv2d   // 1 → Width
	Body         []*Conv2d // Width → Width, Depth of them
	Up           *Conv2d   // Width → SRScale² (sub-pixel upsampler)

	bilinear *Tensor // (16×64) fixed bilinear upsampling
}

// NewSRNet returns an SRNet of width channels and depth body convolutions,
// initialized as PyTorch's Conv2d from seed.
func NewSRNet(width, depth int, seed int64) *SRNet {
	if width < 1 || depth < 1 {
		panic(ArgError{Op: "NewSRNet", Msg: fmt.Sprintf("width = %d, depth = %d; want both ≥ 1", width, depth)})
	}
	rng := rand.New(rand.NewSource(seed))
	g := func(c int) ConvGeom { return ConvGeom{C: c, H: SRLowRes, W: SRLowRes, KH: 3, KW: 3, Stride: 1, Pad: 1} }
	m := &SRNet{Width: width, Depth: depth, Head: NewConv2d("head", g(1), width, true, rng)}
	for i := 0; i < depth; i++ {
		m.Body = append(m.Body, NewConv2d(fmt.Sprintf("body.%d", i), g(width), width, true, rng))
	}
	m.Up = NewConv2d("up", g(width), SRScale*SRScale, true, rng)
	m.bilinear = NewConst(UpsampleMatrix(SRLowRes, SRLowRes, SRScale, "bilinear"))
	return m
}

// ForwardFeatures returns the HR output (n×64) for the LR images x (n×16)
// and the body's feature maps h₁ … h_D, each (n × Width·16) in NCHW order
// on the 4×4 grid: what feature distillation compares.
func (m *SRNet) ForwardFeatures(x *Tensor) (out *Tensor, feats []*Tensor) {
	f0 := m.Head.Forward(x)
	h := f0
	for _, c := range m.Body {
		h = ReLU(c.Forward(h))
		feats = append(feats, h)
	}
	u := PixelShuffle(m.Up.Forward(Add(h, f0)), 1, SRLowRes, SRLowRes, SRScale) // (n×64)
	return Add(MatMul(x, m.bilinear), u), feats
}

// Forward returns the HR output (n×64) for the LR images x (n×16).
func (m *SRNet) Forward(x *Tensor) *Tensor {
	out, _ := m.ForwardFeatures(x)
	return out
}

// Convs returns head, body.0, …, up.
func (m *SRNet) Convs() []*Conv2d {
	cs := append([]*Conv2d{m.Head}, m.Body...)
	return append(cs, m.Up)
}

// Modules returns the convolutions' Linears, in order.
func (m *SRNet) Modules() []*Linear {
	var ls []*Linear
	for _, c := range m.Convs() {
		ls = append(ls, c.Linear)
	}
	return ls
}

// Params returns each convolution's weight and bias, then the adapters'.
func (m *SRNet) Params() []*Tensor {
	var ps []*Tensor
	for _, l := range m.Modules() {
		ps = append(ps, l.W)
		if l.B != nil {
			ps = append(ps, l.B)
		}
	}
	return append(ps, AdapterParams(m.Modules())...)
}

// Loss returns the mean squared error of the output against b.Y.
func (m *SRNet) Loss(b Batch) *Tensor { return MSE(m.Forward(NewConst(b.X)), NewConst(b.Y)) }

// MSE returns the mean of (a − b)² over all elements: (n×m), (n×m) → (1×1).
func MSE(a, b *Tensor) *Tensor {
	d := Sub(a, b)
	return Mean(Mul(d, d))
}

// Metric returns the PSNR (dB) of the output on b.
func (m *SRNet) Metric(b Batch) float64 { return PSNR(m.Forward(NewConst(b.X)).Value, b.Y) }

// LossAndMetric returns the MSE and the PSNR on b from one forward pass.
func (m *SRNet) LossAndMetric(b Batch) (loss, metric float64) {
	out := m.Forward(NewConst(b.X))
	return MSE(out, NewConst(b.Y)).Scalar(), PSNR(out.Value, b.Y)
}

// MetricName returns "PSNR (dB)".
func (m *SRNet) MetricName() string { return "PSNR (dB)" }

// SetTraining switches the adapters' training-only behaviour.
func (m *SRNet) SetTraining(training bool) {
	for _, l := range m.Modules() {
		l.Training = training
	}
}

// PSNROn returns m's PSNR on data's evaluation images, with m in evaluation
// mode.
func (m *SRNet) PSNROn(ctx context.Context, data Dataset) (float64, error) {
	m.SetTraining(false)
	_, psnr, err := Evaluate(ctx, m, data)
	return psnr, err
}

// PretrainSR trains a fresh SRNet (width, depth, initialized from seed)
// with every parameter trainable on data for steps AdamW steps (batch 32,
// learning rate 3e-3 with a cosine decay to 1e-4, minibatches from seed),
// evaluating every steps/5: the pretrained teacher or student of the
// DSCLoRA tutorial. It stops with an error wrapping ctx's when ctx is
// cancelled.
func PretrainSR(ctx context.Context, data *SuperResolution, width, depth, steps int, seed int64) (*SRNet, *History, error) {
	m := NewSRNet(width, depth, seed)
	h, err := Train(ctx, m, data, TrainConfig{
		Steps: steps, BatchSize: 32, LR: 3e-3, MinLR: 1e-4, Seed: seed,
		EvalEvery: max(steps/5, 1), Name: fmt.Sprintf("SRNet width %d", width),
	})
	if err != nil {
		return nil, h, err
	}
	return m, h, nil
}
