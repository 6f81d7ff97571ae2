package peft

import (
	"math/rand"

	"gonum.org/v1/gonum/mat"
)

// The methods live in packages that import this one (peft/lora, …), so this
// package's own tests adapt models with lowRank, a stand-in written as a
// CustomAdapter: h = base + s·dropout(x)·Aᵀ·Bᵀ with A (r×k) random and B
// (d×r) zero at init.

type lowRank struct {
	R       int
	Alpha   float64 // 0: s = 1
	Dropout float64
	Targets []string
	Seed    int64
}

type lowRankAdapter struct {
	*CustomAdapter
	A, B *Tensor
}

// addLowRank attaches a lowRank adapter named "default" to m's modules
// matching cfg.Targets.
func addLowRank(m Model, cfg lowRank) ([]*lowRankAdapter, error) {
	rng := rand.New(rand.NewSource(cfg.Seed))
	var out []*lowRankAdapter
	_, err := AddAdapter(m, "default", cfg.Targets, func(l *Linear) (Adapter, error) {
		d, k := l.W.Dims()
		a := &lowRankAdapter{
			A: NewParam(l.Name+".lr_A", RandUniform(rng, cfg.R, k, 0.5)),
			B: NewParam(l.Name+".lr_B", mat.NewDense(d, cfg.R, nil)),
		}
		s := 1.0
		if cfg.Alpha != 0 {
			s = cfg.Alpha / float64(cfg.R)
		}
		drop := rand.New(rand.NewSource(rng.Int63()))
		a.CustomAdapter = &CustomAdapter{
			Tensors: []*Tensor{a.A, a.B},
			R:       cfg.R,
			ForwardFunc: func(l *Linear, x, base *Tensor) *Tensor {
				xd := Dropout(x, cfg.Dropout, drop, l.Training)
				return Add(base, MatMulT(Scale(MatMulT(xd, a.A), s), a.B))
			},
		}
		out = append(out, a)
		return a, nil
	})
	return out, err
}

// randomizeB gives every B random entries, as after some training.
func randomizeB(rng *rand.Rand, ls []*lowRankAdapter) {
	for _, l := range ls {
		r, c := l.B.Dims()
		l.B.Value.Copy(RandUniform(rng, r, c, 1))
	}
}
