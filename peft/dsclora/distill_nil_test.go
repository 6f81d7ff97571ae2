package dsclora_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dsclora"
)

// A nil teacher is plain ConvLoRA training when λ₂ = λ₃ = 0, and an error
// naming the weights otherwise (it panicked before).
func TestDistillNilTeacher(t *testing.T) {
	data := peft.DigitsSR(0.2, 1, 5, 6)
	student := peft.NewSRNet(4, 2, 3)
	if _, err := dsclora.Add(student, dsclora.Config{R: 1, Alpha: 2, Targets: []string{"body.0"}}); err != nil {
		t.Fatal(err)
	}
	train := peft.TrainConfig{Steps: 3, BatchSize: 4, LR: 1e-3, Seed: 1}
	if _, err := dsclora.Distill(context.Background(), student, nil, data, dsclora.DistillConfig{Rec: 1, Train: train}); err != nil {
		t.Fatalf("plain ConvLoRA with no teacher: %v", err)
	}
	_, err := dsclora.Distill(context.Background(), student, nil, data, dsclora.DistillConfig{Rec: 1, TS: 1, Train: train})
	if err == nil || !strings.Contains(err.Error(), "no teacher") || !strings.Contains(err.Error(), "TS = 1") {
		t.Fatalf("TS with no teacher: %v, want an error naming TS", err)
	}
}
