package maestro_test

import (
	"context"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/maestro"
	"gonum.org/v1/gonum/mat"
)

// residual is a teacher task whose targets are y = x·ΔW*ᵀ alone: a layer
// that must become the rank-r map ΔW*, starting from the full-rank W₀.
type residual struct{ t *peft.TeacherTask }

func (r residual) Sample(rng *rand.Rand, size int) peft.Batch {
	b := r.t.Sample(rng, size)
	b.Y.Mul(b.X, r.t.Delta.T())
	return b
}

func (r residual) EvalBatches() []peft.Batch {
	var y mat.Dense
	y.Mul(r.t.EvalX, r.t.Delta.T())
	return []peft.Batch{{X: r.t.EvalX, Y: &y}}
}

// TestFindsTeacherRank starts a 16×16 layer from a random full-rank W₀
// (K = 16) and trains it to become a teacher's ΔW* of rank 3 (σ = 4, 3, 2;
// the targets' variance is Σσ²/16 = 1.81). With the penalty at the
// reference's defaults (λ = 5e-3, threshold 1e-5, truncating every 100
// steps) the width falls to the teacher's rank: measured 16 → 3 by step
// 900, loss 0.0019, importances 8.8, 4.8, 1.8 (≈ Σ_{j≥i} σ_j, the
// hierarchy). The test asserts a final width of 3 or 4, a falling trace and
// a loss below 0.01. Without the penalty (the control) nothing falls below
// the threshold and the width stays 16 (asserted > 8), though the loss is
// lower: the penalty is what finds the rank.
func TestFindsTeacherRank(t *testing.T) {
	ctx := context.Background()
	task := peft.NewTeacherTask(16, 16, []float64{4, 3, 2}, 512, 1)
	data := residual{task}
	for _, penalty := range []bool{true, false} {
		m := task.Model()
		c, err := maestro.Add(m, maestro.Config{R: 16, NoPenalty: !penalty, Targets: []string{"proj"}, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peft.Train(ctx, m, data, peft.TrainConfig{Steps: 2000, BatchSize: 32, LR: 1e-2, MinLR: 1e-4, Hooks: []peft.Hook{c}, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		loss, _, err := peft.Evaluate(ctx, m, data)
		if err != nil {
			t.Fatal(err)
		}
		tr := c.Trace()
		k := c.Ranks()[0]
		t.Logf("penalty %v: width %d, loss %.4f, importances %.3g, widths every 100 steps %v", penalty, k, loss, c.Layers[0].Importance(), tr.Ranks[0])
		if len(tr.Steps) != 20 || tr.Modules[0] != "proj" {
			t.Errorf("trace of %d truncations of %v, want 20 of proj", len(tr.Steps), tr.Modules)
		}
		for i := 1; i < len(tr.Ranks[0]); i++ {
			if tr.Ranks[0][i] > tr.Ranks[0][i-1] {
				t.Errorf("width grew from %d to %d at step %d", tr.Ranks[0][i-1], tr.Ranks[0][i], tr.Steps[i])
			}
		}
		switch {
		case penalty && (k < 3 || k > 4):
			t.Errorf("with the penalty: final width %d, want the teacher's rank 3 (or 4)", k)
		case penalty && loss > 0.01:
			t.Errorf("with the penalty: loss %.4f, want < 0.01", loss)
		case !penalty && k <= 8:
			t.Errorf("without the penalty the width fell to %d: the control does not show the penalty's effect", k)
		}
	}
}
