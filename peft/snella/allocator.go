package snella

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Allocator is SNELLA's bi-level sparsity allocation (Shen et al. 2025,
// arXiv:2510.24037; the released code's sparse_allocator.py), a peft.Hook.
// Weights compete across layers for a total budget of kept entries, which
// shrinks on a cubic schedule, and within each layer by magnitude (the
// mask keeps a layer's κ largest |ΔW′|, see SNELLA).
//
// Importance, AdaLoRA's (Zhang et al. 2023, arXiv:2303.10512), of every
// entry w of every A and B, after each backward pass:
//
//	I = |w·∂L/∂w|,  Ī ← β₁Ī + (1−β₁)I,  Ū ← β₂Ū + (1−β₂)|I − Ī|
//	S_l = mean_{A_l}(Ī·Ū) + mean_{B_l}(Ī·Ū)           layer l's score
//
// Budget, over L layers of d_l×k_l, with b₀ = Σ κ_l at NewAllocator and
// b_T = ⌈(1−s_T)·Σ d_l·k_l⌉ for the target average sparsity s_T:
//
//	b(t) = b₀                                               t ≤ t_i
//	b(t) = ⌊b_T + (b₀−b_T)·(1 − (t−t_i)/(T−t_i−t_f))³⌋       t_i < t ≤ T−t_f
//	b(t) = b_T                                              t > T−t_f
//
// Every ΔT steps in the middle phase, and always at t = T − t_f, the
// budget is shared in proportion to the scores, κ_l ∝ S_l (equal shares if
// every S_l is 0), capped at d_l·k_l, the excess going to the other layers
// in the same proportion; the integer parts are rounded by largest
// remainder (ties to the earlier layer) so that Σ κ_l = b(t) exactly. The
// allocation at T − t_f is final, and importance is no longer updated.
// After every optimizer step each layer's mask is recomputed from the
// updated ΔW′.
//
// Departures from the released code: its rounding (an int() cast and a
// loop that adds fractional shares to integer counts) is replaced by the
// largest-remainder rule, which meets the budget exactly; its schedule
// counts epochs, this one Train's steps (from 1), scoring in AfterBackward
// from the gradient and the weights it was taken at; and its final phase
// re-allocates with frozen scores, which gives the same counts as fixing
// them, as done here.
type Allocator struct {
	Layers []*SNELLA

	cfg    AllocatorConfig
	b0, bT int
	imp    map[*peft.Tensor]*ema
	fixed  bool
	trace  peft.RankTrace
}

var _ peft.Hook = (*Allocator)(nil)

// AllocatorConfig configures NewAllocator. Zero fields select the released
// scripts' values where noted.
type AllocatorConfig struct {
	// TargetRatio is s_T, the target average sparsity in (0, 1) (0
	// selects 0.3): the total budget ends at ⌈(1−s_T)·Σ d·k⌉.
	TargetRatio float64
	TotalStep   int // T, the number of training steps (required)
	InitWarmup  int // t_i: steps at the initial budget (the scripts' 0)
	FinalWarmup int // t_f: final steps at the fixed allocation (the scripts' 0)
	// MaskInterval is ΔT, the steps between allocations (0 selects 1).
	MaskInterval int
	// Beta1 and Beta2 are β₁, β₂ in (0, 1), the EMA rates of sensitivity
	// and uncertainty (0 selects 0.85).
	Beta1, Beta2 float64
}

// ema holds the importance EMAs Ī and Ū of one parameter, entry by entry.
type ema struct{ ibar, ubar []float64 }

// NewAllocator returns the allocator of layers (SNELLA's adapters, as Add
// returns them) for cfg, or an error naming the field and value that are
// out of range.
func NewAllocator(layers []*SNELLA, cfg AllocatorConfig) (*Allocator, error) {
	if cfg.TargetRatio == 0 {
		cfg.TargetRatio = 0.3
	}
	if cfg.MaskInterval == 0 {
		cfg.MaskInterval = 1
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.85
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.85
	}
	bad := func(format string, args ...any) (*Allocator, error) {
		return nil, peft.ArgError{Op: "snella.NewAllocator", Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(layers) == 0:
		return bad("no layers")
	case !(cfg.TargetRatio > 0 && cfg.TargetRatio < 1):
		return bad("TargetRatio = %v out of range (0, 1)", cfg.TargetRatio)
	case cfg.TotalStep < 1:
		return bad("TotalStep = %d: want the number of training steps T ≥ 1", cfg.TotalStep)
	case cfg.InitWarmup < 0 || cfg.FinalWarmup < 0 || cfg.InitWarmup+cfg.FinalWarmup >= cfg.TotalStep:
		return bad("InitWarmup = %d, FinalWarmup = %d out of range: want t_i, t_f ≥ 0 and t_i + t_f < TotalStep = %d", cfg.InitWarmup, cfg.FinalWarmup, cfg.TotalStep)
	case cfg.MaskInterval < 0:
		return bad("MaskInterval = %d out of range: want ΔT ≥ 1", cfg.MaskInterval)
	case !(cfg.Beta1 > 0 && cfg.Beta1 < 1):
		return bad("Beta1 = %v out of range (0, 1)", cfg.Beta1)
	case !(cfg.Beta2 > 0 && cfg.Beta2 < 1):
		return bad("Beta2 = %v out of range (0, 1)", cfg.Beta2)
	}
	a := &Allocator{Layers: slices.Clone(layers), cfg: cfg, imp: map[*peft.Tensor]*ema{}}
	total := 0
	for _, l := range layers {
		a.b0 += l.Kept()
		total += l.d * l.k
		a.trace.Modules = append(a.trace.Modules, l.Module)
	}
	a.trace.Ranks = make([][]int, len(layers))
	a.bT = KeptCount(cfg.TargetRatio, total)
	return a, nil
}

// Config returns the allocator's configuration with defaults filled in.
func (a *Allocator) Config() AllocatorConfig { return a.cfg }

// InitialBudget returns b₀, the kept entries of all layers at NewAllocator.
func (a *Allocator) InitialBudget() int { return a.b0 }

// TargetBudget returns b_T = ⌈(1−s_T)·Σ d·k⌉.
func (a *Allocator) TargetBudget() int { return a.bT }

// Budget returns the total budget b(t) at step t and whether step t
// allocates it.
func (a *Allocator) Budget(t int) (b int, allocate bool) {
	ti, tf, T := a.cfg.InitWarmup, a.cfg.FinalWarmup, a.cfg.TotalStep
	switch {
	case t <= ti:
		return a.b0, false
	case t >= T-tf:
		return a.bT, t == T-tf // the final allocation, then fixed
	}
	u := 1 - float64(t-ti)/float64(T-tf-ti)
	return int(math.Floor(float64(a.bT) + float64(a.b0-a.bT)*u*u*u)), t%a.cfg.MaskInterval == 0
}

// Kept returns each layer's κ, in Layers order.
func (a *Allocator) Kept() []int {
	k := make([]int, len(a.Layers))
	for i, l := range a.Layers {
		k[i] = l.Kept()
	}
	return k
}

// Trace returns the kept counts κ recorded at every allocation (a copy), in
// a peft.RankTrace whose Ranks hold κ rather than ranks and whose Budget
// holds b(t).
func (a *Allocator) Trace() *peft.RankTrace {
	return a.trace.Clone()
}

// Regularizer returns nil: SNELLA adds nothing to the loss.
func (a *Allocator) Regularizer(step int) *peft.Tensor { return nil }

// AfterBackward updates the importance EMAs of every A and B from the
// step's gradients, until the allocation is final.
func (a *Allocator) AfterBackward(step int) {
	if a.fixed || step > a.cfg.TotalStep-a.cfg.FinalWarmup {
		return
	}
	b1, b2 := a.cfg.Beta1, a.cfg.Beta2
	for _, l := range a.Layers {
		for _, p := range []*peft.Tensor{l.A, l.B} {
			if p.Grad == nil {
				continue
			}
			w, g := mat.DenseCopyOf(p.Value).RawMatrix().Data, mat.DenseCopyOf(p.Grad).RawMatrix().Data
			im := a.imp[p]
			if im == nil {
				im = &ema{ibar: make([]float64, len(w)), ubar: make([]float64, len(w))}
				a.imp[p] = im
			}
			for i := range w {
				s := math.Abs(w[i] * g[i]) // sensitivity I = |w·∂L/∂w|
				if math.IsNaN(s) {
					s = 0 // as the released code does
				}
				im.ibar[i] = b1*im.ibar[i] + (1-b1)*s                      // smoothed sensitivity Ī
				im.ubar[i] = b2*im.ubar[i] + (1-b2)*math.Abs(s-im.ibar[i]) // uncertainty Ū
			}
		}
	}
}

// Scores returns each layer's score S_l = mean(Ī·Ū) over A plus over B.
func (a *Allocator) Scores() []float64 {
	s := make([]float64, len(a.Layers))
	for i, l := range a.Layers {
		for _, p := range []*peft.Tensor{l.A, l.B} {
			im := a.imp[p]
			if im == nil {
				continue
			}
			var m float64
			for j := range im.ibar {
				m += im.ibar[j] * im.ubar[j]
			}
			s[i] += m / float64(len(im.ibar))
		}
	}
	return s
}

// AfterStep allocates the budget of step when the schedule says so, fixes
// the allocation at T − t_f, and recomputes every layer's mask from the
// updated parameters.
func (a *Allocator) AfterStep(step int) error {
	if b, alloc := a.Budget(step); alloc && !a.fixed {
		caps := make([]int, len(a.Layers))
		for i, l := range a.Layers {
			caps[i] = l.d * l.k
		}
		counts := share(b, a.Scores(), caps)
		for i, l := range a.Layers {
			l.kept = counts[i]
			a.trace.Ranks[i] = append(a.trace.Ranks[i], counts[i])
		}
		a.trace.Steps = append(a.trace.Steps, step)
		a.trace.Budget = append(a.trace.Budget, b)
	}
	if step >= a.cfg.TotalStep-a.cfg.FinalWarmup {
		a.fixed = true
	}
	for _, l := range a.Layers {
		l.Refresh()
	}
	return nil
}

// share splits b (≤ Σ caps) into integer counts proportional to scores,
// each at most its cap, summing to b: layers whose proportional share
// exceeds their cap get the cap and the rest is shared again among the
// others; then the integer parts are rounded by largest remainder (ties
// to the lower index). Scores all zero (among the uncapped) share equally.
func share(b int, scores []float64, caps []int) []int {
	n := len(scores)
	counts := make([]int, n)
	open := make([]bool, n)
	for i := range open {
		open[i] = caps[i] > 0
	}
	left := b
	ideal := make([]float64, n)
	for {
		var sum float64
		cnt := 0
		for i := range scores {
			if open[i] {
				sum += scores[i]
				cnt++
			}
		}
		if cnt == 0 {
			return counts
		}
		capped := false
		for i := range scores {
			if !open[i] {
				continue
			}
			p := 1 / float64(cnt)
			if sum > 0 {
				p = scores[i] / sum
			}
			ideal[i] = float64(left) * p
			if ideal[i] >= float64(caps[i]) {
				counts[i], open[i], capped = caps[i], false, true
				left -= caps[i]
			}
		}
		if !capped {
			break
		}
	}
	// Floors, then the remaining units to the largest fractional parts.
	var order []int
	for i := range scores {
		if open[i] {
			counts[i] = int(math.Floor(ideal[i]))
			left -= counts[i]
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(x, y int) int {
		fx, fy := ideal[x]-math.Floor(ideal[x]), ideal[y]-math.Floor(ideal[y])
		switch {
		case fx > fy:
			return -1
		case fx < fy:
			return 1
		}
		return 0
	})
	// One pass suffices in exact arithmetic (the fractional parts sum to
	// fewer units than there are layers); the loops guard against rounding.
	for progress := true; left > 0 && progress; {
		progress = false
		for _, i := range order {
			if left > 0 && counts[i] < caps[i] {
				counts[i]++
				left--
				progress = true
			}
		}
	}
	for j := len(order) - 1; left < 0 && j >= 0; j-- {
		if i := order[j]; counts[i] > 0 {
			counts[i]--
			left++
		}
	}
	return counts
}
