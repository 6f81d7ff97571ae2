package dsclora_test

import (
	"context"
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dsclora"
)

// ExampleDistill is the notebook's DSCLoRA lesson in small: a student
// super-resolution network pretrained on digits 0–4 is adapted to 5–9 by
// ConvLoRA on its body and upsampler convolutions, trained under the
// reconstruction, teacher-output and spatial-affinity losses.
func ExampleDistill() {
	ctx := context.Background()
	shifted := peft.DigitsSR(0.2, 1, 5, 6, 7, 8, 9)
	teacher, _, err := peft.PretrainSR(ctx, peft.DigitsSR(0.2, 1), 16, 2, 300, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	student, _, err := peft.PretrainSR(ctx, peft.DigitsSR(0.2, 1, 0, 1, 2, 3, 4), 8, 2, 300, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	before, _ := student.PSNROn(ctx, shifted)
	if _, err := dsclora.Add(student, dsclora.Config{R: 2, Alpha: 4, Targets: []string{"body.0", "body.1", "up"}, Seed: 3}); err != nil {
		fmt.Println(err)
		return
	}
	n, total, _ := peft.TrainableParams(student)
	cfg := dsclora.DefaultDistill(peft.TrainConfig{Steps: 100, BatchSize: 32, LR: 1e-2, MinLR: 1e-4, Seed: 4})
	if _, err := dsclora.Distill(ctx, student, teacher, shifted.Subset(100), cfg); err != nil {
		fmt.Println(err)
		return
	}
	after, _ := student.PSNROn(ctx, shifted)
	fmt.Printf("trainable %d of %d parameters\n", n, total)
	fmt.Printf("PSNR on digits 5–9 rises by more than 1 dB: %v\n", after > before+1)
	// Output:
	// trainable 792 of 2332 parameters
	// PSNR on digits 5–9 rises by more than 1 dB: true
}
