package snnet

import (
	"context"
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// Stitched is one network of SN-Net's family: the first L layers of the
// front anchor, the stitching layer, and the back anchor's layers from
// L'+1 on:
//
//	h = ReLU(…ReLU(x·W₁ᵀ + b₁)…)          front fc1…fcL,    h (n×d1)
//	z = h·Mᵀ + c (+ the stitch's adapter)  stitch,           z (n×d2)
//	logits = …ReLU(z·W_{L'+1}ᵀ + b_{L'+1})…  back fc(L'+1)…,  (n×classes)
//
// with no activation after the stitch: it stands in for the back anchor's
// activation at L'. The anchors' layers are copies (so that merging or
// training here never changes the anchors), named "front.fc1", …,
// "back.fc3", …, and frozen; the stitch, named "stitch", is a peft.Linear
// with W = M (d2×d1) and B = c (1×d2), trainable until an adapter is
// added. Stitched is a peft.Model and a peft.Metricer (accuracy), so
// peft.Train, peft.Evaluate and any adapter work on it. Dropout of the
// anchors is not applied.
type Stitched struct {
	Name   string         // "front[:L]→back[L':]", or the label Curve gives
	Front  []*peft.Linear // copies of the front anchor's fc1…fcL
	Stitch *peft.Linear   // M (d2×d1), c (1×d2)
	Back   []*peft.Linear // copies of the back anchor's fc(L'+1)…fcN
	L      int            // front layers run
	LPrime int            // back layers the stitch stands in for
	// FitRows is the number of rows the least-squares fit used, and
	// FitError its relative residual ‖X1·Mᵀ + 1cᵀ − X2‖_F / ‖X2‖_F on them.
	FitRows  int
	FitError float64
}

var (
	_ peft.Model    = (*Stitched)(nil)
	_ peft.Metricer = (*Stitched)(nil)
)

// StitchConfig says where New stitches and how it fits the stitch.
type StitchConfig struct {
	L      int // front layers before the stitch, 1 ≤ L ≤ (front's layers) − 1
	LPrime int // back layers the stitch stands in for, 1 ≤ L' ≤ (back's layers) − 1
	// The least-squares fit runs on Batches batches of BatchSize training
	// rows drawn from the data with Seed: 4 and 64 if 0. For StitchGPT,
	// BatchSize counts sequences (DefaultGPTBatchSize if 0), L and L' are
	// block boundaries 0 … blocks.
	Batches   int
	BatchSize int
	Seed      int64
}

func (cfg StitchConfig) withDefaults() StitchConfig {
	if cfg.Batches == 0 {
		cfg.Batches = 4
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 64
	}
	return cfg
}

// check returns an error naming the field and value out of range for
// anchors of nf and ng layers.
func (cfg StitchConfig) check(nf, ng int) error {
	switch {
	case cfg.L < 1 || cfg.L > nf-1:
		return fmt.Errorf("peft: SN-Netv2 stitch: L = %d out of range: want 1 ≤ L ≤ %d (the front anchor has %d layers)", cfg.L, nf-1, nf)
	case cfg.LPrime < 1 || cfg.LPrime > ng-1:
		return fmt.Errorf("peft: SN-Netv2 stitch: LPrime = %d out of range: want 1 ≤ L' ≤ %d (the back anchor has %d layers)", cfg.LPrime, ng-1, ng)
	case cfg.Batches < 1:
		return fmt.Errorf("peft: SN-Netv2 stitch: Batches = %d; want ≥ 1 (4 if 0)", cfg.Batches)
	case cfg.BatchSize < 1:
		return fmt.Errorf("peft: SN-Netv2 stitch: BatchSize = %d; want ≥ 1 (64 if 0)", cfg.BatchSize)
	}
	return nil
}

// New returns the stitched network of front's first cfg.L layers and back's
// layers from cfg.LPrime+1 on, its stitch fitted by least squares (see
// LeastSquares) to map front's activations at L onto back's at L', both
// computed on cfg.Batches batches of training rows of data. Stitch M and c
// are trainable, the anchors' copies frozen; add SN-Netv2's LoRA with Add.
//
// It panics if an anchor is nil or the anchors differ in input width or in
// classes. It returns an error, naming the field and value, if L or L' is
// out of range or an anchor layer has adapters (Bake or detach them
// first), and an error if the data gives no rows, the activations are not
// finite, the fit fails, or ctx is cancelled.
func New(ctx context.Context, front, back *peft.MLP, data peft.Dataset, cfg StitchConfig) (*Stitched, error) {
	checkAnchors("snnet.New", front, back)
	cfg = cfg.withDefaults()
	nf, ng := len(front.Layers), len(back.Layers)
	if err := cfg.check(nf, ng); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		what string
		m    *peft.MLP
	}{{"front", front}, {"back", back}} {
		for _, l := range a.m.Layers {
			if len(l.Adapters) > 0 {
				return nil, fmt.Errorf("peft: SN-Netv2 stitch: the %s anchor's %s has adapters %v; bake (Linear.Bake) or detach them first", a.what, l.Name, l.AdapterNames())
			}
		}
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	var x1s, x2s []*mat.Dense
	rows := 0
	for i := 0; i < cfg.Batches; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := data.Sample(rng, cfg.BatchSize)
		if b.X == nil {
			return nil, fmt.Errorf("peft: SN-Netv2 stitch: batch %d has no inputs X: the data must be a classification or regression set", i+1)
		}
		x1s = append(x1s, Features(front, cfg.L, b.X))     // (n×d1)
		x2s = append(x2s, Features(back, cfg.LPrime, b.X)) // (n×d2)
		n, _ := b.X.Dims()
		rows += n
	}
	x1, x2 := stack(x1s), stack(x2s)
	m, c, err := LeastSquares(ctx, x1, x2)
	if err != nil {
		return nil, err
	}
	s := &Stitched{
		Name:    fmt.Sprintf("front[:%d]→back[%d:]", cfg.L, cfg.LPrime),
		Stitch:  &peft.Linear{Name: StitchModule, W: peft.NewParam(StitchModule+".weight", m), B: peft.NewParam(StitchModule+".bias", c)},
		L:       cfg.L,
		LPrime:  cfg.LPrime,
		FitRows: rows,
	}
	for _, l := range front.Layers[:cfg.L] {
		s.Front = append(s.Front, frozenCopy("front."+l.Name, l))
	}
	for _, l := range back.Layers[cfg.LPrime:] {
		s.Back = append(s.Back, frozenCopy("back."+l.Name, l))
	}
	s.FitError = relResidual(x1, x2, m, c)
	return s, nil
}

// checkAnchors panics unless front and back are MLPs of the same input
// width and classes.
func checkAnchors(op string, front, back *peft.MLP) {
	if front == nil || back == nil || len(front.Layers) == 0 || len(back.Layers) == 0 {
		panic(peft.ArgError{Op: op, Msg: "both anchors must be MLPs with layers"})
	}
	_, fin := front.Layers[0].Dims()
	_, bin := back.Layers[0].Dims()
	fout, _ := front.Layers[len(front.Layers)-1].Dims()
	bout, _ := back.Layers[len(back.Layers)-1].Dims()
	if fin != bin || fout != bout {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("front anchor %d→…→%d, back anchor %d→…→%d", fin, fout, bin, bout),
			Want: "anchors of the same input width and the same classes"})
	}
}

// frozenCopy returns a frozen copy of l named name.
func frozenCopy(name string, l *peft.Linear) *peft.Linear {
	c := &peft.Linear{Name: name, W: peft.NewParam(name+".weight", mat.DenseCopyOf(l.W.Value))}
	c.W.Freeze()
	if l.B != nil {
		c.B = peft.NewParam(name+".bias", mat.DenseCopyOf(l.B.Value))
		c.B.Freeze()
	}
	return c
}

// stack returns the rows of ms one after another.
func stack(ms []*mat.Dense) *mat.Dense {
	n := 0
	_, d := ms[0].Dims()
	for _, m := range ms {
		r, _ := m.Dims()
		n += r
	}
	out := mat.NewDense(n, d, nil)
	i := 0
	for _, m := range ms {
		r, _ := m.Dims()
		out.Slice(i, i+r, 0, d).(*mat.Dense).Copy(m)
		i += r
	}
	return out
}

// relResidual returns ‖x1·mᵀ + 1cᵀ − x2‖_F / ‖x2‖_F.
func relResidual(x1, x2, m, c *mat.Dense) float64 {
	var r mat.Dense
	r.Mul(x1, m.T())
	n, d2 := r.Dims()
	for i := 0; i < n; i++ {
		row := r.RawRowView(i)
		for j := 0; j < d2; j++ {
			row[j] += c.At(0, j) - x2.At(i, j)
		}
	}
	nx := mat.Norm(x2, 2)
	if nx == 0 {
		return mat.Norm(&r, 2)
	}
	return mat.Norm(&r, 2) / nx
}

// Features returns the activation of m at position l for inputs x
// (n×in): the output of its first l layers, each followed by ReLU
// (n×width of layer l), as the stitch sees it; l = 0 gives x. Adapters on
// m's layers take part. It panics if l is outside [0, layers − 1] or x
// does not fit.
func Features(m *peft.MLP, l int, x *mat.Dense) *mat.Dense {
	if l < 0 || l > len(m.Layers)-1 {
		panic(peft.ArgError{Op: "snnet.Features", Msg: fmt.Sprintf("position l = %d outside [0, %d] for an MLP of %d layers", l, len(m.Layers)-1, len(m.Layers))})
	}
	h := peft.NewConst(x)
	for _, ly := range m.Layers[:l] {
		h = peft.ReLU(ly.Forward(h))
	}
	return mat.DenseCopyOf(h.Value)
}

// Forward returns the logits (n×classes) for x (n×in).
func (s *Stitched) Forward(x *peft.Tensor) *peft.Tensor {
	h := x
	for _, l := range s.Front {
		h = peft.ReLU(l.Forward(h)) // (n×width)
	}
	h = s.Stitch.Forward(h) // (n×d2)
	for i, l := range s.Back {
		h = l.Forward(h)
		if i < len(s.Back)-1 {
			h = peft.ReLU(h)
		}
	}
	return h
}

// Modules returns the front layers, the stitch and the back layers, in
// the order the input meets them.
func (s *Stitched) Modules() []*peft.Linear {
	mods := append([]*peft.Linear(nil), s.Front...)
	mods = append(mods, s.Stitch)
	return append(mods, s.Back...)
}

// Params returns each layer's weight and bias, then the adapters'
// parameters.
func (s *Stitched) Params() []*peft.Tensor {
	var ps []*peft.Tensor
	mods := s.Modules()
	for _, l := range mods {
		ps = append(ps, l.W)
		if l.B != nil {
			ps = append(ps, l.B)
		}
	}
	return append(ps, peft.AdapterParams(mods)...)
}

// Loss returns the mean cross-entropy of the logits of b.X against b.Labels.
func (s *Stitched) Loss(b peft.Batch) *peft.Tensor {
	return peft.CrossEntropy(s.Forward(peft.NewConst(b.X)), b.Labels)
}

// SetTraining switches the layers' (and adapters') training behaviour.
func (s *Stitched) SetTraining(training bool) {
	for _, l := range s.Modules() {
		l.Training = training
	}
}

// Predict returns the most likely class of each row of x.
func (s *Stitched) Predict(x *mat.Dense) []int {
	v := s.Forward(peft.NewConst(x)).Value
	n, c := v.Dims()
	out := make([]int, n)
	for i := 0; i < n; i++ {
		row := v.RawRowView(i)
		for j := 1; j < c; j++ {
			if row[j] > row[out[i]] {
				out[i] = j
			}
		}
	}
	return out
}

// Metric returns the accuracy on b.
func (s *Stitched) Metric(b peft.Batch) float64 {
	correct := 0
	for i, p := range s.Predict(b.X) {
		if p == b.Labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(b.Labels))
}

// MetricName returns "accuracy".
func (s *Stitched) MetricName() string { return "accuracy" }

// FLOPs returns the multiply-adds per example of a forward pass (the
// count DeiT and SN-Net report as FLOPs): Σ in·out over the layers, the
// stitch counted once as d1·d2, its LoRA merged as it is for deployment.
func (s *Stitched) FLOPs() int { return macs(s.Modules()) }

// FLOPsOf returns the multiply-adds per example of m's forward pass, an
// anchor's point on the curve.
func FLOPsOf(m *peft.MLP) int { return macs(m.Layers) }

func macs(ls []*peft.Linear) int {
	n := 0
	for _, l := range ls {
		out, in := l.Dims()
		n += out * in
	}
	return n
}

// LoRA returns the stitch's active adapter if it is a *lora.LoRA (as Add
// makes), or nil.
func (s *Stitched) LoRA() *lora.LoRA {
	a, _ := s.Stitch.ActiveAdapter().(*lora.LoRA)
	return a
}

// M returns a copy of the stitch's weight (d2×d1): the least-squares M,
// unless the stitch was trained without an adapter. While an adapter is
// merged into the stitch, W holds M + ΔW: unmerge first.
func (s *Stitched) M() *mat.Dense { return mat.DenseCopyOf(s.Stitch.W.Value) }

// C returns a copy of the stitch's bias c (1×d2).
func (s *Stitched) C() *mat.Dense { return mat.DenseCopyOf(s.Stitch.B.Value) }

// Spectrum returns the singular values of the stitch's base weight M,
// descending: the starting spectrum the stitch's LoRA updates.
func (s *Stitched) Spectrum(ctx context.Context) ([]float64, error) {
	sv, err := accel.SingularValues(ctx, s.M())
	if err != nil {
		return nil, fmt.Errorf("peft: SN-Netv2 %s: singular values of M: %w", s.Name, err)
	}
	return sv, nil
}

// Widths returns the stitch's input and output widths d1 and d2.
func (s *Stitched) Widths() (d1, d2 int) {
	d2, d1 = s.Stitch.Dims()
	return d1, d2
}
