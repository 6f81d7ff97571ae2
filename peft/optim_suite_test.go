package peft_test

import (
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
)

// TestOptimizerSuite runs the shared optimizer suite on SGD (plain and
// with momentum) and AdamW.
func TestOptimizerSuite(t *testing.T) {
	t.Run("SGD", func(t *testing.T) {
		adaptertest.RunOptimizer(t, adaptertest.OptimizerCase{New: func() peft.Optimizer { return &peft.SGD{} }})
	})
	t.Run("SGDMomentum", func(t *testing.T) {
		adaptertest.RunOptimizer(t, adaptertest.OptimizerCase{New: func() peft.Optimizer { return &peft.SGD{Momentum: 0.9, WeightDecay: 0.01} }, Decay: 0.01, Stateful: true})
	})
	t.Run("AdamW", func(t *testing.T) {
		adaptertest.RunOptimizer(t, adaptertest.OptimizerCase{New: func() peft.Optimizer { return peft.NewAdamW(0.01) }, Decay: 0.01, Stateful: true})
	})
}
