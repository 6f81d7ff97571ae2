package peft

import (
	"context"
	"testing"
)

// ctxHook records the contexts Train gives it.
type ctxHook struct{ got []context.Context }

func (h *ctxHook) Regularizer(int) *Tensor        { return nil }
func (h *ctxHook) AfterBackward(int)              {}
func (h *ctxHook) AfterStep(int) error            { return nil }
func (h *ctxHook) SetContext(ctx context.Context) { h.got = append(h.got, ctx) }

// Train gives a hook that takes a context the run's, then Background.
func TestTrainGivesHooksItsContext(t *testing.T) {
	task := NewTeacherTask(4, 3, []float64{1}, 16, 1)
	h := &ctxHook{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := Train(ctx, task.Model(), task, TrainConfig{Steps: 2, BatchSize: 4, LR: 1e-2, Seed: 1, Hooks: []Hook{h}}); err != nil {
		t.Fatal(err)
	}
	if len(h.got) != 2 || h.got[0] != ctx || h.got[1] != context.Background() {
		t.Fatalf("hook got contexts %v, want the run's then Background", h.got)
	}
}
