package peft_test

import (
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
)

// TestOptimizerSuite runs the shared optimizer suite on SGD (plain, with
// weight decay, with momentum) and AdamW.
func TestOptimizerSuite(t *testing.T) {
	for _, c := range []adaptertest.OptimizerCase{
		{Name: "SGD", New: func() peft.Optimizer { return &peft.SGD{} }},
		{Name: "SGDDecay", New: func() peft.Optimizer { return &peft.SGD{WeightDecay: 0.05} }, Decay: 0.05},
		{
			Name: "SGDMomentum", New: func() peft.Optimizer { return &peft.SGD{Momentum: 0.9, WeightDecay: 0.01} }, Decay: 0.01,
			Stateful: true, StateBytesOf: func(m, n int) int { return 8 * m * n }, // the velocity
		},
		{
			Name: "AdamW", New: func() peft.Optimizer { return peft.NewAdamW(0.01) }, Decay: 0.01,
			Stateful: true, StateBytesOf: func(m, n int) int { return 16 * m * n }, // two moments
		},
	} {
		t.Run(c.Name, func(t *testing.T) { adaptertest.RunOptimizer(t, c) })
	}
}
