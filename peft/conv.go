package peft

import (
	"fmt"
	"math/rand"
)

// Conv2d is a 2-D convolution layer whose kernel lives in a Linear, so that
// every adapter (LoRA, DoRA, ConvLoRA, …) attaches to it through the Linear
// unchanged:
//
//	cols = Im2Col(x)                 x (n×C_in·H·W) → (n·OH·OW × C_in·KH·KW)
//	y    = Linear.Forward(cols)      (n·OH·OW × C_out), the active adapter applied
//	out  = NHWCToNCHW(y, n)          (n × C_out·OH·OW)
//
// Linear.W is the kernel (C_out, C_in, KH, KW) flattened row-major to
// (C_out × C_in·KH·KW), PyTorch's weight.view(C_out, -1), and
// Linear.Kernel records that 4-D shape for the adapters that read it. A
// model lists Linear in its Modules, so AddAdapter, Targets, Merge and
// SaveAdapter work on the convolution by its name. An adapter of W acting
// on the patches is a convolution itself: LoRA's ΔW = s·B·A is the conv
// whose kernel is ΔW reshaped to (C_out, C_in, KH, KW).
type Conv2d struct {
	Linear *Linear  // W (C_out × C_in·KH·KW), b (1×C_out), Kernel [C_out, C_in, KH, KW]
	Geom   ConvGeom // the input geometry: C = C_in, H×W, KH×KW, stride, padding
}

// NewConv2d returns a convolution named name from the input geometry g to
// cout channels, with a bias if bias, drawn as PyTorch's Conv2d: W and b
// uniform in [−1/√fan_in, 1/√fan_in), fan_in = C_in·KH·KW. Its parameters
// are name+".weight" and name+".bias". It panics with an ArgError on a bad
// geometry or cout < 1.
func NewConv2d(name string, g ConvGeom, cout int, bias bool, rng *rand.Rand) *Conv2d {
	g.check("NewConv2d(" + name + ")")
	if cout < 1 {
		panic(ArgError{Op: "NewConv2d(" + name + ")", Msg: fmt.Sprintf("C_out = %d; want ≥ 1", cout)})
	}
	l := NewLinear(name, g.PatchSize(), cout, bias, rng)
	l.Kernel = []int{cout, g.C, g.KH, g.KW}
	return &Conv2d{Linear: l, Geom: g}
}

// Out returns the output's channels and size: C_out, OH, OW.
func (c *Conv2d) Out() (cout, oh, ow int) {
	cout, _ = c.Linear.W.Dims()
	oh, ow = c.Geom.Out()
	return cout, oh, ow
}

// Forward returns the convolution of the images x (n × C_in·H·W) →
// (n × C_out·OH·OW), through Linear.Forward (the active adapter, or the
// merged weight, applied to the patches).
func (c *Conv2d) Forward(x *Tensor) *Tensor {
	n := checkImages(c.Linear.Name+".Forward", x, c.Geom)
	return NHWCToNCHW(c.Linear.Forward(Im2Col(x, c.Geom)), n)
}

// Base returns the frozen convolution's output, with no adapter (see
// Linear.Base).
func (c *Conv2d) Base(x *Tensor) *Tensor {
	n := checkImages(c.Linear.Name+".Base", x, c.Geom)
	return NHWCToNCHW(c.Linear.Base(Im2Col(x, c.Geom)), n)
}
