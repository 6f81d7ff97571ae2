package mcomplete

import "gonum.org/v1/gonum/mat"

// SolveColumns solves min_v ‖P_Ω(fixed·vᵀ − M)‖ for every column of the
// observed matrix with cfg's solver (warm start from zero), as Complete's V
// step does. → (n×k).
func SolveColumns(obs *Observed, fixed *mat.Dense, cfg Config) *mat.Dense {
	_, cols := index(obs)
	if cfg.CGIters == 0 {
		_, cfg.CGIters = fixed.Dims()
	}
	return solveSide(cols, fixed, nil, cfg)
}
