package ckpt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/gopeft/gopeft/nb"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Progress is what Options.Progress receives: before each tensor (Name is
// the tensor about to be read) and once at the end (Done = Total, Name "").
type Progress struct {
	Done, Total       int    // tensors finished, tensors to analyse
	Name              string // the tensor starting, "" at the end
	Bytes, TotalBytes int64  // tensor bytes read so far and in all (both checkpoints for Compare)
	Elapsed           time.Duration
}

// String is the progress line: "[ 12/112] 10.7%  53.5/500.0 MB  4.1 s  model.layers.1.mlp.up_proj.weight".
func (p Progress) String() string {
	pct := 100.0
	if p.TotalBytes > 0 {
		pct = 100 * float64(p.Bytes) / float64(p.TotalBytes)
	}
	w := len(fmt.Sprint(p.Total))
	s := fmt.Sprintf("[%*d/%d] %5.1f%%  %.1f/%.1f MB  %.1f s", w, p.Done, p.Total, pct, float64(p.Bytes)/1e6, float64(p.TotalBytes)/1e6, p.Elapsed.Seconds())
	if p.Name != "" {
		s += "  " + p.Name
	} else {
		s += "  done"
	}
	return s
}

// progressLine shows as plain text in a notebook.
type progressLine string

func (l progressLine) Text() string { return string(l) }

var progressCount atomic.Int64

// NotebookProgress returns an Options.Progress that shows the progress as
// one line in the running notebook cell, replaced in place at every tensor
// (nb.DisplayWithID, then nb.Update). Outside a notebook it does nothing.
func NotebookProgress(title string) func(Progress) {
	id := fmt.Sprintf("ckpt-progress-%d", progressCount.Add(1))
	shown := false
	return func(p Progress) {
		line := progressLine(title + " " + p.String())
		if !shown {
			nb.DisplayWithID(id, line)
			shown = true
			return
		}
		nb.Update(id, line)
	}
}

// Options tunes Analyze and Compare. The zero value (or nil) selects the
// defaults.
type Options struct {
	// TopK is the size k of the top singular subspaces Compare compares
	// (0: 16; at most min(m, n) of each weight).
	TopK int
	// Atol and Rtol are the tolerance of Compare's second sparsity: an
	// entry counts as unchanged when |ΔW_ij| ≤ Atol + Rtol·|W₁_ij| (as
	// torch.isclose). Atol defaults to 0; Rtol 0 selects 1e-6, a negative
	// Rtol none.
	Atol, Rtol float64
	// Progress, if not nil, is called before each tensor and at the end.
	Progress func(Progress)
	// Filter, if not nil, selects the tensors to analyse among the 2-D
	// tensors of a readable dtype (the others are always skipped).
	Filter func(TensorInfo) bool
}

func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.TopK == 0 {
		c.TopK = 16
	}
	switch {
	case c.Rtol == 0:
		c.Rtol = 1e-6
	case c.Rtol < 0:
		c.Rtol = 0
	}
	switch {
	case c.TopK < 1:
		return c, fmt.Errorf("ckpt: Options.TopK = %d, want ≥ 1", c.TopK)
	case !(c.Atol >= 0) || math.IsInf(c.Atol, 0):
		return c, fmt.Errorf("ckpt: Options.Atol = %v, want a finite value ≥ 0", c.Atol)
	case math.IsNaN(c.Rtol) || math.IsInf(c.Rtol, 0):
		return c, fmt.Errorf("ckpt: Options.Rtol = %v, want a finite value", c.Rtol)
	}
	return c, nil
}

// Skipped is a tensor left out of a report, and why.
type Skipped struct {
	Name   string
	Reason string
}

// LayerStats is the analysis of one 2-D weight W (m×n); see the package
// comment for the definitions.
type LayerStats struct {
	Name          string
	DType         string
	Rows, Cols    int
	Frobenius     float64 // ‖W‖_F
	Spectral      float64 // ‖W‖₂ = σ₁
	EffectiveRank float64 // entropy effective rank
	StableRank    float64 // ‖W‖²_F/‖W‖²₂
	NumericalRank int     // #σ_i > max(m, n)·ε·σ₁
	Alpha         float64 // power-law exponent of the ESD's tail (NaN when no tail could be fitted)
	AlphaSigma    float64 // its standard error
	NTail         int     // eigenvalues in the fitted tail
	MPEdge        float64 // λ+, the upper edge of the fitted Marchenko–Pastur bulk
	MPOutliers    int     // eigenvalues λ_i = σ_i²/max(m, n) above λ+
	Err           string  // a failure of this tensor alone (NaN in the weights, …), or ""
}

// Report is Analyze's result, one row per analysed weight in the
// checkpoint's order (natural order of names: layer 2 before layer 10).
type Report struct {
	Path    string
	Layers  []LayerStats
	Skipped []Skipped
	Bytes   int64 // tensor bytes read
	Elapsed time.Duration
}

// Analyze opens the checkpoint at path (see Open) and analyses every 2-D
// weight, one at a time.
func Analyze(ctx context.Context, path string, opt *Options) (*Report, error) {
	c, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return AnalyzeCheckpoint(ctx, c, opt)
}

// AnalyzeCheckpoint analyses every 2-D weight of c (selected by
// opt.Filter), reading each into one reused matrix. It stops with ctx's
// error when ctx is cancelled, and with an *Error when a tensor cannot be
// read; a tensor whose values defeat the analysis (NaN, ±Inf) gets its
// row's Err and the scan goes on.
func AnalyzeCheckpoint(ctx context.Context, c *Checkpoint, opt *Options) (*Report, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	r := &Report{Path: c.Path}
	todo, skipped := selectTensors(c, o.Filter)
	r.Skipped = skipped
	var total int64
	for _, t := range todo {
		total += t.Bytes
	}
	start := c.BytesRead()
	var w mat.Dense // reused for every tensor
	for i, t := range todo {
		if o.Progress != nil {
			o.Progress(Progress{Done: i, Total: len(todo), Name: t.Name, Bytes: c.BytesRead() - start, TotalBytes: total, Elapsed: time.Since(t0)})
		}
		if err := c.ReadTo(ctx, &w, t.Name); err != nil {
			return nil, err
		}
		s, err := layerStats(ctx, &w)
		if err != nil {
			return nil, err
		}
		s.Name, s.DType = t.Name, t.DType
		r.Layers = append(r.Layers, s)
	}
	r.Bytes = c.BytesRead() - start
	r.Elapsed = time.Since(t0)
	if o.Progress != nil {
		o.Progress(Progress{Done: len(todo), Total: len(todo), Bytes: r.Bytes, TotalBytes: total, Elapsed: r.Elapsed})
	}
	return r, nil
}

// selectTensors splits c's tensors into those to analyse and those skipped.
func selectTensors(c *Checkpoint, filter func(TensorInfo) bool) (todo []TensorInfo, skipped []Skipped) {
	for _, t := range c.Tensors() {
		switch {
		case !Readable(t.DType):
			skipped = append(skipped, Skipped{t.Name, fmt.Sprintf("dtype %s", t.DType)})
		case len(t.Shape) != 2:
			skipped = append(skipped, Skipped{t.Name, fmt.Sprintf("%d-D shape %v", len(t.Shape), t.Shape)})
		case !t.Is2D():
			skipped = append(skipped, Skipped{t.Name, fmt.Sprintf("empty shape %v", t.Shape)})
		case filter != nil && !filter(t):
			skipped = append(skipped, Skipped{t.Name, "filtered out"})
		default:
			todo = append(todo, t)
		}
	}
	return todo, skipped
}

// layerStats analyses one weight w (m×n). It returns an error only when
// ctx is cancelled; any other failure goes into the row's Err.
func layerStats(ctx context.Context, w *mat.Dense) (LayerStats, error) {
	m, n := w.Dims()
	s := LayerStats{Rows: m, Cols: n, Alpha: math.NaN(), AlphaSigma: math.NaN(), MPEdge: math.NaN()}
	fail := func(err error) (LayerStats, error) {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		s.Err = err.Error()
		return s, nil
	}
	sp, err := peft.NewSpectrum(ctx, w)
	if err != nil {
		return fail(err)
	}
	var f2 float64
	for _, v := range sp.S {
		f2 += v * v
	}
	s.Frobenius, s.Spectral = math.Sqrt(f2), sp.S[0]
	s.EffectiveRank, s.StableRank = sp.EffectiveRank(), sp.StableRank()
	s.NumericalRank = sp.NumericalRank(0)
	esd, err := sp.ESD()
	if err != nil {
		return fail(err)
	}
	if pl, err := esd.FitPowerLaw(ctx); err == nil {
		s.Alpha, s.AlphaSigma, s.NTail = pl.Alpha, pl.Sigma, pl.NTail
	} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return s, err
	} // else: too few positive eigenvalues; α stays NaN
	if mp, err := esd.MarchenkoPastur(); err == nil {
		_, hi := mp.Edges()
		s.MPEdge = hi
		for _, l := range esd.Lambda {
			if l > hi {
				s.MPOutliers++
			}
		}
	} // else: the zero matrix has no bulk
	return s, nil
}
