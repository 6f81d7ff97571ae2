// Package fira is Fira, GaLore plus the gradient's residual outside the
// projected subspace, scaled by how much Adam rescales the projected part:
// full-rank updates with GaLore's low-rank optimizer state.
package fira

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Fira is GaLore with the residual gradient added back (Chen et al. 2024,
// "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank
// Constraint?", arXiv:2410.01623). For a targeted matrix W (m×n) with
// gradient G (m×n) it keeps GaLore's projector and Adam moments in the
// r-dimensional space of R, and adds the part of G the projector drops,
// scaled by Adam's own scaling of R ("norm-based scaling"):
//
//	at steps 1, T+1, 2T+1, …:  G = U·Σ·Vᵀ (thin SVD)
//	m < n (left):   P = U[:, :r] (m×r),  R = Pᵀ·G (r×n),  back(N) = P·N
//	m ≥ n (right):  Q = Vᵀ[:r, :] (r×n), R = G·Qᵀ (m×r),  back(N) = N·Q
//	M ← β₁M + (1−β₁)R,   V ← β₂V + (1−β₂)R⊙R,   N = M/(√V + ε)    (shape of R)
//	φ_j = ‖N_j‖ / (‖R_j‖ + 10⁻⁸)   for each column j of R (left, n of them)
//	                               or row j of R (right, m of them)
//	S = φ ⊙ (G − back(R))          (m×n; φ scales the columns (left) or rows (right))
//	if ‖S‖_F > γ·‖S_prev‖_F:  S ← S · γ·‖S_prev‖_F / ‖S‖_F   (norm-growth limiter)
//	W ← W − η·√(1−β₂ᵗ)/(1−β₁ᵗ) · (α·back(N) + S)
//
// φ is the paper's column-wise scaling factor ‖ψ(R)‖/‖R‖ (ψ the low-rank
// Adam), taken along R's rank axis as in the reference code, so there is one
// factor per column of the larger side. G − back(R) = (I − PPᵀ)·G (or
// G·(I − QᵀQ)) is orthogonal to the projector's span, and so is S: Fira
// moves W in every direction while its state stays GaLore's, plus one
// scalar, ‖S_prev‖, per matrix. At r = min(m,n) the residual is zero and
// Fira is GaLore. ‖S_prev‖ is the norm after limiting, as in the paper's
// code, so the norm of S grows by at most the factor γ per step.
//
// Every other trainable tensor (biases, norms, untargeted matrices) gets
// plain AdamW with the same β₁, β₂, ε. Weight decay is decoupled,
// W ← W·(1 − η·λ), applied before the update as in torch's AdamW and in
// peft/galore.
//
// Where it departs from the reference code (github.com/xichen-fy/Fira,
// optimizer_torch/fira_adamw.py):
//   - the residual is G − back(R), the orthogonal residual of the paper's
//     Algorithm 1; the code subtracts α·back(R), which for α ≠ 1 leaves
//     (1−α)·back(R) inside the subspace and makes Fira differ from GaLore
//     even at full rank;
//   - the limiter starts from the first step whose ‖S‖ is nonzero; the code
//     divides by ‖S_prev‖ + 10⁻⁸, which after a zero first step (zero
//     gradient) pins S near 10⁻⁸ for good;
//   - decay is applied before the update, not after it (as peft/galore);
//   - ε defaults to 10⁻⁸ (the code's FiraAdamW uses 10⁻⁶) so that Fira and
//     peft/galore differ by the residual alone.
//
// Fira implements peft.Optimizer and peft.ContextOptimizer: Train gives it
// its context, which stops a projector's SVD when cancelled.
type Fira struct {
	cfg   Config
	state map[*peft.Tensor]*firaState
	ctx   context.Context // of the SVDs; nil: context.Background()
}

// Config configures New. Zero fields select the defaults noted.
type Config struct {
	// Rank r of the projected gradient, 1 ≤ r ≤ min(m,n) of every targeted
	// matrix. The paper pre-trains LLaMA-60M with r = 128 and LLaMA-350M
	// with r = 256.
	Rank int
	// UpdateProjGap T: the projector is recomputed from the gradient's SVD
	// every T steps of each matrix (0 selects the paper's 200).
	UpdateProjGap int
	// Scale α of the projected-back Adam update (0 selects the paper's
	// 0.25). It does not scale the residual S.
	Scale float64
	// Targets names the matrices to project, as peft/galore's Targets do:
	// a tensor's full name ("blocks.0.attn.q.weight"), its module's name
	// ("blocks.0.attn.q"), a dotted suffix of either ("attn.q"), a
	// path.Match glob ("blocks.*.mlp.*") or a regular expression written
	// ^…$. Only 2-D tensors (both sides > 1) are projected. Empty: every
	// 2-D trainable tensor with min(m,n) > Rank.
	Targets []string
	// Beta1, Beta2 are Adam's moment decay rates (0 selects 0.9, 0.999).
	Beta1, Beta2 float64
	// Eps is Adam's ε (0 selects 1e-8).
	Eps float64
	// WeightDecay λ, decoupled, for every tensor (0: none).
	WeightDecay float64
	// Gamma γ ≥ 1 of the norm-growth limiter: ‖S_t‖ ≤ γ·‖S_{t−1}‖ (0
	// selects the paper's 1.01; math.Inf(1) turns the limiter off).
	Gamma float64
}

// firaState is one tensor's optimizer state.
type firaState struct {
	proj  bool       // projected (a targeted matrix) or plain AdamW
	left  bool       // projected on the left (m < n): P (m×r); else right: Q (r×n)
	pq    *mat.Dense // P (m×r) or Q (r×n); nil until the first step
	m, v  *mat.Dense // Adam moments: shape of R (r×n or m×r), or of W if !proj
	sNorm float64    // ‖S‖_F of the last step, after limiting; 0: none yet
	t     int        // steps taken
}

// New returns a Fira optimizer. A configuration out of range (rank r ≤ 0,
// β outside [0, 1), γ < 1, …) panics with a peft.ArgError naming the field
// and the value; peft.Maybe turns it into an error.
func New(cfg Config) *Fira {
	if cfg.UpdateProjGap == 0 {
		cfg.UpdateProjGap = 200
	}
	if cfg.Scale == 0 {
		cfg.Scale = 0.25
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
	if cfg.Gamma == 0 {
		cfg.Gamma = 1.01
	}
	bad := func(msg string, args ...any) {
		panic(peft.ArgError{Op: "fira.New", Msg: fmt.Sprintf(msg, args...)})
	}
	switch {
	case cfg.Rank <= 0:
		bad("Rank = %d out of range: want 1 ≤ r ≤ min(m,n) of each targeted matrix", cfg.Rank)
	case cfg.UpdateProjGap < 0:
		bad("UpdateProjGap = %d out of range: want T ≥ 1 (0 selects 200)", cfg.UpdateProjGap)
	case cfg.Beta1 < 0 || cfg.Beta1 >= 1:
		bad("Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case cfg.Beta2 < 0 || cfg.Beta2 >= 1:
		bad("Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case !(cfg.Eps >= 0):
		bad("Eps = %g out of range: want ε ≥ 0", cfg.Eps)
	case !(cfg.WeightDecay >= 0):
		bad("WeightDecay = %g out of range: want λ ≥ 0", cfg.WeightDecay)
	case math.IsNaN(cfg.Scale) || math.IsInf(cfg.Scale, 0):
		bad("Scale = %g: want a finite α", cfg.Scale)
	case !(cfg.Gamma >= 1):
		bad("Gamma = %g out of range: want γ ≥ 1 (0 selects 1.01, +Inf turns the limiter off)", cfg.Gamma)
	}
	for _, p := range cfg.Targets {
		if err := peft.CheckParamPattern(p); err != nil {
			bad("target pattern %q: %v", p, err)
		}
	}
	return &Fira{cfg: cfg, state: map[*peft.Tensor]*firaState{}}
}

// Config returns f's configuration with the defaults filled in.
func (f *Fira) Config() Config { return f.cfg }

// projects reports whether p is a matrix f projects, or an error when it is
// targeted but the rank does not fit it.
func (f *Fira) projects(p *peft.Tensor) (bool, error) {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false, nil
	}
	if len(f.cfg.Targets) == 0 {
		return min(m, n) > f.cfg.Rank, nil
	}
	if !peft.MatchParam(f.cfg.Targets, p.Name) {
		return false, nil
	}
	if f.cfg.Rank > min(m, n) {
		return false, peft.ArgError{Op: "Fira(" + p.Name + ")", Msg: fmt.Sprintf(
			"Rank = %d out of range [1, %d] for the %s matrix", f.cfg.Rank, min(m, n), peft.ShapeOf(m, n))}
	}
	return true, nil
}

// Check returns the error that Step would panic with for params: a targeted
// matrix whose min(m,n) is below the rank. Call it before training to get
// the error as a value.
func (f *Fira) Check(params []*peft.Tensor) error {
	for _, p := range params {
		if !p.Trainable {
			continue
		}
		if _, err := f.projects(p); err != nil {
			return err
		}
	}
	return nil
}

// SetContext sets the context of the SVDs of the following steps (Train
// calls it with its own). Until it is called, they run with
// context.Background().
func (f *Fira) SetContext(ctx context.Context) { f.ctx = ctx }

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr. It panics with a peft.ArgError if a targeted matrix is
// smaller than the rank (see Check), and with an error naming the tensor
// and the step if the SVD of its gradient fails: it does not converge, or
// the context set by SetContext is cancelled (the error then wraps the
// context's). Tensors before that one in params have been updated, the
// others not; peft.Maybe turns the panic into an error.
func (f *Fira) Step(params []*peft.Tensor, lr float64) {
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		st := f.state[p]
		if st == nil {
			proj, err := f.projects(p)
			if err != nil {
				panic(err)
			}
			st = &firaState{proj: proj}
			f.state[p] = st
		}
		// The update first, so that a step cancelled in its SVD changes
		// nothing; then W ← W·(1 − η·λ) − update.
		var upd *mat.Dense
		if st.proj {
			upd = f.stepProjected(p, st, lr)
		} else {
			upd = f.stepFull(p, st, lr)
		}
		if f.cfg.WeightDecay > 0 {
			p.Value.Scale(1-lr*f.cfg.WeightDecay, p.Value) // decoupled weight decay
		}
		p.Value.Sub(p.Value, upd)
	}
}

// stepFull returns plain Adam's update of the whole tensor, lr included.
func (f *Fira) stepFull(p *peft.Tensor, st *firaState, lr float64) *mat.Dense {
	r, c := p.Dims()
	if st.m == nil {
		st.m, st.v = mat.NewDense(r, c, nil), mat.NewDense(r, c, nil)
	}
	st.t++
	n := f.adam(st, p.Grad) // N (r×c)
	n.Scale(lr*f.biasCorrection(st.t), n)
	return n
}

// stepProjected returns Fira's update of a projected matrix,
// η·bc·(α·back(N) + S), lr included.
func (f *Fira) stepProjected(p *peft.Tensor, st *firaState, lr float64) *mat.Dense {
	g := mat.DenseCopyOf(p.Grad) // G (m×n)
	m, n := g.Dims()
	r := f.cfg.Rank
	// refresh the projector from G's SVD at steps 1, T+1, 2T+1, …
	if st.pq == nil || st.t%f.cfg.UpdateProjGap == 0 {
		ctx := f.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		svd, err := accel.ThinSVD(ctx, g)
		if err != nil {
			panic(fmt.Errorf("peft: Fira(%s): SVD of the %s gradient at step %d: %w", p.Name, peft.ShapeOf(m, n), st.t+1, err))
		}
		st.left = m < n
		if st.left {
			st.pq = mat.DenseCopyOf(svd.U.Slice(0, m, 0, r)) // P (m×r)
		} else {
			st.pq = mat.DenseCopyOf(svd.VT.Slice(0, r, 0, n)) // Q (r×n)
		}
	}
	// project the gradient
	var rg mat.Dense
	if st.left {
		rg.Mul(st.pq.T(), g) // R = Pᵀ·G (r×n)
	} else {
		rg.Mul(g, st.pq.T()) // R = G·Qᵀ (m×r)
	}
	st.t++
	if st.m == nil {
		rr, rc := rg.Dims()
		st.m, st.v = mat.NewDense(rr, rc, nil), mat.NewDense(rr, rc, nil)
	}
	nrm := f.adam(st, &rg) // N = M/(√V + ε), shape of R

	// the residual S = φ ⊙ (G − back(R)), m×n
	s := mat.NewDense(m, n, nil)
	s.Sub(g, f.back(st, &rg))
	phi := ScalingFactors(nrm, &rg, st.left)
	if st.left {
		for j, v := range phi { // one factor per column
			for i := 0; i < m; i++ {
				s.Set(i, j, v*s.At(i, j))
			}
		}
	} else {
		for i, v := range phi { // one factor per row
			row := s.RawRowView(i)
			for j := range row {
				row[j] *= v
			}
		}
	}
	// the norm-growth limiter
	st.sNorm = limit(s, st.sNorm, f.cfg.Gamma)

	// η·bc·(α·back(N) + S)
	upd := f.back(st, nrm)
	upd.Scale(f.cfg.Scale, upd)
	upd.Add(upd, s)
	upd.Scale(lr*f.biasCorrection(st.t), upd)
	return upd
}

// back returns back(x): P·x (left) or x·Q (right), m×n.
func (f *Fira) back(st *firaState, x *mat.Dense) *mat.Dense {
	var out mat.Dense
	if st.left {
		out.Mul(st.pq, x)
	} else {
		out.Mul(x, st.pq)
	}
	return &out
}

// ScalingFactors returns Fira's norm-based scaling factors φ for the Adam
// direction n and the projected gradient r of one projected matrix (both
// r×c for a left projection, c×r for a right one, r the rank):
//
//	φ_j = ‖n_j‖₂ / (‖r_j‖₂ + 10⁻⁸)
//
// over the columns j of n and r if left, else over their rows: along the
// rank axis, one factor per column (left) or row (right) of the weight.
// It panics with a peft.ShapeError if n and r differ in shape.
func ScalingFactors(n, r *mat.Dense, left bool) []float64 {
	nr, nc := n.Dims()
	rr, rc := r.Dims()
	if nr != rr || nc != rc {
		panic(peft.ShapeError{Op: "fira.ScalingFactors", Got: peft.ShapeOf(nr, nc) + " and " + peft.ShapeOf(rr, rc), Want: "two matrices of one shape"})
	}
	k, l := nc, nr // factors, entries per factor
	at := func(a *mat.Dense, j, i int) float64 { return a.At(i, j) }
	if !left {
		k, l = nr, nc
		at = func(a *mat.Dense, j, i int) float64 { return a.At(j, i) }
	}
	phi := make([]float64, k)
	for j := range phi {
		var sn, sr float64
		for i := 0; i < l; i++ {
			a, b := at(n, j, i), at(r, j, i)
			sn += a * a
			sr += b * b
		}
		phi[j] = math.Sqrt(sn) / (math.Sqrt(sr) + 1e-8)
	}
	return phi
}

// limit applies the norm-growth limiter to s in place: if ‖s‖_F exceeds
// γ·prev (prev > 0), s is scaled down to norm γ·prev. It returns s's norm
// after limiting, the prev of the next step.
func limit(s *mat.Dense, prev, gamma float64) float64 {
	ns := mat.Norm(s, 2) // Frobenius
	if prev > 0 && ns > gamma*prev {
		s.Scale(gamma*prev/ns, s)
		return gamma * prev
	}
	return ns
}

// adam updates st's moments with gradient gr (st.t already counts this step)
// and returns Adam's direction M/(√V + ε), of gr's shape, without the bias
// correction (see biasCorrection).
func (f *Fira) adam(st *firaState, gr *mat.Dense) *mat.Dense {
	return peft.AdamDirection(st.m, st.v, gr, f.cfg.Beta1, f.cfg.Beta2, f.cfg.Eps, 1)
}

// biasCorrection returns √(1−β₂ᵗ)/(1−β₁ᵗ): both moments bias-corrected
// through the step size, as the paper's code does.
func (f *Fira) biasCorrection(t int) float64 {
	return peft.AdamBiasCorrection(t, f.cfg.Beta1, f.cfg.Beta2)
}

// StateBytes returns the size of f's state in bytes, as float64: Adam's two
// moments (of the projected shape for projected matrices), the projectors,
// and the limiter's ‖S_prev‖ (one scalar per projected matrix). It grows as
// Step first meets each tensor.
func (f *Fira) StateBytes() int {
	n := 0
	for _, st := range f.state {
		for _, d := range []*mat.Dense{st.m, st.v, st.pq} {
			if d != nil {
				r, c := d.Dims()
				n += 8 * r * c
			}
		}
		if st.proj && st.pq != nil {
			n += 8 // ‖S_prev‖
		}
	}
	return n
}

// Projector returns the current projector of p: P (m×r) with left true, or
// Q (r×n) with left false; nil if p is not projected or not yet stepped.
// The projected gradient is Pᵀ·G or G·Qᵀ.
func (f *Fira) Projector(p *peft.Tensor) (pq *mat.Dense, left bool) {
	st := f.state[p]
	if st == nil || !st.proj {
		return nil, false
	}
	return st.pq, st.left
}

// ResidualNorm returns ‖S‖_F of p's last step after the limiter (the
// ‖S_prev‖ of its next step); 0 if p is not projected or not yet stepped.
func (f *Fira) ResidualNorm(p *peft.Tensor) float64 {
	st := f.state[p]
	if st == nil || !st.proj {
		return 0
	}
	return st.sNorm
}

var (
	_ peft.Optimizer        = (*Fira)(nil)
	_ peft.ContextOptimizer = (*Fira)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "Fira",
		Kind:    peft.OptimizerMethod,
		Paper:   "Chen et al. 2024, Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?, arXiv:2410.01623",
		Package: "github.com/gopeft/gopeft/peft/fira",
		Summary: "GaLore plus the residual G − PPᵀG scaled by Adam's column-wise norm ratio ‖N‖/‖R‖, with a norm-growth limiter",
	})
}
