package ckpt

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// UpdateStats is the analysis of the update ΔW = W₂ − W₁ (m×n) of one
// weight between two checkpoints; see the package comment.
type UpdateStats struct {
	Name          string
	DType         string // of W₂
	Rows, Cols    int
	NormW1        float64 // ‖W₁‖_F
	NormDelta     float64 // ‖ΔW‖_F
	RelDelta      float64 // ‖ΔW‖_F / ‖W₁‖_F (NaN when W₁ = 0)
	Sparsity      float64 // share of entries with ΔW_ij = 0
	SparsityTol   float64 // share with |ΔW_ij| ≤ Atol + Rtol·|W₁_ij|
	Rank          int     // numerical rank of ΔW (#σ_i > max(m, n)·ε·σ₁)
	RankFrac      float64 // Rank / min(m, n)
	EffectiveRank float64 // entropy effective rank of ΔW
	StableRank    float64 // ‖ΔW‖²_F/‖ΔW‖²₂
	K             int     // size of the compared subspaces, min(TopK, m, n)
	SimLeft       float64 // φ_k of W₁'s and W₂'s top-k left singular vectors (NaN when W₁ or W₂ is 0)
	SimRight      float64 // φ_k of their top-k right singular vectors
	Err           string  // a failure of this tensor alone, or ""
}

// UpdateReport is Compare's result, one row per weight the two
// checkpoints share, in natural name order.
type UpdateReport struct {
	Path1, Path2 string
	TopK         int
	Atol, Rtol   float64
	Layers       []UpdateStats
	Skipped      []Skipped
	Bytes        int64 // tensor bytes read from both
	Elapsed      time.Duration
}

// Compare opens the checkpoints at path1 (the base, W₁) and path2 (W₂) and
// analyses the update of every 2-D weight they share.
func Compare(ctx context.Context, path1, path2 string, opt *Options) (*UpdateReport, error) {
	c1, err := Open(path1)
	if err != nil {
		return nil, err
	}
	defer c1.Close()
	c2, err := Open(path2)
	if err != nil {
		return nil, err
	}
	defer c2.Close()
	return CompareCheckpoints(ctx, c1, c2, opt)
}

// CompareCheckpoints analyses the update from c1 to c2 of every 2-D weight
// present in both with the same shape, streaming both tensor by tensor
// (two reused matrices: W₁, and W₂ that then holds ΔW). Weights present in
// one only, or with different shapes, are listed in Skipped. Errors are as
// for AnalyzeCheckpoint.
func CompareCheckpoints(ctx context.Context, c1, c2 *Checkpoint, opt *Options) (*UpdateReport, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	r := &UpdateReport{Path1: c1.Path, Path2: c2.Path, TopK: o.TopK, Atol: o.Atol, Rtol: o.Rtol}
	todo1, skipped := selectTensors(c1, o.Filter)
	r.Skipped = skipped
	var todo []TensorInfo
	var total int64
	for _, t := range todo1 {
		t2, ok := c2.Info(t.Name)
		switch {
		case !ok:
			r.Skipped = append(r.Skipped, Skipped{t.Name, "only in " + c1.Path})
		case !slices.Equal(t.Shape, t2.Shape):
			r.Skipped = append(r.Skipped, Skipped{t.Name, fmt.Sprintf("shape %v in %s but %v in %s", t.Shape, c1.Path, t2.Shape, c2.Path)})
		case !Readable(t2.DType):
			r.Skipped = append(r.Skipped, Skipped{t.Name, fmt.Sprintf("dtype %s in %s", t2.DType, c2.Path)})
		default:
			todo = append(todo, t)
			total += t.Bytes + t2.Bytes
		}
	}
	for _, t := range c2.Tensors() {
		if _, ok := c1.Info(t.Name); !ok {
			r.Skipped = append(r.Skipped, Skipped{t.Name, "only in " + c2.Path})
		}
	}
	start := c1.BytesRead() + c2.BytesRead()
	read := func() int64 { return c1.BytesRead() + c2.BytesRead() - start }
	var w1, w2 mat.Dense // reused for every tensor
	for i, t := range todo {
		if o.Progress != nil {
			o.Progress(Progress{Done: i, Total: len(todo), Name: t.Name, Bytes: read(), TotalBytes: total, Elapsed: time.Since(t0)})
		}
		if err := c1.ReadTo(ctx, &w1, t.Name); err != nil {
			return nil, err
		}
		if err := c2.ReadTo(ctx, &w2, t.Name); err != nil {
			return nil, err
		}
		s, err := updateStats(ctx, &w1, &w2, o)
		if err != nil {
			return nil, err
		}
		s.Name = t.Name
		s.DType = c2.tensors[c2.byName[t.Name]].DType
		r.Layers = append(r.Layers, s)
	}
	r.Bytes = read()
	r.Elapsed = time.Since(t0)
	if o.Progress != nil {
		o.Progress(Progress{Done: len(todo), Total: len(todo), Bytes: r.Bytes, TotalBytes: total, Elapsed: r.Elapsed})
	}
	return r, nil
}

// updateStats analyses the update from w1 to w2 (same shape) and leaves
// ΔW = w2 − w1 in w2. It returns an error only when ctx is cancelled.
func updateStats(ctx context.Context, w1, w2 *mat.Dense, o Options) (UpdateStats, error) {
	m, n := w1.Dims()
	if m2, n2 := w2.Dims(); m2 != m || n2 != n {
		panic(fmt.Sprintf("ckpt: updateStats: W₁ %d×%d and W₂ %d×%d differ in shape", m, n, m2, n2))
	}
	k := min(o.TopK, m, n)
	s := UpdateStats{Rows: m, Cols: n, K: k, RelDelta: math.NaN(), SimLeft: math.NaN(), SimRight: math.NaN()}
	fail := func(err error) (UpdateStats, error) {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		s.Err = err.Error()
		return s, nil
	}
	// The top-k singular subspaces of W₁ and W₂, before w2 is overwritten.
	topts := &accel.TruncatedOptions{PowerIters: 4, Seed: 1}
	svd1, err := accel.TruncatedSVD(ctx, w1, k, topts)
	if err != nil {
		return fail(fmt.Errorf("SVD of W₁: %w", err))
	}
	svd2, err := accel.TruncatedSVD(ctx, w2, k, topts)
	if err != nil {
		return fail(fmt.Errorf("SVD of W₂: %w", err))
	}
	if svd1.S[0] > 0 && svd2.S[0] > 0 {
		left, err := peft.SubspaceSimilarityBases(svd1.U, svd2.U)
		if err != nil {
			return fail(err)
		}
		right, err := peft.SubspaceSimilarityBases(svd1.VT.T(), svd2.VT.T())
		if err != nil {
			return fail(err)
		}
		s.SimLeft, s.SimRight = left.At(k-1, k-1), right.At(k-1, k-1)
	}

	s.NormW1 = mat.Norm(w1, 2) // Frobenius
	w2.Sub(w2, w1)             // w2 now holds ΔW
	dw := w2
	if s.Sparsity, err = peft.UpdateSparsity(dw, 0); err != nil {
		return fail(err)
	}
	a1, ad := w1.RawMatrix(), dw.RawMatrix()
	same := 0
	for i := range m {
		r1, rd := a1.Data[i*a1.Stride:i*a1.Stride+n], ad.Data[i*ad.Stride:i*ad.Stride+n]
		for j, d := range rd {
			if math.Abs(d) <= o.Atol+o.Rtol*math.Abs(r1[j]) {
				same++
			}
		}
	}
	s.SparsityTol = float64(same) / float64(m*n)

	sp, err := peft.NewSpectrum(ctx, dw)
	if err != nil {
		return fail(fmt.Errorf("spectrum of ΔW: %w", err))
	}
	var f2 float64
	for _, v := range sp.S {
		f2 += v * v
	}
	s.NormDelta = math.Sqrt(f2)
	if s.NormW1 > 0 {
		s.RelDelta = s.NormDelta / s.NormW1
	}
	s.Rank = sp.NumericalRank(0)
	s.RankFrac = float64(s.Rank) / float64(min(m, n))
	s.EffectiveRank, s.StableRank = sp.EffectiveRank(), sp.StableRank()
	return s, nil
}

// Overall returns the update sparsities over all the weights together,
// counting entries (the paper's global figure): exact and with tolerance.
func (r *UpdateReport) Overall() (sparsity, sparsityTol float64) {
	var n, z, zt float64
	for _, l := range r.Layers {
		if l.Err != "" {
			continue
		}
		e := float64(l.Rows * l.Cols)
		n += e
		z += l.Sparsity * e
		zt += l.SparsityTol * e
	}
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	return z / n, zt / n
}
