// Package frugal is FRUGAL, full-rank training with gradient splitting: Adam
// on a small state-full subspace of each gradient and a state-free rule
// (signSGD or SGD) on the rest, so every weight trains in full with a
// fraction of Adam's state.
package frugal

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// FRUGAL splits each targeted matrix's gradient in two and updates the
// parts by different rules (Zmushko, Beznosikov, Takáč and Horváth 2025,
// "FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for
// Scalable Training", ICML 2025, arXiv:2411.07837). For W (m×n) with
// gradient G (m×n), a projector P, refreshed every T steps of the matrix,
// selects a state-full subspace of density ρ:
//
//	g_full = P(G),   g_free = G − P⁻¹(P(G))             G = P⁻¹(g_full) + g_free
//	W ← W·(1 − η·λ) − η·P⁻¹(Adam(g_full)) − η_free·sign(g_free)
//
// with Adam's two moments kept for g_full only, η_free = η·FreeLRScale, and
// sign(0) = 0. The projectors (Config.Projection):
//
//	"svd" (default), as GaLore: at a refresh G = U·Σ·Vᵀ and
//	  m < n:  P = U[:, :r] (m×r), g_full = Pᵀ·G (r×n),  P⁻¹(X) = P·X,  r = round(ρ·m)
//	  m ≥ n:  Q = Vᵀ[:r, :] (r×n), g_full = G·Qᵀ (m×r), P⁻¹(X) = X·Q,  r = round(ρ·n)
//	  state 2·max(m,n)·r moments + min(m,n)·r projector
//	"random": P or Q with random orthonormal columns or rows (QR of a
//	  Gaussian) instead of singular vectors; same shapes and state
//	"columns": k = ⌊ρ·n⌋ random columns; g_full = G[:, S] (m×k); state
//	  2·m·k moments + k indices
//	"rows": k = ⌊ρ·m⌋ random rows; state 2·k·n + k
//	"randk": K = ⌊ρ·m·n⌋ random entries; state 2·K + K
//
// (round is Python's, half to even; indices count 8 bytes each.) With a
// coordinate projector the two parts have disjoint supports: the selected
// coordinates get Adam, the others signSGD; at ρ = 1 it selects every
// coordinate and FRUGAL is Adam, as peft.AdamW bit for bit (until a refresh
// resets the moments, see KeepStatistics). At ρ = 0 no projector selects
// anything, no state is kept, and FRUGAL is signSGD, W ← W − η_free·sign(G).
//
// Defaults are the reference code's (the paper's repository: its README
// and frugal/proj_optimizer_templates.py): ρ = 0.25, T = 200, signSGD on
// the state-free part with η_free = η (its main experiments use
// FreeLRScale 1 to pre-train and 0.1 to fine-tune), Adam β = (0.9,
// 0.999), ε = 1e-8, moments reset to zero (with Adam's step count) at every
// refresh, decoupled weight decay applied before the update. Every other
// trainable tensor (biases, norms, untargeted matrices) gets plain Adam,
// the same arithmetic as peft.AdamW. Departures: the reference targets the
// Linear weights of attention and MLP modules by name; here Config.Targets
// chooses, and by default every 2-D tensor (both sides > 1) is split. The
// reference has no single projection default (its SVD optimizer defaults to
// "svd", its coordinate optimizer to "columns"); "svd" is the default here,
// for comparing with GaLore, which drops g_free. When r = min(m,n) the
// projector is square orthogonal and g_free is zero in exact arithmetic, so
// it is dropped rather than have sign() blow its rounding errors up to ±η.
// The blockwise (BAdam-like) projector of the paper is not implemented.
//
// FRUGAL implements peft.Optimizer and peft.ContextOptimizer: Train gives it
// its context, which stops a projector's SVD when cancelled.
type FRUGAL struct {
	cfg   Config
	rng   *rand.Rand
	state map[*peft.Tensor]*frugalState
	ctx   context.Context // of the SVDs; nil: context.Background()
}

// Projection names a projector of Config.Projection.
const (
	SVD     = "svd"
	Random  = "random"
	Columns = "columns"
	Rows    = "rows"
	RandK   = "randk"
)

// State-free rules of Config.StateFree.
const (
	SignSGD  = "signsgd" // W ← W − η_free·sign(g_free)
	PlainSGD = "sgd"     // W ← W − η_free·g_free
	NoUpdate = "none"    // g_free is dropped (GaLore's rule)
)

// DensityZero is the Config.Density that selects ρ = 0 (0 selects 0.25):
// no state-full subspace, the state-free rule on the whole matrix.
const DensityZero = -1.0

// Config configures New. Zero fields select the defaults noted.
type Config struct {
	// Density ρ in [0, 1], the fraction of each matrix updated by Adam
	// (0 selects the paper's 0.25; DensityZero selects ρ = 0).
	Density float64
	// UpdateGap T: the projector is renewed every T steps of each matrix
	// (0 selects the paper's 200).
	UpdateGap int
	// Projection is SVD (the default when empty), Random, Columns, Rows or
	// RandK.
	Projection string
	// StateFree is the rule for g_free: SignSGD (the default when empty),
	// PlainSGD or NoUpdate.
	StateFree string
	// FreeLRScale sets η_free = FreeLRScale·η (0 selects 1, the paper's
	// pre-training value; it fine-tunes with 0.1).
	FreeLRScale float64
	// KeepStatistics keeps Adam's moments and step count across a refresh
	// (the reference's reset_statistics=False); by default they restart
	// from zero with each new subspace.
	KeepStatistics bool
	// Targets names the matrices to split: a tensor's full name
	// ("blocks.0.attn.q.weight"), its module's name ("blocks.0.attn.q"), a
	// dotted suffix of either ("attn.q"), a path.Match glob
	// ("blocks.*.mlp.*") or a regular expression written ^…$ over either.
	// Only 2-D tensors (both sides > 1) are split. Empty: every 2-D
	// trainable tensor.
	Targets []string
	// Beta1, Beta2 are Adam's moment decay rates (0 selects 0.9, 0.999).
	Beta1, Beta2 float64
	// Eps is Adam's ε (0 selects 1e-8).
	Eps float64
	// WeightDecay λ, decoupled, for every tensor (0: none).
	WeightDecay float64
	// Seed seeds the random projectors.
	Seed uint64
}

// frugalState is one tensor's optimizer state.
type frugalState struct {
	split bool       // a targeted matrix, or plain Adam
	left  bool       // svd/random: P (m×r) on the left, else Q (r×n) on the right
	pq    *mat.Dense // svd/random projector; nil if r = 0 or coordinates
	r     int        // svd/random rank
	idx   []int      // coordinate projectors: the selected columns, rows or flat entries, ascending
	m, v  []float64  // Adam's moments over the state-full subspace (row-major)
	t     int        // Adam steps since the moments were last reset
	k     int        // steps taken
}

// New returns a FRUGAL optimizer. A configuration out of range panics with
// a peft.ArgError naming the field and value; peft.Maybe turns it into an
// error.
func New(cfg Config) *FRUGAL {
	if cfg.Density == 0 {
		cfg.Density = 0.25
	} else if cfg.Density == DensityZero {
		cfg.Density = 0
	}
	if cfg.UpdateGap == 0 {
		cfg.UpdateGap = 200
	}
	if cfg.Projection == "" {
		cfg.Projection = SVD
	}
	if cfg.StateFree == "" {
		cfg.StateFree = SignSGD
	}
	if cfg.FreeLRScale == 0 {
		cfg.FreeLRScale = 1
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.999
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	bad := func(msg string, args ...any) {
		panic(peft.ArgError{Op: "frugal.New", Msg: fmt.Sprintf(msg, args...)})
	}
	switch {
	case !(cfg.Density >= 0 && cfg.Density <= 1):
		bad("Config.Density = %g out of range: want ρ in [0, 1] (0 selects 0.25, DensityZero selects 0)", cfg.Density)
	case cfg.UpdateGap < 0:
		bad("Config.UpdateGap = %d out of range: want T ≥ 1 (0 selects 200)", cfg.UpdateGap)
	case !slices.Contains([]string{SVD, Random, Columns, Rows, RandK}, cfg.Projection):
		bad("Config.Projection = %q: want %q, %q, %q, %q or %q", cfg.Projection, SVD, Random, Columns, Rows, RandK)
	case !slices.Contains([]string{SignSGD, PlainSGD, NoUpdate}, cfg.StateFree):
		bad("Config.StateFree = %q: want %q, %q or %q", cfg.StateFree, SignSGD, PlainSGD, NoUpdate)
	case !(cfg.FreeLRScale >= 0) || math.IsInf(cfg.FreeLRScale, 0):
		bad("Config.FreeLRScale = %g out of range: want a finite scale ≥ 0", cfg.FreeLRScale)
	case !(cfg.Beta1 >= 0 && cfg.Beta1 < 1):
		bad("Config.Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case !(cfg.Beta2 >= 0 && cfg.Beta2 < 1):
		bad("Config.Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case !(cfg.Eps > 0) || math.IsInf(cfg.Eps, 0):
		bad("Config.Eps = %g out of range: want a finite ε > 0", cfg.Eps)
	case !(cfg.WeightDecay >= 0) || math.IsInf(cfg.WeightDecay, 0):
		bad("Config.WeightDecay = %g out of range: want a finite λ ≥ 0", cfg.WeightDecay)
	}
	for _, p := range cfg.Targets {
		if err := peft.CheckParamPattern(p); err != nil {
			bad("Config.Targets pattern %q: %v", p, err)
		}
	}
	return &FRUGAL{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x46525547)), state: map[*peft.Tensor]*frugalState{}}
}

// Config returns f's configuration with the defaults filled in (Density
// as the ρ in use: 0 for DensityZero).
func (f *FRUGAL) Config() Config { return f.cfg }

// SetContext sets the context of the SVDs of the following steps (Train
// calls it with its own). Until it is called, they run with
// context.Background().
func (f *FRUGAL) SetContext(ctx context.Context) { f.ctx = ctx }

// splits reports whether f splits p's gradient.
func (f *FRUGAL) splits(p *peft.Tensor) bool {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false
	}
	return len(f.cfg.Targets) == 0 || peft.MatchParam(f.cfg.Targets, p.Name)
}

// subspace returns the size of the state-full subspace of an m×n matrix:
// the rank r for svd/random (with the side), or the count of selected
// columns, rows or entries.
func (f *FRUGAL) subspace(m, n int) (size int, left bool) {
	rho := f.cfg.Density
	switch f.cfg.Projection {
	case SVD, Random:
		if m < n {
			return int(math.RoundToEven(rho * float64(m))), true
		}
		return int(math.RoundToEven(rho * float64(n))), false
	case Columns:
		return int(rho * float64(n)), false
	case Rows:
		return int(rho * float64(m)), false
	default: // RandK
		return int(rho * float64(m*n)), false
	}
}

// newProjector is a projector computed in the first phase of a step.
type newProjector struct {
	pq  *mat.Dense
	idx []int
}

// project computes p's new projector from its gradient (SVD) or from f's
// random source.
func (f *FRUGAL) project(ctx context.Context, p *peft.Tensor, st *frugalState) (newProjector, error) {
	m, n := p.Dims()
	size, left := f.subspace(m, n)
	if size == 0 {
		return newProjector{}, nil
	}
	switch f.cfg.Projection {
	case SVD:
		svd, err := accel.ThinSVD(ctx, p.Grad)
		if err != nil {
			return newProjector{}, fmt.Errorf("peft: FRUGAL(%s): SVD of the %s gradient at step %d: %w", p.Name, peft.ShapeOf(m, n), st.k+1, err)
		}
		if left {
			return newProjector{pq: mat.DenseCopyOf(svd.U.Slice(0, m, 0, size))}, nil // P (m×r)
		}
		return newProjector{pq: mat.DenseCopyOf(svd.VT.Slice(0, size, 0, n))}, nil // Q (r×n)
	case Random:
		side := n
		if left {
			side = m
		}
		g := mat.NewDense(side, size, nil)
		for i := 0; i < side; i++ {
			for j := 0; j < size; j++ {
				g.Set(i, j, f.rng.NormFloat64())
			}
		}
		var qr mat.QR
		qr.Factorize(g)
		var q mat.Dense
		qr.QTo(&q)
		o := mat.DenseCopyOf(q.Slice(0, side, 0, size)) // orthonormal columns (side×r)
		if left {
			return newProjector{pq: o}, nil
		}
		return newProjector{pq: mat.DenseCopyOf(o.T())}, nil
	default:
		total := n
		switch f.cfg.Projection {
		case Rows:
			total = m
		case RandK:
			total = m * n
		}
		idx := f.rng.Perm(total)[:size]
		slices.Sort(idx)
		return newProjector{idx: idx}, nil
	}
}

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr. It first computes the projectors due at this step and
// only then updates anything: if an SVD does not converge, or the context
// set by SetContext is cancelled, Step panics with an error naming the
// tensor and the step (wrapping the context's error), and no weight and no
// state has changed; peft.Maybe turns the panic into an error.
func (f *FRUGAL) Step(params []*peft.Tensor, lr float64) {
	ctx := f.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	// phase 1: the projectors, which may fail
	due := map[*peft.Tensor]newProjector{}
	for _, p := range params {
		if !p.Trainable || p.Grad == nil || !f.splits(p) {
			continue
		}
		st := f.state[p]
		if st == nil {
			st = &frugalState{}
		} else if st.k%f.cfg.UpdateGap != 0 {
			continue
		}
		if _, ok := due[p]; ok {
			continue // listed twice
		}
		np, err := f.project(ctx, p, st)
		if err != nil {
			panic(err)
		}
		due[p] = np
	}
	// phase 2: the updates
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		st := f.state[p]
		if st == nil {
			st = &frugalState{split: f.splits(p)}
			f.state[p] = st
		}
		if f.cfg.WeightDecay > 0 {
			p.Value.Scale(1-lr*f.cfg.WeightDecay, p.Value) // decoupled weight decay
		}
		if !st.split {
			f.stepAdam(p, st, lr)
			continue
		}
		if np, ok := due[p]; ok {
			delete(due, p)
			f.renew(p, st, np)
		}
		st.k++
		switch f.cfg.Projection {
		case SVD, Random:
			f.stepProjected(p, st, lr)
		default:
			f.stepCoords(p, st, lr)
		}
	}
}

// renew installs a new projector and, unless KeepStatistics, zeroes the
// moments and Adam's step count.
func (f *FRUGAL) renew(p *peft.Tensor, st *frugalState, np newProjector) {
	m, n := p.Dims()
	size, left := f.subspace(m, n)
	st.pq, st.idx, st.left = np.pq, np.idx, left
	var cells int
	switch f.cfg.Projection {
	case SVD, Random:
		st.r = size
		cells = size * n // R = Pᵀ·G (r×n)
		if !left {
			cells = m * size // R = G·Qᵀ (m×r)
		}
	case Columns:
		cells = m * size
	case Rows:
		cells = size * n
	default:
		cells = size
	}
	if cells == 0 {
		st.m, st.v, st.t = nil, nil, 0
		return
	}
	if st.m == nil || !f.cfg.KeepStatistics {
		st.m, st.v, st.t = make([]float64, cells), make([]float64, cells), 0
	}
}

// adam updates the moments m, v with gradient g (t already counts this
// step) and returns the update lr·m̂/(√v̂ + ε), as peft.AdamW computes it.
func (f *FRUGAL) adam(m, v []float64, g float64, k, t int, lr float64) float64 {
	b1, b2 := f.cfg.Beta1, f.cfg.Beta2
	c1 := 1 - math.Pow(b1, float64(t)) // bias corrections of both moments
	c2 := 1 - math.Pow(b2, float64(t))
	m[k] = b1*m[k] + (1-b1)*g   // update the first moment (momentum)
	v[k] = b2*v[k] + (1-b2)*g*g // update the second moment
	mh, vh := m[k]/c1, v[k]/c2  // bias-correct both moments
	return lr * mh / (math.Sqrt(vh) + f.cfg.Eps)
}

// free returns the state-free step of a residual entry g: η_free·sign(g),
// η_free·g, or 0.
func (f *FRUGAL) free(g, lr float64) float64 {
	switch f.cfg.StateFree {
	case SignSGD:
		if g == 0 {
			return 0
		}
		return lr * f.cfg.FreeLRScale * math.Copysign(1, g)
	case PlainSGD:
		return lr * f.cfg.FreeLRScale * g
	}
	return 0
}

// stepAdam is plain Adam on an unsplit tensor.
func (f *FRUGAL) stepAdam(p *peft.Tensor, st *frugalState, lr float64) {
	r, c := p.Dims()
	if st.m == nil {
		st.m, st.v = make([]float64, r*c), make([]float64, r*c)
	}
	st.t++
	st.k++
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			u := f.adam(st.m, st.v, p.Grad.At(i, j), i*c+j, st.t, lr)
			p.Value.Set(i, j, p.Value.At(i, j)-u)
		}
	}
}

// stepCoords is the update with a coordinate projector: Adam on the
// selected coordinates, the state-free rule on the others.
func (f *FRUGAL) stepCoords(p *peft.Tensor, st *frugalState, lr float64) {
	m, n := p.Dims()
	if st.m != nil {
		st.t++
	}
	// slot[i·n+j] is the coordinate's index in the moments, or −1
	slot := make([]int, m*n)
	for i := range slot {
		slot[i] = -1
	}
	k := 0
	for _, s := range st.idx {
		switch f.cfg.Projection {
		case Columns: // moments are m×k, row-major
			for i := 0; i < m; i++ {
				slot[i*n+s] = i*len(st.idx) + k
			}
		case Rows: // moments are k×n
			for j := 0; j < n; j++ {
				slot[s*n+j] = k*n + j
			}
		default:
			slot[s] = k
		}
		k++
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			g := p.Grad.At(i, j)
			var u float64
			if s := slot[i*n+j]; s >= 0 {
				u = f.adam(st.m, st.v, g, s, st.t, lr) // state-full
			} else {
				u = f.free(g, lr) // state-free
			}
			p.Value.Set(i, j, p.Value.At(i, j)-u)
		}
	}
}

// stepProjected is the update with an svd or random projector.
func (f *FRUGAL) stepProjected(p *peft.Tensor, st *frugalState, lr float64) {
	g := p.Grad
	m, n := g.Dims()
	if st.r == 0 { // ρ·side rounds to 0: all state-free
		upd := mat.NewDense(m, n, nil)
		upd.Apply(func(i, j int, _ float64) float64 { return f.free(g.At(i, j), lr) }, upd)
		p.Value.Sub(p.Value, upd)
		return
	}
	// project the gradient
	var rg mat.Dense
	if st.left {
		rg.Mul(st.pq.T(), g) // g_full = Pᵀ·G (r×n)
	} else {
		rg.Mul(g, st.pq.T()) // g_full = G·Qᵀ (m×r)
	}
	// Adam in the subspace
	st.t++
	rr, rc := rg.Dims()
	nd := make([]float64, rr*rc)
	for k, x := range rg.RawMatrix().Data { // fresh result: contiguous
		nd[k] = f.adam(st.m, st.v, x, k, st.t, lr)
	}
	// project back: P·N or N·Q, and the full part P⁻¹(g_full)
	var full, back mat.Dense
	if st.left {
		back.Mul(st.pq, mat.NewDense(rr, rc, nd))
		full.Mul(st.pq, &rg)
	} else {
		back.Mul(mat.NewDense(rr, rc, nd), st.pq)
		full.Mul(&rg, st.pq)
	}
	p.Value.Sub(p.Value, &back)
	if st.r == min(m, n) || f.cfg.StateFree == NoUpdate {
		return // g_free = 0 in exact arithmetic, or dropped
	}
	// the state-free part g_free = G − P⁻¹(g_full)
	full.Apply(func(i, j int, v float64) float64 { return f.free(g.At(i, j)-v, lr) }, &full)
	p.Value.Sub(p.Value, &full)
}

// Split returns the two parts of a gradient g (shaped like p) under p's
// current projector: full = P⁻¹(P(g)), the part Adam sees, and free = g −
// full, the part the state-free rule sees (g itself if p is not split or
// the subspace is empty). It returns nils if p has not been stepped.
func (f *FRUGAL) Split(p *peft.Tensor, g *mat.Dense) (full, free *mat.Dense) {
	st := f.state[p]
	if st == nil {
		return nil, nil
	}
	m, n := p.Dims()
	if gr, gc := g.Dims(); gr != m || gc != n {
		panic(peft.ShapeError{Op: "FRUGAL.Split(" + p.Name + ")", Got: "gradient " + peft.ShapeOf(gr, gc), Want: "the tensor's " + peft.ShapeOf(m, n)})
	}
	full = mat.NewDense(m, n, nil)
	switch {
	case !st.split, st.m == nil && st.idx == nil:
	case st.pq != nil:
		var rg mat.Dense
		if st.left {
			rg.Mul(st.pq.T(), g)
			full.Mul(st.pq, &rg)
		} else {
			rg.Mul(g, st.pq.T())
			full.Mul(&rg, st.pq)
		}
	default:
		for _, s := range st.idx {
			switch f.cfg.Projection {
			case Columns:
				for i := 0; i < m; i++ {
					full.Set(i, s, g.At(i, s))
				}
			case Rows:
				for j := 0; j < n; j++ {
					full.Set(s, j, g.At(s, j))
				}
			default:
				full.Set(s/n, s%n, g.At(s/n, s%n))
			}
		}
	}
	free = mat.NewDense(m, n, nil)
	free.Sub(g, full)
	return full, free
}

// Projector returns p's current svd or random projector: P (m×r) with
// left true, or Q (r×n) with left false; nil for a coordinate projector,
// an empty subspace, an unsplit or an unstepped tensor.
func (f *FRUGAL) Projector(p *peft.Tensor) (pq *mat.Dense, left bool) {
	st := f.state[p]
	if st == nil {
		return nil, false
	}
	return st.pq, st.left
}

// Selected returns the coordinates p's coordinate projector selects, in
// ascending order: column indices (Columns), row indices (Rows) or flat
// row-major entries i·n+j (RandK); nil otherwise.
func (f *FRUGAL) Selected(p *peft.Tensor) []int {
	st := f.state[p]
	if st == nil {
		return nil
	}
	return slices.Clone(st.idx)
}

// StateBytes returns the size of f's state in bytes, as float64 and int64:
// Adam's two moments over each state-full subspace (the whole tensor for
// unsplit ones), the svd/random projectors and the selected indices. It
// grows as Step first meets each tensor.
func (f *FRUGAL) StateBytes() int {
	n := 0
	for _, st := range f.state {
		n += 8 * (len(st.m) + len(st.v) + len(st.idx))
		if st.pq != nil {
			r, c := st.pq.Dims()
			n += 8 * r * c
		}
	}
	return n
}

var (
	_ peft.Optimizer        = (*FRUGAL)(nil)
	_ peft.ContextOptimizer = (*FRUGAL)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "FRUGAL",
		Kind:    peft.OptimizerMethod,
		Paper:   "Zmushko, Beznosikov, Takáč and Horváth 2025, FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable Training, arXiv:2411.07837",
		Package: "github.com/gopeft/gopeft/peft/frugal",
		Summary: "full-rank training with gradient splitting: Adam on a density-ρ subspace (SVD, random, columns, rows or RandK, renewed every T steps), signSGD on the rest",
	})
}
