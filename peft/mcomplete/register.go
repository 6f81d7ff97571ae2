package mcomplete

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
)

func init() {
	peft.Register(peft.Method{
		Name:    "RobustAltMin",
		Kind:    peft.HookMethod,
		Paper:   "Gu, Song, Yin and Zhang 2023, Low Rank Matrix Completion via Robust Alternating Minimization in Nearly Linear Time, arXiv:2302.11068",
		Package: "github.com/gopeft/gopeft/peft/mcomplete",
		Summary: "an algorithm, not an adapter: rank-k matrix completion from sampled entries by alternating least squares solved approximately (CG)",
		// nil: there is no adapter to save. Kind HookMethod only files the
		// method with those that act on whole runs; nothing here is a
		// peft.Hook.
		Format: nil,
	})
}

// Phase is a phase diagram of Complete: Err[a][b] is the final relative
// error ‖X − M‖_F/‖M‖_F for rank Ks[a] at sampling rate Ps[b], on an n×n
// matrix from Generate (condition number 1) observed by Observe.
type Phase struct {
	N   int
	Ks  []int
	Ps  []float64
	Err [][]float64
}

// PhaseDiagram runs Complete with cfg (whose K and Truth it sets) on one
// n×n rank-k matrix for every k of ks and p of ps, the matrix and the mask
// drawn from seed, k and p's index. A run that breaks down (a factor loses
// rank, too few samples) or diverges (a final error above 1, or NaN)
// counts as error 1, that of X = 0, so that a chart's scale stays [0, 1]. Cancelling ctx
// stops it with ctx's error, and a cfg that does not fit returns
// Complete's error. It panics on a k out of [1, n] or a p out of
// (0, 1].
func PhaseDiagram(ctx context.Context, n int, ks []int, ps []float64, cfg Config, seed int64) (*Phase, error) {
	ph := &Phase{N: n, Ks: append([]int(nil), ks...), Ps: append([]float64(nil), ps...), Err: make([][]float64, len(ks))}
	for a, k := range ks {
		lr := Generate(n, n, k, 1, seed+int64(1000*k))
		ph.Err[a] = make([]float64, len(ps))
		for b, p := range ps {
			obs := Observe(lr.M, p, seed+int64(1000*k+b+1))
			c := cfg
			c.K, c.Truth = k, lr.M
			res, err := Complete(ctx, obs, c)
			switch {
			case ctx.Err() != nil:
				return ph, fmt.Errorf("mcomplete: phase diagram stopped at k = %d, p = %v: %w", k, p, ctx.Err())
			case err != nil && res == nil: // cfg does not fit
				return ph, err
			case err != nil || len(res.Err) == 0:
				ph.Err[a][b] = 1
			default:
				ph.Err[a][b] = res.Err[len(res.Err)-1]
				if e := ph.Err[a][b]; e != e || e > 1 {
					ph.Err[a][b] = 1 // diverged
				}
			}
		}
	}
	return ph, nil
}
