package peft_test

import (
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// TestUpsampleMatrix checks the fixed upsamplers on known answers: nearest
// repeats pixels, bilinear of the 1×2 image [0 1] is PyTorch's
// [0 0.25 0.75 1] in each row, and every mode's weights for one output
// pixel sum to 1 (a constant image stays constant).
func TestUpsampleMatrix(t *testing.T) {
	x := mat.NewDense(1, 2, []float64{0, 1})
	for mode, want := range map[string][]float64{
		"nearest":  {0, 0, 1, 1, 0, 0, 1, 1},
		"bilinear": {0, 0.25, 0.75, 1, 0, 0.25, 0.75, 1},
	} {
		var up mat.Dense
		up.Mul(x, peft.UpsampleMatrix(1, 2, 2, mode))
		for i, w := range want {
			if math.Abs(up.At(0, i)-w) > 1e-15 {
				t.Errorf("%s of [0 1]: got %v, want %v", mode, up.RawRowView(0), want)
				break
			}
		}
	}
	for _, mode := range []string{"nearest", "bilinear", "bicubic"} {
		u := peft.UpsampleMatrix(4, 3, 2, mode)
		_, cols := u.Dims()
		for j := 0; j < cols; j++ {
			if s := mat.Sum(u.ColView(j)); math.Abs(s-1) > 1e-14 {
				t.Errorf("%s: weights of output pixel %d sum to %g, want 1", mode, j, s)
			}
		}
	}
	if err := peft.Maybe(func() { peft.UpsampleMatrix(4, 4, 2, "lanczos") }); err == nil {
		t.Error("mode lanczos: no error")
	}
}

// TestAvgPoolAndPSNR checks AvgPool and PSNR on known answers.
func TestAvgPoolAndPSNR(t *testing.T) {
	x := mat.NewDense(1, 16, []float64{
		1, 3, 0, 0,
		5, 7, 0, 4,
		1, 1, 2, 2,
		1, 1, 2, 2})
	if got, want := peft.AvgPool(x, 4, 4, 2).RawRowView(0), []float64{4, 1, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("AvgPool: got %v, want %v", got, want)
	}
	target := mat.NewDense(2, 3, []float64{0.1, 0.5, 0.8, 0.2, 0.3, 0.4})
	pred := mat.NewDense(2, 3, nil)
	pred.Apply(func(i, _ int, v float64) float64 { return v + 0.1*float64(1-2*i) }, target) // ±0.1: MSE 0.01
	if got := peft.PSNR(pred, target); math.Abs(got-20) > 1e-9 {
		t.Errorf("PSNR with every pixel off by 0.1 = %g dB, want 20", got)
	}
	pred.Set(0, 0, -5) // clamped to 0: the error stays 0.1 there
	if got := peft.PSNR(pred, target); math.Abs(got-20) > 1e-9 {
		t.Errorf("PSNR after clamping = %g dB, want 20", got)
	}
}

// TestDigitsSR checks the data: shapes, LR = 2×2 pools of HR, values in
// [0, 1], and that the class subsets split the same held-out rows.
func TestDigitsSR(t *testing.T) {
	all, lo, hi := peft.DigitsSR(0.2, 1), peft.DigitsSR(0.2, 1, 0, 1, 2, 3, 4), peft.DigitsSR(0.2, 1, 5, 6, 7, 8, 9)
	n, dx := all.X.Dims()
	_, dy := all.Y.Dims()
	m, _ := all.EvalX.Dims()
	if dx != 16 || dy != 64 || n+m != 1797 || m != 359 {
		t.Errorf("DigitsSR: X (%d×%d), Y (·×%d), %d eval rows; want 16 and 64 columns, 359 of 1797 held out", n, dx, dy, m)
	}
	if !mat.Equal(all.X, peft.AvgPool(all.Y, 8, 8, 2)) {
		t.Error("LR images are not the 2×2 pools of the HR images")
	}
	if mat.Min(all.Y) < 0 || mat.Max(all.Y) > 1 {
		t.Errorf("HR values in [%g, %g], want within [0, 1]", mat.Min(all.Y), mat.Max(all.Y))
	}
	ml, _ := lo.EvalX.Dims()
	mh, _ := hi.EvalX.Dims()
	nl, _ := lo.X.Dims()
	nh, _ := hi.X.Dims()
	if ml+mh != m || nl+nh != n {
		t.Errorf("0–4 and 5–9 hold %d+%d training and %d+%d eval rows; want %d and %d", nl, nh, ml, mh, n, m)
	}
}

// TestSRNet checks the network's modules (conv Linears with their
// kernels) and that a short pretraining beats bicubic upsampling by more
// than 1 dB on held-out digits (measured: bicubic 13.5 dB, the network 16.7).
func TestSRNet(t *testing.T) {
	m := peft.NewSRNet(4, 2, 1)
	if got := peft.ModuleNames(m); !reflect.DeepEqual(got, []string{"head", "body.0", "body.1", "up"}) {
		t.Errorf("modules %v", got)
	}
	if k := m.Up.Linear.Kernel; !reflect.DeepEqual(k, []int{4, 4, 3, 3}) {
		t.Errorf("up's Kernel %v, want [4 4 3 3]", k)
	}
	data := peft.DigitsSR(0.2, 1)
	net, h, err := peft.PretrainSR(context.Background(), data, 8, 2, 400, 1)
	if err != nil {
		t.Fatal(err)
	}
	bicubic := data.UpsamplePSNR("bicubic")
	got := h.EvalMetric[len(h.EvalMetric)-1]
	t.Logf("PSNR: bicubic %.2f dB, nearest %.2f, bilinear %.2f, SRNet width 8 after 400 steps %.2f", bicubic, data.UpsamplePSNR("nearest"), data.UpsamplePSNR("bilinear"), got)
	if got < bicubic+1 {
		t.Errorf("pretrained SRNet PSNR %.2f dB, want ≥ bicubic %.2f + 1", got, bicubic)
	}
	if p, _ := net.PSNROn(context.Background(), data); p != got {
		t.Errorf("PSNROn %g differs from the history's last %g", p, got)
	}
}
