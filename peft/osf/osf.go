// Package osf is OSF (Orthogonal Subspace Fine-tuning, "Sculpting
// Subspaces"): continual full fine-tuning whose updates stay orthogonal to
// the top singular directions that earlier tasks left in each weight.
package osf

import (
	"context"
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// OSF is AdamW whose gradients are projected away from each weight's
// protected singular subspace (Nayak et al. 2025, "Sculpting Subspaces:
// Constrained Full Fine-Tuning in LLMs for Continual Learning",
// arXiv:2504.07097; HuggingFace PEFT's OSF). After each task, every
// targeted weight W (m×n) is decomposed,
//
//	W = U_k·diag(S_k)·V_kᵀ + (the rest),   U_k: m×k, V_k: n×k, orthonormal columns
//
// and its top k singular directions are protected during the tasks that
// follow: each gradient G (m×n) is replaced by
//
//	G̃ = (I − U_kU_kᵀ)·G·(I − V_kV_kᵀ)
//	  = G − U_kU_kᵀG − GV_kV_kᵀ + U_kU_kᵀGV_kV_kᵀ
//
// so that U_kᵀG̃ = 0 and G̃V_k = 0, before AdamW's moments see it:
//
//	m ← β₁m + (1−β₁)G̃,  v ← β₂v + (1−β₂)G̃⊙G̃
//	D = m̂/(√v̂ + ε),   D ← (I − U_kU_kᵀ)·D·(I − V_kV_kᵀ)   (see StepProjection)
//	W ← W·(1 − η·λ) − η·D
//
// Every other trainable tensor (biases, and matrices not targeted) gets
// plain AdamW. With k = 0 (before the first task is recorded) OSF is
// peft.AdamW exactly, bit for bit.
//
// # The parameterization, and where gopeft departs from the paper
//
// The paper and PEFT's OSF train the low singular factors themselves:
// W = U_h·S_h·V_hᵀ + U_l·S_l·V_lᵀ with U_l, S_l, V_l trainable and their
// gradients projected, dU_l ← dU_l − U_h·U_hᵀ·dU_l and
// dV_lᵀ ← dV_lᵀ − dV_lᵀ·V_h·V_hᵀ. To first order the weight's change is
// then dU_l·S_l·V_lᵀ + U_l·dS_l·V_lᵀ + U_l·S_l·dV_lᵀ, and every term has
// U_hᵀ(·) = 0 and (·)V_h = 0, the two conditions the projection of G above
// imposes on the full weight. gopeft keeps W as it is (an optimizer, no
// adapter, so the model's layers and files do not change) and projects its
// gradient instead; the constrained update space is the same.
//
// Two further choices:
//
//   - StepProjection (the default, Config.GradientOnly false): Adam's
//     elementwise division by √v̂ does not commute with the projection, so a
//     projected gradient alone lets the step leak into the protected
//     directions (the paper's and PEFT's behaviour, exact only for SGD).
//     gopeft also projects Adam's step D, so the protected triplets
//     U_k·S_k·V_kᵀ of W stay singular triplets of W exactly (up to rounding
//     and weight decay, which scales all of W; use λ = 0 in continual runs).
//   - Nested subspaces: after task t the protected rank grows from k_{t−1}
//     to k_t by adding the top k_t − k_{t−1} singular triplets of the
//     unprotected part (I − U_kU_kᵀ)·W·(I − V_kV_kᵀ). With the step
//     projected, the old triplets are still singular triplets of W, so this
//     is the top-k_t SVD of W that the paper recomputes between tasks,
//     except that a direction once protected stays protected even if a new
//     task outgrows it.
//
// The protected rank. PEFT's effective_rank fixes k (default half of
// min(m,n)); the paper sets it per layer from an importance score and grows
// it from task to task. gopeft grows it on a schedule: with p = min(m,n)
// and k_max = ⌈EffectiveRank·p⌉ (EffectiveRank defaults to PEFT's 0.5),
// after task t (from 1)
//
//	Tasks = T ≥ 2:  k_t = ⌈k_max·t/(T−1)⌉          (k_max once T−1 tasks are done)
//	Tasks = 0:      k_t = ⌈k_max·t/(t+1)⌉          (½, ⅔, ¾, … of k_max)
//	Energy = e > 0: k_t = max(k_{t−1}, the least k whose σ₁²+…+σ_k² ≥ e·‖W‖²_F), at most k_max
//
// Adam's moments are cleared at each task boundary (Protect), as a fresh
// AdamW per task would be.
//
// OSF implements peft.Optimizer and peft.ContinualMethod (BeforeTask sets
// it as the task's optimizer; AfterTask calls Protect). Its steps run no
// SVD, so it is no peft.ContextOptimizer: the SVDs run between tasks, in
// Protect, which takes the context itself.
type OSF struct {
	cfg   Config
	adam  map[*peft.Tensor]*adamState
	prot  map[*peft.Tensor]*subspace
	tasks int // tasks recorded by Protect
}

// Config configures New; zero fields select the defaults noted.
type Config struct {
	// EffectiveRank is the fraction of min(m,n) protected at most, in
	// (0, 1] (0 selects PEFT's default 0.5): k_max = ⌈EffectiveRank·min(m,n)⌉.
	EffectiveRank float64
	// Tasks is the length T of the sequence, for the linear schedule
	// k_t = ⌈k_max·t/(T−1)⌉; 0 for an open-ended sequence (k_t = ⌈k_max·t/(t+1)⌉).
	Tasks int
	// Energy, in (0, 1), replaces the schedule: k_t is the least rank whose
	// singular values hold Energy of ‖W‖²_F, never below k_{t−1}, at most
	// k_max. 0: the schedule.
	Energy float64
	// Targets names the matrices to protect, as galore.Config.Targets: a
	// tensor's name ("fc1.weight"), its module's ("fc1"), a dotted suffix, or
	// a path.Match glob. Empty: every trainable 2-D tensor with both sides
	// > 1.
	Targets []string
	// Beta1, Beta2 and Eps are Adam's (0 selects 0.9, 0.999, 1e-8).
	Beta1, Beta2, Eps float64
	// WeightDecay λ ≥ 0, decoupled, on every tensor (it scales the
	// protected part too).
	WeightDecay float64
	// GradientOnly projects only the gradient, as the paper and PEFT do, and
	// not Adam's step (see StepProjection above).
	GradientOnly bool
}

type adamState struct {
	m, v []float64 // Adam's moments, like the tensor
	t    int       // steps taken this task
}

// subspace is one weight's protected singular triplets.
type subspace struct {
	u *mat.Dense // (m×k) U_k
	v *mat.Dense // (n×k) V_k
	s []float64  // (k) their singular values when protected
	// next is the largest singular value of the unprotected part of W at
	// the last Protect (0 if none), and leak how far, relative to max|W|,
	// W then was from U_k·diag(s)·V_kᵀ plus its unprotected part: what
	// SaveAdapter needs to know that PEFT's SVD of that W gives the same
	// frozen part (see file.go).
	next, leak float64
}

// New returns an OSF optimizer. A configuration out of range panics with a
// peft.ArgError naming the field and value; peft.Maybe turns it into an
// error.
func New(cfg Config) *OSF {
	if cfg.EffectiveRank == 0 {
		cfg.EffectiveRank = 0.5
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
		panic(peft.ArgError{Op: "osf.New", Msg: fmt.Sprintf(msg, args...)})
	}
	switch {
	case !(cfg.EffectiveRank > 0 && cfg.EffectiveRank <= 1):
		bad("Config.EffectiveRank = %g out of range (0, 1]", cfg.EffectiveRank)
	case cfg.Tasks < 0 || cfg.Tasks == 1:
		bad("Config.Tasks = %d: want T ≥ 2, or 0 for an open-ended sequence", cfg.Tasks)
	case !(cfg.Energy >= 0 && cfg.Energy < 1):
		bad("Config.Energy = %g out of range [0, 1)", cfg.Energy)
	case !(cfg.Beta1 >= 0 && cfg.Beta1 < 1):
		bad("Config.Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case !(cfg.Beta2 >= 0 && cfg.Beta2 < 1):
		bad("Config.Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case !(cfg.Eps >= 0):
		bad("Config.Eps = %g: want ε ≥ 0", cfg.Eps)
	case !(cfg.WeightDecay >= 0):
		bad("Config.WeightDecay = %g: want λ ≥ 0", cfg.WeightDecay)
	}
	for _, p := range cfg.Targets {
		if _, err := path.Match(p, ""); err != nil {
			bad("Config.Targets: pattern %q: %v", p, err)
		}
	}
	return &OSF{cfg: cfg, adam: map[*peft.Tensor]*adamState{}, prot: map[*peft.Tensor]*subspace{}}
}

// Config returns o's configuration with the defaults filled in.
func (o *OSF) Config() Config { return o.cfg }

// Tasks returns the number of tasks Protect has recorded.
func (o *OSF) Tasks() int { return o.tasks }

// targets reports whether p is a matrix OSF protects.
func (o *OSF) targets(p *peft.Tensor) bool {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false
	}
	return len(o.cfg.Targets) == 0 || match(o.cfg.Targets, p.Name)
}

// match reports whether name, or name without its last dotted component,
// equals a pattern, ends in "."+pattern, or matches it as a path.Match glob.
func match(patterns []string, name string) bool {
	cands := []string{name}
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		cands = append(cands, name[:i])
	}
	for _, p := range patterns {
		for _, c := range cands {
			if ok, _ := path.Match(p, c); ok || c == p || strings.HasSuffix(c, "."+p) {
				return true
			}
		}
	}
	return false
}

// Step updates every trainable tensor of params that has a gradient, at
// learning rate lr: AdamW on the projected gradient of a protected matrix
// (whose Grad it leaves unchanged), plain AdamW otherwise.
func (o *OSF) Step(params []*peft.Tensor, lr float64) {
	b1, b2, eps := o.cfg.Beta1, o.cfg.Beta2, o.cfg.Eps
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		sub := o.prot[p]
		gr := p.Grad
		if sub != nil {
			gr = Project(sub.u, sub.v, gr) // G̃ = (I − UUᵀ)·G·(I − VVᵀ)
		}
		r, c := p.Dims()
		g := mat.DenseCopyOf(gr).RawMatrix().Data
		s := o.adam[p]
		if s == nil {
			s = &adamState{m: make([]float64, r*c), v: make([]float64, r*c)}
			o.adam[p] = s
		}
		s.t++
		c1 := 1 - math.Pow(b1, float64(s.t)) // bias corrections of both moments
		c2 := 1 - math.Pow(b2, float64(s.t))
		theta := mat.DenseCopyOf(p.Value)
		th := theta.RawMatrix().Data
		decay := 1 - lr*o.cfg.WeightDecay
		if sub == nil || o.cfg.GradientOnly {
			for i, gi := range g {
				th[i] *= decay                           // decoupled weight decay
				s.m[i] = b1*s.m[i] + (1-b1)*gi           // update the first moment (momentum)
				s.v[i] = b2*s.v[i] + (1-b2)*gi*gi        // update the second moment
				mh, vh := s.m[i]/c1, s.v[i]/c2           // bias-correct both moments
				th[i] -= lr * mh / (math.Sqrt(vh) + eps) // step
			}
		} else {
			d := mat.NewDense(r, c, nil) // Adam's step direction D (m×n)
			dd := d.RawMatrix().Data
			for i, gi := range g {
				s.m[i] = b1*s.m[i] + (1-b1)*gi
				s.v[i] = b2*s.v[i] + (1-b2)*gi*gi
				mh, vh := s.m[i]/c1, s.v[i]/c2
				dd[i] = mh / (math.Sqrt(vh) + eps)
			}
			pd := Project(sub.u, sub.v, d).RawMatrix().Data // keep the step off the protected directions
			for i := range th {
				th[i] = th[i]*decay - lr*pd[i]
			}
		}
		p.Value.Copy(theta)
	}
}

// Project returns (I − U·Uᵀ)·G·(I − V·Vᵀ) for G (m×n), U (m×k) and V (n×k)
// with orthonormal columns: G with its components along the columns of U
// (on the left) and of V (on the right) removed. Either of U, V may be nil
// (no projection on that side). It panics with a peft.ShapeError if the
// shapes do not fit.
func Project(u, v *mat.Dense, g mat.Matrix) *mat.Dense {
	m, n := g.Dims()
	a := mat.DenseCopyOf(g)
	if u != nil {
		if ur, _ := u.Dims(); ur != m {
			panic(peft.ShapeError{Op: "osf.Project", Got: fmt.Sprintf("U %s, G %s", shape(u), peft.ShapeOf(m, n)), Want: "U with G's rows"})
		}
		var ug, uug mat.Dense
		ug.Mul(u.T(), a) // UᵀG (k×n)
		uug.Mul(u, &ug)  // UUᵀG (m×n)
		a.Sub(a, &uug)
	}
	if v != nil {
		if vr, _ := v.Dims(); vr != n {
			panic(peft.ShapeError{Op: "osf.Project", Got: fmt.Sprintf("V %s, G %s", shape(v), peft.ShapeOf(m, n)), Want: "V with G's columns"})
		}
		var av, avv mat.Dense
		av.Mul(a, v)        // A·V (m×k)
		avv.Mul(&av, v.T()) // A·VVᵀ (m×n)
		a.Sub(a, &avv)
	}
	return a
}

func shape(a mat.Matrix) string { return peft.ShapeOf(a.Dims()) }

// rankAfter returns k_t for a weight with min(m,n) = p after task t, given
// its singular values s (descending) and its previous rank prev.
func (o *OSF) rankAfter(p, t, prev int, s []float64) int {
	kmax := int(math.Ceil(o.cfg.EffectiveRank * float64(p)))
	kmax = min(kmax, p)
	var k int
	switch {
	case o.cfg.Energy > 0:
		total := 0.0
		for _, x := range s {
			total += x * x
		}
		acc := 0.0
		for k < len(s) && acc < o.cfg.Energy*total {
			acc += s[k] * s[k]
			k++
		}
	case o.cfg.Tasks >= 2:
		k = int(math.Ceil(float64(kmax) * float64(t) / float64(o.cfg.Tasks-1)))
	default:
		k = int(math.Ceil(float64(kmax) * float64(t) / float64(t+1)))
	}
	return max(prev, min(k, kmax))
}

// Protect records the end of a task: for each protected matrix among
// params (trainable 2-D tensors matching Targets), it grows the protected
// rank to k_t and adds the top singular triplets of W's unprotected part
// (see OSF), and it clears Adam's moments for the next task. It returns an
// error naming the tensor if an SVD fails (does not converge, or ctx is
// cancelled; the error then wraps ctx's), with the tensors before it
// updated.
func (o *OSF) Protect(ctx context.Context, params []*peft.Tensor) error {
	t := o.tasks + 1
	for _, p := range params {
		if !p.Trainable || !o.targets(p) {
			continue
		}
		m, n := p.Dims()
		sub := o.prot[p]
		prev := 0
		if sub != nil {
			prev = len(sub.s)
		}
		full, err := accel.ThinSVD(ctx, p.Value)
		if err != nil {
			return fmt.Errorf("peft: OSF(%s): SVD of the %s weight after task %d: %w", p.Name, peft.ShapeOf(m, n), t, err)
		}
		k := o.rankAfter(min(m, n), t, prev, full.S)
		if k == prev {
			continue
		}
		if sub == nil {
			sub = &subspace{u: mat.NewDense(m, k, nil), v: mat.NewDense(n, k, nil)}
			sub.u.Copy(full.U.Slice(0, m, 0, k))
			sub.v.Copy(full.VT.Slice(0, k, 0, n).T())
			sub.s = append([]float64(nil), full.S[:k]...)
			if k < len(full.S) {
				sub.next = full.S[k]
			}
			o.prot[p] = sub
			continue
		}
		// the top k − prev triplets of the unprotected part
		rest := Project(sub.u, sub.v, p.Value)
		svd, err := accel.ThinSVD(ctx, rest)
		if err != nil {
			return fmt.Errorf("peft: OSF(%s): SVD of the unprotected part of the %s weight after task %d: %w", p.Name, peft.ShapeOf(m, n), t, err)
		}
		add := k - prev
		nu := mat.DenseCopyOf(svd.U.Slice(0, m, 0, add))
		nv := mat.DenseCopyOf(svd.VT.Slice(0, add, 0, n).T())
		sub.u = extend(sub.u, nu)
		sub.v = extend(sub.v, nv)
		sub.s = append(sub.s, svd.S[:add]...)
		sub.next = 0
		if add < len(svd.S) {
			sub.next = svd.S[add]
		}
		sub.leak = leakOf(sub, p.Value)
	}
	o.tasks = t
	clear(o.adam) // a fresh AdamW for the next task
	return nil
}

// extend returns [Q | N'], N's columns orthonormalized against Q's and
// each other by Gram–Schmidt run twice (Q: m×k orthonormal, N: m×a).
func extend(q, nw *mat.Dense) *mat.Dense {
	m, k := q.Dims()
	_, a := nw.Dims()
	out := mat.NewDense(m, k+a, nil)
	out.Slice(0, m, 0, k).(*mat.Dense).Copy(q)
	for j := 0; j < a; j++ {
		col := mat.Col(nil, j, nw)
		for pass := 0; pass < 2; pass++ {
			for i := 0; i < k+j; i++ {
				qi := mat.Col(nil, i, out)
				dot := 0.0
				for r := range col {
					dot += qi[r] * col[r]
				}
				for r := range col {
					col[r] -= dot * qi[r]
				}
			}
		}
		norm := 0.0
		for _, x := range col {
			norm += x * x
		}
		norm = math.Sqrt(norm)
		for r := range col {
			col[r] /= norm
		}
		out.SetCol(k+j, col)
	}
	return out
}

// Basis returns the protected subspace of p: U_k (m×k) and V_k (n×k), and
// the singular values they were protected with; nils if p has none.
func (o *OSF) Basis(p *peft.Tensor) (u, v *mat.Dense, s []float64) {
	sub := o.prot[p]
	if sub == nil {
		return nil, nil, nil
	}
	return sub.u, sub.v, sub.s
}

// Rank returns the protected rank k of p (0 if none).
func (o *OSF) Rank(p *peft.Tensor) int {
	if sub := o.prot[p]; sub != nil {
		return len(sub.s)
	}
	return 0
}

// StateBytes returns the size of o's state in bytes: Adam's two moments of
// every tensor stepped this task, and the protected bases U_k, V_k (and
// S_k) of every protected matrix, as float64.
func (o *OSF) StateBytes() int {
	n := 0
	for _, s := range o.adam {
		n += 8 * (len(s.m) + len(s.v))
	}
	for _, sub := range o.prot {
		ur, uc := sub.u.Dims()
		vr, vc := sub.v.Dims()
		n += 8 * (ur*uc + vr*vc + len(sub.s))
	}
	return n
}

// BeforeTask sets o as the task's optimizer (peft.ContinualMethod).
func (o *OSF) BeforeTask(ctx context.Context, m peft.Model, task int, cfg peft.TrainConfig) (peft.TrainConfig, error) {
	cfg.Optimizer = o
	return cfg, nil
}

// AfterTask protects what the task left in m's trainable weights (Protect).
func (o *OSF) AfterTask(ctx context.Context, m peft.Model, task int, data peft.Dataset) error {
	return o.Protect(ctx, peft.TrainableOf(m))
}

var (
	_ peft.Optimizer       = (*OSF)(nil)
	_ peft.ContinualMethod = (*OSF)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "OSF",
		Kind:    peft.OptimizerMethod,
		Paper:   "Nayak et al. 2025, Sculpting Subspaces: Constrained Full Fine-Tuning in LLMs for Continual Learning, arXiv:2504.07097",
		Package: "github.com/gopeft/gopeft/peft/osf",
		Summary: "continual full fine-tuning: AdamW on (I−UₖUₖᵀ)·G·(I−VₖVₖᵀ), the top-k singular directions of each weight after earlier tasks protected, k growing per task",
	})
}
