package codyra_test

import (
	"context"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/codyra"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

type regTask struct{ X, Y, EX, EY *mat.Dense }

func (r *regTask) Sample(rng *rand.Rand, size int) peft.Batch {
	n, k := r.X.Dims()
	_, d := r.Y.Dims()
	b := peft.Batch{X: mat.NewDense(size, k, nil), Y: mat.NewDense(size, d, nil)}
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		b.X.SetRow(i, r.X.RawRowView(j))
		b.Y.SetRow(i, r.Y.RawRowView(j))
	}
	return b
}
func (r *regTask) EvalBatches() []peft.Batch { return []peft.Batch{{X: r.EX, Y: r.EY}} }

// taskOn returns a regression task whose inputs live on the coordinates
// [c0, c1) and whose targets are x·(W0 + Δ)ᵀ.
func taskOn(w0, delta *mat.Dense, c0, c1, n int, rng *rand.Rand) *regTask {
	_, k := w0.Dims()
	var w mat.Dense
	w.Add(w0, delta)
	mk := func() (*mat.Dense, *mat.Dense) {
		x := mat.NewDense(n, k, nil)
		for i := 0; i < n; i++ {
			for j := c0; j < c1; j++ {
				x.Set(i, j, rng.NormFloat64())
			}
		}
		var y mat.Dense
		y.Mul(x, w.T())
		return x, &y
	}
	t := &regTask{}
	t.X, t.Y = mk()
	t.EX, t.EY = mk()
	return t
}

// trainCfg is the runs' schedule: AdamW at a constant 0.03 with weight
// decay 0.1, which keeps B and A from growing to make up for shrinking
// gates.
func trainCfg(steps int, seed int64, hooks ...peft.Hook) peft.TrainConfig {
	return peft.TrainConfig{Steps: steps, BatchSize: 32, LR: 0.03, Schedule: "constant", WeightDecay: 0.1, Seed: seed, Hooks: hooks}
}

// TestTeacherRank: on teacher tasks whose update ΔW* has rank 2 (σ = 2,
// 1.5; W₀ 16×12), CoDyRA started at r = 8 with κ_max = 0.02 ends, over 5
// seeds, with 2 or 3 nonzero gates (measured: 2, 2, 2, 3, 2) and recovers
// ΔW* to a relative error below 0.15 (measured 0.011–0.082), far below
// the rank-1 floor (0.6). Without the proximal step all 8 gates stay on.
func TestTeacherRank(t *testing.T) {
	const steps = 1000
	for seed := int64(1); seed <= 5; seed++ {
		task := peft.NewTeacherTask(16, 12, []float64{2, 1.5}, 256, seed)
		m := task.Model()
		cs, err := codyra.Add(m, codyra.Config{R: 8, Targets: []string{"proj"}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		p, err := codyra.NewProx(cs, codyra.ProxConfig{Steps: steps, MaxKappa: 0.02})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peft.Train(context.Background(), m, task, trainCfg(steps, seed, p)); err != nil {
			t.Fatal(err)
		}
		rank, e := cs[0].Rank(), task.RecoveryError(m)
		t.Logf("seed %d: final rank %d, recovery error %.3f (rank-1 floor %.3f), gates %.3f", seed, rank, e, task.BestRankError(1), cs[0].Gates())
		if rank < 2 || rank > 3 {
			t.Errorf("seed %d: final rank %d, want 2 or 3 for a rank-2 ΔW*", seed, rank)
		}
		if e > 0.15 {
			t.Errorf("seed %d: recovery error %.3f, want < 0.15", seed, e)
		}
		tr := p.Trace()
		if n := len(tr.Steps); n == 0 || tr.Steps[n-1] != steps || tr.Ranks[0][n-1] != rank || tr.Ranks[0][0] != 8 {
			t.Errorf("seed %d: trace %+v does not run from rank 8 to the final rank %d at step %d", seed, tr, rank, steps)
		}
	}
	// The control: the same run without the proximal step.
	task := peft.NewTeacherTask(16, 12, []float64{2, 1.5}, 256, 1)
	m := task.Model()
	cs, err := codyra.Add(m, codyra.Config{R: 8, Targets: []string{"proj"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peft.Train(context.Background(), m, task, trainCfg(steps, 1)); err != nil {
		t.Fatal(err)
	}
	if cs[0].Rank() != 8 {
		t.Errorf("without the proximal step the rank is %d, want 8", cs[0].Rank())
	}
}

// TestTwoTasks trains two regression tasks in sequence on one layer (W₀
// 16×12), task 1 on inputs in coordinates 0–5 with targets x·(W₀ + Δ₁)ᵀ,
// task 2 on coordinates 6–11 with targets x·(W₀ + Δ₁ + Δ₂)ᵀ (Δ's of rank
// 2), with CoDyRA (r = 8, κ_max = 0.02, NextTask between the tasks) and
// with plain LoRA (r = 8, baked in between), 1000 steps each. Forgetting
// is the rise of task 1's evaluation loss over task 2's training.
//
// What it shows, over seeds 1–5 (measured): CoDyRA keeps rank 2 on task 1
// and 4–5 on task 2 (its residual on the new inputs includes Δ₁'s unseen
// columns); LoRA keeps 8. CoDyRA forgets less (rises of −1.1e-5 to 9.0e-5,
// sum 2.4e-4) than LoRA (7.2e-5 to 2.4e-4, sum 7.3e-4), but fits each task
// less closely (task-1 loss after task 1: 7e-5 to 8e-4 against LoRA's
// 4e-7 to 8e-6), because the shrinkage biases the gates: after both
// tasks LoRA's task-1 loss is the lower one in 3 of 5 seeds (summed:
// LoRA 7.5e-4, CoDyRA 2.2e-3). The test
// asserts the ranks and that CoDyRA's summed forgetting is below 0.6 times
// LoRA's.
func TestTwoTasks(t *testing.T) {
	const steps = 1000
	ctx := context.Background()
	var forget [2]float64 // LoRA, CoDyRA
	for seed := int64(1); seed <= 5; seed++ {
		t1 := peft.NewTeacherTask(16, 12, []float64{2, 1.5}, 8, seed)
		t2 := peft.NewTeacherTask(16, 12, []float64{2, 1.5}, 8, seed+100)
		rng := rand.New(rand.NewSource(seed))
		a := taskOn(t1.W0, t1.Delta, 0, 6, 256, rng)
		var w1 mat.Dense
		w1.Add(t1.W0, t1.Delta)
		b := taskOn(&w1, t2.Delta, 6, 12, 256, rng)
		for i, method := range []string{"LoRA", "CoDyRA"} {
			m := t1.Model()
			var hooks []peft.Hook
			if method == "LoRA" {
				if _, err := lora.Add(m, lora.Config{R: 8, Targets: []string{"proj"}, Seed: seed}); err != nil {
					t.Fatal(err)
				}
			} else {
				cs, err := codyra.Add(m, codyra.Config{R: 8, Targets: []string{"proj"}, Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				p, err := codyra.NewProx(cs, codyra.ProxConfig{Steps: steps, MaxKappa: 0.02})
				if err != nil {
					t.Fatal(err)
				}
				hooks = []peft.Hook{p}
			}
			if _, err := peft.Train(ctx, m, a, trainCfg(steps, seed, hooks...)); err != nil {
				t.Fatal(err)
			}
			before, _, _ := peft.Evaluate(ctx, m, a)
			r1 := m.Layer.ActiveAdapter().Rank()
			w := mat.DenseCopyOf(m.Layer.ActiveAdapter().MergedWeight(m.Layer.W.Value))
			if method == "LoRA" {
				if err := m.Layer.Bake(); err != nil {
					t.Fatal(err)
				}
				if _, err := lora.Add(m, lora.Config{R: 8, Targets: []string{"proj"}, Seed: seed + 7}); err != nil {
					t.Fatal(err)
				}
			} else {
				ranks, err := codyra.NextTask(m, "")
				if err != nil {
					t.Fatal(err)
				}
				if ranks["proj"] != r1 || m.Layer.ActiveAdapter().Rank() != 8 {
					t.Errorf("seed %d: NextTask reported rank %d (had %d) and left rank %d, want a fresh 8", seed, ranks["proj"], r1, m.Layer.ActiveAdapter().Rank())
				}
				if diff := adaptertest.RelDiffMax(m.Layer.W.Value, w); diff > 1e-14 {
					t.Errorf("seed %d: NextTask's merged W₀ differs from the adapted weight by %.3g", seed, diff)
				}
			}
			if _, err := peft.Train(ctx, m, b, trainCfg(steps, seed, hooks...)); err != nil {
				t.Fatal(err)
			}
			after, _, _ := peft.Evaluate(ctx, m, a)
			l2, _, _ := peft.Evaluate(ctx, m, b)
			r2 := m.Layer.ActiveAdapter().Rank()
			forget[i] += after - before
			t.Logf("seed %d %-6s: ranks %d, %d; task-1 loss %.2e → %.2e (forgetting %.2e); task-2 loss %.2e", seed, method, r1, r2, before, after, after-before, l2)
			want1, want2 := [2]int{8, 2}, [2][2]int{{8, 8}, {3, 6}}
			if r1 != want1[i] && !(i == 1 && r1 == 3) {
				t.Errorf("seed %d %s: rank %d on task 1, want %d", seed, method, r1, want1[i])
			}
			if r2 < want2[i][0] || r2 > want2[i][1] {
				t.Errorf("seed %d %s: rank %d on task 2, want in %v", seed, method, r2, want2[i])
			}
		}
	}
	t.Logf("summed forgetting: LoRA %.2e, CoDyRA %.2e", forget[0], forget[1])
	if !(forget[1] < 0.6*forget[0]) {
		t.Errorf("CoDyRA's summed forgetting %.2e is not below 0.6 × LoRA's %.2e", forget[1], forget[0])
	}
}
