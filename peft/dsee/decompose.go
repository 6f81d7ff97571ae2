package dsee

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// The defaults of DecompConfig, from DSEE's code (which runs GreBsmo for 100
// rounds, each adding 5 directions, and hard-thresholds S at 0.01).
const (
	DefaultRounds    = 100
	DefaultStep      = 5
	DefaultThreshold = 0.01
)

// DecompConfig configures Decompose, the split W ≈ L + S whose sparse part
// ranks the entries for the Decomposition selection. Zero fields take the
// defaults.
type DecompConfig struct {
	// Rank is ρ, the largest rank of L. 0 means min(Rounds·Step,
	// min(d, k) − 1): the paper's 500 directions, capped so that L never
	// holds all of W.
	Rank      int
	Rounds    int     // rounds of the greedy split; 0 means DefaultRounds
	Step      int     // rank added to L each round; 0 means DefaultStep
	Threshold float64 // τ: entries of S below τ in magnitude are set to 0; 0 means DefaultThreshold
}

// Check returns an error naming module, the field and its value if dc does
// not fit a weight (d×k): a negative field, a threshold that is not finite,
// or a rank above min(d, k) − 1.
func (dc DecompConfig) Check(module string, d, k int) error {
	switch {
	case dc.Rank < 0 || (dc.Rank > 0 && dc.Rank > min(d, k)-1):
		return fmt.Errorf("peft: DSEE on %s: Decomp.Rank = %d out of range for W %s: want 0 (the default) or 1 ≤ ρ ≤ min(d, k) − 1 = %d", module, dc.Rank, peft.ShapeOf(d, k), min(d, k)-1)
	case dc.Rounds < 0:
		return fmt.Errorf("peft: DSEE on %s: Decomp.Rounds = %d; want ≥ 0 (0: %d)", module, dc.Rounds, DefaultRounds)
	case dc.Step < 0:
		return fmt.Errorf("peft: DSEE on %s: Decomp.Step = %d; want ≥ 0 (0: %d)", module, dc.Step, DefaultStep)
	case !(dc.Threshold >= 0) || math.IsInf(dc.Threshold, 0):
		return fmt.Errorf("peft: DSEE on %s: Decomp.Threshold = %v; want a finite τ ≥ 0 (0: %g)", module, dc.Threshold, DefaultThreshold)
	}
	return nil
}

// withDefaults returns dc with its zero fields set for a weight (d×k).
func (dc DecompConfig) withDefaults(d, k int) DecompConfig {
	if dc.Rounds == 0 {
		dc.Rounds = DefaultRounds
	}
	if dc.Step == 0 {
		dc.Step = DefaultStep
	}
	if dc.Threshold == 0 {
		dc.Threshold = DefaultThreshold
	}
	if dc.Rank == 0 {
		dc.Rank = min(dc.Rounds*dc.Step, min(d, k)-1)
	}
	return dc
}

// Decompose splits w (d×k) into a low-rank L and a sparse S, w ≈ L + S, the
// way DSEE finds which entries of a pre-trained weight stand out from its
// low-rank part (after GreBsmo, Zhou & Tao 2013). Starting from S = 0, round
// t = 1, 2, … of dc.Rounds
//
//	ρ_t = min(t·Step, ρ)                   the rank grows greedily
//	L   = best rank-ρ_t approximation of w − S   (truncated SVD)
//	S   = H_τ(w − L)                        hard threshold: |entry| < τ → 0
//
// and the rounds stop early once ρ_t = ρ and S no longer changes (by more
// than 1e-12·max|w|). GreBsmo fits L by bilateral random projections and QR;
// Decompose takes the exact truncated SVD (accel.ThinSVD) instead, which is
// what those projections approximate. It returns an error if dc does not fit
// w (see DecompConfig.Check), if an SVD fails or if ctx is cancelled.
func Decompose(ctx context.Context, w mat.Matrix, dc DecompConfig) (l, s *mat.Dense, err error) {
	return decompose(ctx, "W", w, dc)
}

// decompose is Decompose for the weight of module, named in errors.
func decompose(ctx context.Context, module string, w mat.Matrix, dc DecompConfig) (l, s *mat.Dense, err error) {
	d, k := w.Dims()
	if err := dc.Check(module, d, k); err != nil {
		return nil, nil, err
	}
	dc = dc.withDefaults(d, k)
	w0 := mat.DenseCopyOf(w)
	scale := mat.Norm(w0, math.Inf(1))
	s = mat.NewDense(d, k, nil)
	l = mat.NewDense(d, k, nil)
	var rest mat.Dense
	for t := 1; t <= dc.Rounds; t++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("peft: DSEE on %s: decomposition of W %s stopped in round %d: %w", module, peft.ShapeOf(d, k), t, err)
		}
		rho := min(t*dc.Step, dc.Rank)
		rest.Sub(w0, s) // w − S
		if err := rankApproxTo(ctx, l, &rest, rho); err != nil {
			return nil, nil, fmt.Errorf("peft: DSEE on %s: decomposition of W %s, round %d: %w", module, peft.ShapeOf(d, k), t, err)
		}
		// S = H_τ(w − L), noting the largest change.
		change := 0.0
		for i := 0; i < d; i++ {
			for j := 0; j < k; j++ {
				v := w0.At(i, j) - l.At(i, j)
				if math.Abs(v) < dc.Threshold {
					v = 0
				}
				change = math.Max(change, math.Abs(v-s.At(i, j)))
				s.Set(i, j, v)
			}
		}
		if rho == dc.Rank && change <= 1e-12*scale {
			break
		}
	}
	return l, s, nil
}

// rankApproxTo sets dst (d×k) to the best rank-ρ approximation of a (d×k),
// U_ρ·Σ_ρ·V_ρᵀ; ρ = 0 gives 0.
func rankApproxTo(ctx context.Context, dst *mat.Dense, a *mat.Dense, rho int) error {
	dst.Zero()
	if rho == 0 {
		return nil
	}
	svd, err := accel.ThinSVD(ctx, a)
	if err != nil {
		return err
	}
	d, k := a.Dims()
	us := mat.NewDense(d, rho, nil) // U_ρ·Σ_ρ (d×ρ)
	for i := 0; i < d; i++ {
		for c := 0; c < rho; c++ {
			us.Set(i, c, svd.U.At(i, c)*svd.S[c])
		}
	}
	dst.Mul(us, svd.VT.Slice(0, rho, 0, k))
	return nil
}
