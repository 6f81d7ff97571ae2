package snella_test

import (
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/snella"
	"gonum.org/v1/gonum/mat"
)

// allocFor returns SNELLA adapters on a chain of layers of the given
// widths at initial sparsity s0, and their allocator for cfg.
func allocFor(t *testing.T, widths []int, s0 float64, cfg snella.AllocatorConfig) ([]*snella.SNELLA, *snella.Allocator) {
	t.Helper()
	names := make([]string, len(widths)-1)
	for i := range names {
		names[i] = string(rune('a' + i))
	}
	m := adaptertest.NewChain(1, names, widths...)
	as, err := snella.Add(m, snella.Config{Q: 2, Sparsity: s0, Targets: names, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	al, err := snella.NewAllocator(as, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return as, al
}

// TestSchedule checks the cubic budget on known values (one 10×10 layer,
// b₀ = 100, b_T = ⌈0.7·100⌉ = 70, T = 10: b(1) = ⌊70 + 30·0.9³⌋ = 91,
// b(5) = ⌊70 + 30·0.5³⌋ = 73), and, with warm-ups and a mask interval that
// does not divide T − t_f, that it is monotone (down, or up when the
// target is denser than the start), flat in the warm-ups, allocates every
// ΔT steps and always at T − t_f, and ends at the target.
func TestSchedule(t *testing.T) {
	_, al := allocFor(t, []int{10, 10}, 0, snella.AllocatorConfig{TotalStep: 10})
	if al.InitialBudget() != 100 || al.TargetBudget() != 70 {
		t.Fatalf("b₀ = %d, b_T = %d; want 100, 70", al.InitialBudget(), al.TargetBudget())
	}
	for _, c := range []struct{ t, b int }{{1, 91}, {5, 73}, {9, 70}, {10, 70}} {
		if b, alloc := al.Budget(c.t); b != c.b || !alloc {
			t.Errorf("b(%d) = %d (allocate %v), want %d (true)", c.t, b, alloc, c.b)
		}
	}
	for _, c := range []struct {
		s0, sT float64
		down   bool
	}{{0, 0.3, true}, {0.2, 0.9, true}, {0.8, 0.3, false}} {
		const T, ti, tf, dT = 40, 3, 5, 4
		_, al := allocFor(t, []int{5, 4, 6}, c.s0, snella.AllocatorConfig{TargetRatio: c.sT, TotalStep: T, InitWarmup: ti, FinalWarmup: tf, MaskInterval: dT})
		total := 5*4 + 4*6
		if want := snella.KeptCount(c.s0, 20) + snella.KeptCount(c.s0, 24); al.InitialBudget() != want {
			t.Errorf("s₀ = %v: b₀ = %d, want %d", c.s0, al.InitialBudget(), want)
		}
		if want := snella.KeptCount(c.sT, total); al.TargetBudget() != want {
			t.Errorf("s_T = %v: b_T = %d, want %d", c.sT, al.TargetBudget(), want)
		}
		prev := al.InitialBudget()
		var bs []int
		for step := 1; step <= T+3; step++ {
			b, alloc := al.Budget(step)
			bs = append(bs, b)
			if (c.down && b > prev) || (!c.down && b < prev) {
				t.Errorf("s₀ = %v, s_T = %v: b(%d) = %d after %d: not monotone", c.s0, c.sT, step, b, prev)
			}
			prev = b
			wantAlloc := step > ti && step < T-tf && step%dT == 0 || step == T-tf
			if alloc != wantAlloc {
				t.Errorf("s₀ = %v: step %d allocates %v, want %v", c.s0, step, alloc, wantAlloc)
			}
			if step <= ti && b != al.InitialBudget() || step >= T-tf && b != al.TargetBudget() {
				t.Errorf("s₀ = %v: b(%d) = %d in a warm-up", c.s0, step, b)
			}
		}
		t.Logf("s₀ = %v → s_T = %v: b(t) = %v", c.s0, c.sT, bs)
	}
}

// TestShare checks the integer split of a budget on known answers.
func TestShare(t *testing.T) {
	for _, c := range []struct {
		b      int
		scores []float64
		caps   []int
		want   []int
	}{
		{20, []float64{4, 1}, []int{20, 20}, []int{16, 4}},
		{22, []float64{4, 1}, []int{20, 20}, []int{18, 4}},           // 17.6, 4.4
		{30, []float64{9, 1}, []int{20, 20}, []int{20, 10}},          // 27 capped at 20
		{7, []float64{0, 0}, []int{5, 5}, []int{4, 3}},               // equal shares, tie to the first
		{10, []float64{1, 1, 1}, []int{3, 30, 30}, []int{3, 4, 3}},   // 3 capped, 3.5 each
		{5, []float64{0, 2, 0}, []int{9, 9, 9}, []int{0, 5, 0}},      // zero scores get nothing
		{44, []float64{1, 2, 3}, []int{20, 24, 6}, []int{14, 24, 6}}, // 22 capped at 6, then 25.3 at 24, 14 left
	} {
		got := snella.Share(c.b, c.scores, c.caps)
		sum := 0
		for _, v := range got {
			sum += v
		}
		if !reflect.DeepEqual(got, c.want) || sum != c.b {
			t.Errorf("share(%d, %v, caps %v) = %v, want %v", c.b, c.scores, c.caps, got, c.want)
		}
	}
}

// TestAllocatorCompetition builds two identical 4×4 layers and gives
// layer a the gradient 2·w and layer b the gradient w: every entry's
// importance I = c·w² then makes Ī·Ū ∝ c², so layer a scores 4 times
// layer b, and the budgets b(1) = ⌊16 + 16/8⌋ = 18 and b(2) = 16 split
// 4 : 1 by largest remainder, [14, 4] and then [13, 3]. Each mask keeps
// its layer's largest |ΔW′|, and the allocation is fixed after T.
func TestAllocatorCompetition(t *testing.T) {
	as, al := allocFor(t, []int{4, 4, 4}, 0, snella.AllocatorConfig{TargetRatio: 0.5, TotalStep: 2})
	as[1].A.Value.Copy(as[0].A.Value)
	as[1].B.Value.Copy(as[0].B.Value)
	setGrads := func() {
		for i, a := range as {
			for _, p := range []*peft.Tensor{a.A, a.B} {
				var g mat.Dense
				g.Scale(float64(2-i), p.Value)
				p.Grad = &g
			}
		}
	}
	for step, want := range [][]int{{14, 4}, {13, 3}, {13, 3}} {
		setGrads()
		al.AfterBackward(step + 1)
		if s := al.Scores(); step == 0 && math.Abs(s[0]/s[1]-4) > 1e-12 {
			t.Errorf("scores %v: ratio %v, want 4", s, s[0]/s[1])
		}
		if err := al.AfterStep(step + 1); err != nil {
			t.Fatal(err)
		}
		if got := al.Kept(); !reflect.DeepEqual(got, want) {
			t.Errorf("step %d: κ = %v, want %v", step+1, got, want)
		}
		for i, a := range as {
			checkTop(t, a.Module, a.Dense(), a.Mask(), want[i])
		}
	}
	tr := al.Trace()
	if !reflect.DeepEqual(tr.Steps, []int{1, 2}) || !reflect.DeepEqual(tr.Budget, []int{18, 16}) || !reflect.DeepEqual(tr.Ranks, [][]int{{14, 13}, {4, 3}}) {
		t.Errorf("trace %+v", tr)
	}
}

func TestAllocatorBadConfig(t *testing.T) {
	as, _ := allocFor(t, []int{4, 4}, 0, snella.AllocatorConfig{TotalStep: 2})
	for _, c := range []struct {
		cfg  snella.AllocatorConfig
		want []string
	}{
		{snella.AllocatorConfig{}, []string{"TotalStep = 0"}},
		{snella.AllocatorConfig{TotalStep: 5, TargetRatio: 1.5}, []string{"TargetRatio = 1.5"}},
		{snella.AllocatorConfig{TotalStep: 5, InitWarmup: 3, FinalWarmup: 2}, []string{"InitWarmup = 3", "FinalWarmup = 2", "TotalStep = 5"}},
		{snella.AllocatorConfig{TotalStep: 5, Beta2: 1}, []string{"Beta2 = 1"}},
		{snella.AllocatorConfig{TotalStep: 5, MaskInterval: -1}, []string{"MaskInterval = -1"}},
	} {
		_, err := snella.NewAllocator(as, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
	}
}

// TestTrainTeacher trains SNELLA (q = 8, the allocator taking the layer
// from all 256 entries to ⌈0.7·256⌉ = 180) on a 16×16 teacher task whose
// ΔW* has rank 4, and checks that the evaluation loss falls by 10× and
// that the final mask keeps 180 entries.
func TestTrainTeacher(t *testing.T) {
	task := peft.NewTeacherTask(16, 16, []float64{2, 1.5, 1, 0.5}, 128, 1)
	m := task.Model()
	as, err := snella.Add(m, snella.Config{Q: 8, Targets: []string{"proj"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	const steps = 300
	al, err := snella.NewAllocator(as, snella.AllocatorConfig{TotalStep: steps})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, _, err := peft.Evaluate(ctx, m, task)
	if err != nil {
		t.Fatal(err)
	}
	h, err := peft.Train(ctx, m, task, peft.TrainConfig{Steps: steps, BatchSize: 16, LR: 2e-2, Schedule: "constant", Hooks: []peft.Hook{al}, EvalEvery: steps, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	after := h.EvalLoss[len(h.EvalLoss)-1]
	t.Logf("eval loss %.4g → %.4g; recovery error %.3f; κ = %d", before, after, task.RecoveryError(m), as[0].Kept())
	if !(after < before/10) {
		t.Errorf("eval loss %.4g → %.4g: want a 10× fall", before, after)
	}
	if as[0].Kept() != 180 {
		t.Errorf("κ = %d after training, want 180", as[0].Kept())
	}
	checkTop(t, "after training", as[0].Dense(), as[0].Mask(), 180)
}
