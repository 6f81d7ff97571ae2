package dylora_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/dylora"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite in both modes. At init B = 0, so
// the output is the base model's exactly. The suite's rank change is
// SetRank(1): Rank, merging and saving then follow rank 1.
func TestSuite(t *testing.T) {
	for _, frozen := range []bool{false, true} {
		name := "unfrozen"
		if frozen {
			name = "frozen"
		}
		t.Run(name, func(t *testing.T) {
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					c, err := dylora.Add(m, dylora.Config{R: o.R, Alpha: o.Alpha, Frozen: frozen, Targets: o.Targets, Seed: o.Seed})
					if err != nil {
						return nil, err
					}
					return adaptertest.Adapters(c.Layers), nil
				},
				ZeroAtInit: true,
				ChangeRank: func(ads []peft.Adapter) []int {
					for _, a := range dylora.As(ads) {
						a.SetRank(1)
					}
					return []int{1, 1}
				},
			})
		})
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("dylora")
	if !ok {
		t.Fatal("DyLoRA is not registered")
	}
	if m.Name != "DyLoRA" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_DYLORA" ||
		m.Package != "github.com/gopeft/gopeft/peft/dylora" || !strings.Contains(m.Paper, "arXiv:2210.07558") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// The test model: a (5→7), b (7→4).
func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, []string{"a", "b"}, 5, 7, 4) }

// randomize gives every A and B random entries, as after training.
func randomize(c *dylora.DyLoRA, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	for _, l := range c.Layers {
		for _, p := range l.Params() {
			r, cols := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, cols))
		}
	}
}

// TestForwardAtRank checks the layer's output at every rank b against the
// formula W₀x + b₀ + (α/b)·Σ_{i≤b} B_i·A_i·x summed term by term, to 1e-13
// relative, in evaluation mode (SetRank) and in training mode (the drawn
// rank), which must agree.
func TestForwardAtRank(t *testing.T) {
	m := newModel()
	c, err := dylora.Add(m, dylora.Config{R: 4, Alpha: 6, Targets: []string{"a"}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	randomize(c, 4)
	l, a := m.Mods[0], c.Layers[0]
	rng := rand.New(rand.NewSource(5))
	x := adaptertest.RandDense(rng, 3, 5)
	for b := 1; b <= 4; b++ {
		want := l.Base(peft.NewConst(x)).Value // (3×7)
		want = mat.DenseCopyOf(want)
		for i := 0; i < b; i++ { // (α/b)·(x·A_i)·B_iᵀ
			for n := 0; n < 3; n++ {
				var ax float64
				for j := 0; j < 5; j++ {
					ax += x.At(n, j) * a.A.Value.At(i, j)
				}
				for o := 0; o < 7; o++ {
					want.Set(n, o, want.At(n, o)+6.0/float64(b)*ax*a.B.Value.At(o, i))
				}
			}
		}
		a.SetRank(b)
		got := l.Forward(peft.NewConst(x)).Value
		if d := adaptertest.RelDiffMax(got, want); d > 1e-13 {
			t.Errorf("rank %d: output differs from the formula by %.3g relative", b, d)
		}
		l.Training = true
		dylora.SetTrainingRank(a, b)
		gotT := l.Forward(peft.NewConst(x)).Value
		l.Training = false
		if d := adaptertest.RelDiffMax(gotT, want); d > 1e-13 {
			t.Errorf("rank %d while training: output differs from the formula by %.3g relative", b, d)
		}
		var merged mat.Dense
		merged.Mul(x, a.MergedWeight(l.W.Value).T())
		merged.Apply(func(_, j int, v float64) float64 { return v + l.B.Value.At(0, j) }, &merged)
		if d := adaptertest.RelDiffMax(&merged, want); d > 1e-13 {
			t.Errorf("rank %d: merged weight's output differs from the formula by %.3g relative", b, d)
		}
	}
}

// TestFrozenGradient checks that, in frozen mode at training rank b, only
// row b−1 of A and column b−1 of B (0-indexed) get gradient, exactly, and
// that the gradient they get is the unfrozen one's; and that without
// frozen every row and column below b gets gradient and none above.
func TestFrozenGradient(t *testing.T) {
	for _, frozen := range []bool{true, false} {
		m := newModel()
		c, err := dylora.Add(m, dylora.Config{R: 4, Alpha: 4, Frozen: frozen, Targets: []string{"a"}, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		randomize(c, 4)
		l, a := m.Mods[0], c.Layers[0]
		l.Training = true
		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(6)), 3, 5))
		wts := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(7)), 3, 7))
		for b := 1; b <= 4; b++ {
			dylora.SetTrainingRank(a, b)
			a.A.ZeroGrad()
			a.B.ZeroGrad()
			peft.SumAll(peft.Mul(l.Forward(x), wts)).Backward()
			for i := 0; i < 4; i++ {
				ga := mat.Norm(a.A.Grad.Slice(i, i+1, 0, 5), math.Inf(1))
				gb := mat.Norm(a.B.Grad.Slice(0, 7, i, i+1), math.Inf(1))
				wantGrad := i == b-1 || (!frozen && i < b)
				if wantGrad != (ga != 0) || wantGrad != (gb != 0) {
					t.Errorf("frozen %v, rank %d: component %d has gradient norms A %g, B %g; want nonzero: %v", frozen, b, i+1, ga, gb, wantGrad)
				}
			}
		}
	}
}

// TestSampling checks that the ranks drawn are a function of the seed,
// cover 1 … r about uniformly, and reach the layers before each step.
func TestSampling(t *testing.T) {
	draw := func(seed int64) []int {
		c, err := dylora.Add(newModel(), dylora.Config{R: 4, Targets: []string{"a", "b"}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 500; step++ {
			for _, l := range c.Layers {
				if l.TrainingRank() != c.Next() {
					t.Fatalf("step %d: layer trains at rank %d, the controller drew %d", step, l.TrainingRank(), c.Next())
				}
			}
			c.AfterStep(step)
		}
		return c.Sampled()
	}
	a, b, other := draw(1), draw(1), draw(2)
	same := 0
	count := make([]int, 5)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different rank at step %d: %d and %d", i+1, a[i], b[i])
		}
		if a[i] == other[i] {
			same++
		}
		if a[i] < 1 || a[i] > 4 {
			t.Fatalf("step %d: rank %d outside [1, 4]", i+1, a[i])
		}
		count[a[i]]++
	}
	t.Logf("counts of ranks 1..4 over 500 steps: %v; seeds 1 and 2 agree at %d steps", count[1:], same)
	for b := 1; b <= 4; b++ {
		if count[b] < 95 || count[b] > 155 { // 125 ± 3σ (σ ≈ 9.7)
			t.Errorf("rank %d drawn %d times in 500, want about 125", b, count[b])
		}
	}
	if same > 180 { // about 125 expected by chance
		t.Errorf("seeds 1 and 2 draw the same rank at %d of 500 steps", same)
	}
}

// The teacher task of the training test: W* = W₀ + ΔW*, ΔW* of rank 6.
var teacherSigma = []float64{3, 2.5, 2, 1.5, 1, 0.5}

const (
	teacherD, teacherK = 16, 12
	teacherR           = 6
)

// trainDyLoRA trains DyLoRA (r = 6) on task and returns its evaluation
// loss at every rank.
func trainDyLoRA(t *testing.T, task *peft.TeacherTask, frozen, fixed bool) []float64 {
	ctx := context.Background()
	m := task.Model()
	c, err := dylora.Add(m, dylora.Config{R: teacherR, Frozen: frozen, FixedScale: fixed, Targets: []string{"proj"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peft.Train(ctx, m, task, peft.TrainConfig{Steps: 6000, BatchSize: 32, LR: 2e-2, MinLR: 1e-3, Hooks: []peft.Hook{c}, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	losses, err := dylora.LossByRank(ctx, m, task)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ranks()[0] != teacherR {
		t.Errorf("LossByRank left the rank at %d, want %d", c.Ranks()[0], teacherR)
	}
	return losses
}

// loraLosses trains a LoRA at each fixed rank b = 1 … 6 and returns their
// evaluation losses, and that of the rank-6 one truncated to its first b
// components (B's other columns zeroed; its scale α/r kept).
func loraLosses(t *testing.T, task *peft.TeacherTask) (fixed, trunc []float64) {
	ctx := context.Background()
	for b := 1; b <= teacherR; b++ {
		m := task.Model()
		ls, err := lora.Add(m, lora.Config{R: b, Targets: []string{"proj"}, Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peft.Train(ctx, m, task, peft.TrainConfig{Steps: 1000, BatchSize: 32, LR: 2e-2, MinLR: 1e-3, Seed: 9}); err != nil {
			t.Fatal(err)
		}
		l, _, _ := peft.Evaluate(ctx, m, task)
		fixed = append(fixed, l)
		if b < teacherR {
			continue
		}
		a := ls[0]
		bv := mat.DenseCopyOf(a.B.Value)
		for bb := 1; bb <= teacherR; bb++ {
			for j := bb; j < teacherR; j++ {
				for i := 0; i < teacherD; i++ {
					a.B.Value.Set(i, j, 0)
				}
			}
			l, _, _ := peft.Evaluate(ctx, m, task)
			trunc = append(trunc, l)
			a.B.Value.Copy(bv)
		}
	}
	return fixed, trunc
}

// TestNested trains DyLoRA (r = 6) in its four modes on a teacher task of
// rank 6, and LoRA at every fixed rank, and checks the paper's claim.
//
//   - Every mode's loss falls with the rank b.
//   - A LoRA trained at r = 6 and truncated to b < 6 is much worse than
//     LoRA trained at rank b (by ≥ 0.15; measured 0.17 to 0.52), and than
//     DyLoRA at rank b.
//   - With FixedScale, DyLoRA at every b is within 0.02 of LoRA trained at
//     rank b (measured ≤ 0.005, frozen or not).
//   - With the paper's α/b, DyLoRA is nested but cannot match the
//     fixed-rank LoRAs at every b (see DyLoRA): measured, unfrozen, 0.96,
//     0.58, 0.40, 0.28, 0.18, 0.14 against LoRA's 0.89, 0.45, 0.22, 0.09,
//     0.02, 0.00 and the truncated LoRA's 1.10, 0.97, 0.69, 0.44, 0.19, 0.
//     The test asserts only that it beats the truncated LoRA by 0.05 at
//     b ≤ 4, where it does by ≥ 0.07 frozen, ≥ 0.15 unfrozen.
func TestNested(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 10 adapters")
	}
	task := peft.NewTeacherTask(teacherD, teacherK, teacherSigma, 512, 1)
	fixed, trunc := loraLosses(t, task)
	t.Logf("LoRA trained at rank b:      %.4f", fixed)
	t.Logf("LoRA r = 6 truncated to b:   %.4f", trunc)
	for b := 1; b < teacherR; b++ {
		if trunc[b-1]-fixed[b-1] < 0.15 {
			t.Errorf("rank %d: truncated LoRA's loss %.4f is not much above the rank-%d LoRA's %.4f", b, trunc[b-1], b, fixed[b-1])
		}
	}
	for _, mode := range []struct {
		name          string
		frozen, fixed bool
	}{{"α/b", false, false}, {"α/b frozen", true, false}, {"α/r", false, true}, {"α/r frozen", true, true}} {
		dy := trainDyLoRA(t, task, mode.frozen, mode.fixed)
		t.Logf("DyLoRA %-11s by rank b: %.4f", mode.name, dy)
		for b := 2; b <= teacherR; b++ {
			if dy[b-1] >= dy[b-2] {
				t.Errorf("DyLoRA %s: loss at rank %d (%.4f) is not below rank %d's (%.4f)", mode.name, b, dy[b-1], b-1, dy[b-2])
			}
		}
		for b := 1; b <= teacherR; b++ {
			switch {
			case mode.fixed && math.Abs(dy[b-1]-fixed[b-1]) > 0.02:
				t.Errorf("DyLoRA %s at rank %d: loss %.4f, LoRA trained at rank %d %.4f: want within 0.02", mode.name, b, dy[b-1], b, fixed[b-1])
			case (mode.fixed && b < teacherR || b <= 4) && trunc[b-1]-dy[b-1] < 0.05:
				t.Errorf("DyLoRA %s at rank %d: loss %.4f, not well below the truncated LoRA's %.4f", mode.name, b, dy[b-1], trunc[b-1])
			}
		}
	}
}

// TestErrors checks LossByRank on a model without DyLoRA, SetRank out of
// range, and a bad dropout naming the module and value.
func TestErrors(t *testing.T) {
	task := peft.NewTeacherTask(4, 3, []float64{1}, 8, 1)
	if _, err := dylora.LossByRank(context.Background(), task.Model(), task); err == nil || !strings.Contains(err.Error(), "proj") {
		t.Errorf("LossByRank without DyLoRA: error %v, want one naming the modules", err)
	}
	c, err := dylora.Add(newModel(), dylora.Config{R: 2, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := peft.Maybe(func() { c.SetRank(3) }); err == nil || !strings.Contains(err.Error(), "3") {
		t.Errorf("SetRank(3) at r = 2: %v, want a panic naming 3", err)
	}
	_, err = dylora.Add(newModel(), dylora.Config{R: 2, Dropout: 1.5, Targets: []string{"b"}})
	if e := adaptertest.ErrorMentions(err, "on b:", "Dropout", "1.5"); e != nil {
		t.Error(e)
	}
}
