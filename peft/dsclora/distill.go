package dsclora

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// AffinityEps is the ε added to each position's feature norm before it is
// normalized, so that an all-zero channel vector (a dead ReLU position)
// normalizes to zero instead of dividing by zero.
const AffinityEps = 1e-6

// Affinity returns the spatial affinity matrices of the feature maps f
// (n × C·HW, NCHW order with C channels): for each image, with F (HW × C)
// its positions' channel vectors and F̂ those rows divided by their norms
// (plus AffinityEps),
//
//	A = F̂·F̂ᵀ    (HW × HW), A_pq ≈ the cosine similarity of positions p and q
//
// stacked image after image → (n·HW × HW). It does not depend on C, so a
// student's and a teacher's of different widths compare directly, and it
// barely changes under a positive rescaling of a position's vector.
func Affinity(f *peft.Tensor, C int) *peft.Tensor {
	n, m := f.Dims()
	if C < 1 || m%C != 0 {
		panic(peft.ShapeError{Op: "dsclora.Affinity", Got: fmt.Sprintf("f %s with %d channels", peft.ShapeOf(n, m), C), Want: "(n × C·HW) with C ≥ 1 dividing the columns"})
	}
	hw := m / C
	fp := peft.NCHWToNHWC(f, C)                                                                       // (n·HW × C), one row per position
	norm := peft.AddRow(peft.RowNorms(fp), peft.NewConst(mat.NewDense(1, 1, []float64{AffinityEps}))) // (n·HW × 1)
	ones := mat.NewDense(n*hw, 1, nil)
	for i := 0; i < n*hw; i++ {
		ones.Set(i, 0, 1)
	}
	fhat := peft.MulCol(fp, peft.Div(peft.NewConst(ones), norm)) // (n·HW × C), rows of norm < 1
	as := make([]*peft.Tensor, n)
	for b := range as {
		fb := peft.Slice(fhat, b*hw, (b+1)*hw, 0, C) // (HW × C)
		as[b] = peft.MatMulT(fb, fb)                 // (HW × HW)
	}
	return peft.ConcatRows(as...) // (n·HW × HW)
}

// AffinityLoss returns L_AD for one pair of feature maps, the student's fs
// (n × Cs·HW) and the teacher's ft (n × Ct·HW) on the same HW grid:
//
//	L_AD = (1/(n·HW²)) Σ_images ‖A(fs) − A(ft)‖²_F
//
// the mean squared difference of their affinities (see Affinity). No
// gradient flows into ft: the teacher is the fixed target. It is 0 when
// the two maps have the same affinity, in particular when fs = ft.
//
// The form is gopeft's choice: the paper says only that L_AD transfers the
// second-order statistics of the feature maps through spatial affinity,
// after FAKD (He et al., 2020, "FAKD: Feature-Affinity Based Knowledge
// Distillation for Efficient Image Super-Resolution"), which normalizes
// each position's channel vector and compares HW×HW Gram matrices; the
// normalization and the norm of the difference DSCLoRA uses are not
// confirmed (squared here, to match the MSE of the other two terms).
func AffinityLoss(fs *peft.Tensor, cs int, ft *peft.Tensor, ct int) *peft.Tensor {
	ns, ms := fs.Dims()
	nt, mt := ft.Dims()
	if cs < 1 || ct < 1 || ms%cs != 0 || mt%ct != 0 || ns != nt || ms/cs != mt/ct {
		panic(peft.ShapeError{Op: "dsclora.AffinityLoss", Got: fmt.Sprintf("student %s with %d channels, teacher %s with %d", peft.ShapeOf(ns, ms), cs, peft.ShapeOf(nt, mt), ct),
			Want: "the same images and HW positions in both"})
	}
	target := peft.NewConst(Affinity(peft.Detach(ft), ct).Value)
	return peft.MSE(Affinity(fs, cs), target)
}

// DistillConfig configures Distill: the weights of the three losses, the
// feature maps L_AD compares, and the training run.
type DistillConfig struct {
	Rec float64 // λ₁, weight of L_rec = MSE(student, HR)
	TS  float64 // λ₂, weight of L_TS = MSE(student, teacher's output)
	AD  float64 // λ₃, weight of L_AD, the mean over Pairs of AffinityLoss
	// Pairs lists the (student, teacher) body feature maps L_AD compares,
	// by index into SRNet.ForwardFeatures' feats; nil means the last of
	// each.
	Pairs [][2]int
	Train peft.TrainConfig // the run (steps, batch, rate, …), as peft.Train's
}

// DefaultDistill returns λ₁ = λ₂ = 1, λ₃ = 0.1 and the last feature maps
// paired, with train as the run. The paper's λs are not confirmed; these
// put the three terms on similar scales on the digits: at the start of
// adaptation L_rec and L_TS are MSEs of about 0.02–0.04, L_AD about 0.08.
func DefaultDistill(train peft.TrainConfig) DistillConfig {
	return DistillConfig{Rec: 1, TS: 1, AD: 0.1, Train: train}
}

func (cfg DistillConfig) check(student, teacher *peft.SRNet) error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"Rec", cfg.Rec}, {"TS", cfg.TS}, {"AD", cfg.AD}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("peft: dsclora.Distill: DistillConfig.%s = %v; want a finite weight ≥ 0", f.name, f.v)
		}
	}
	if cfg.Rec == 0 && cfg.TS == 0 && cfg.AD == 0 {
		return fmt.Errorf("peft: dsclora.Distill: DistillConfig.Rec, TS and AD are all 0; want at least one weight > 0")
	}
	if teacher == nil {
		if cfg.TS != 0 || cfg.AD != 0 || len(cfg.Pairs) > 0 {
			return fmt.Errorf("peft: dsclora.Distill: no teacher (nil), but DistillConfig.TS = %v, AD = %v and %d Pairs need one; "+
				"set them to 0 for plain ConvLoRA training", cfg.TS, cfg.AD, len(cfg.Pairs))
		}
		return nil
	}
	for i, p := range cfg.Pairs {
		if p[0] < 0 || p[0] >= student.Depth || p[1] < 0 || p[1] >= teacher.Depth {
			return fmt.Errorf("peft: dsclora.Distill: DistillConfig.Pairs[%d] = %v; the student has feature maps 0…%d, the teacher 0…%d", i, p, student.Depth-1, teacher.Depth-1)
		}
	}
	return nil
}

// distilled is the student as peft.Train sees it: its modules and
// parameters, with the DSCLoRA loss as its training loss. Its evaluation
// (LossAndMetric) is the student's own MSE and PSNR, so histories of runs
// with different λs compare.
type distilled struct {
	*peft.SRNet
	teacher *peft.SRNet
	cfg     DistillConfig
	pairs   [][2]int
}

// Loss returns λ₁·L_rec + λ₂·L_TS + λ₃·L_AD on b.
func (d *distilled) Loss(b peft.Batch) *peft.Tensor {
	x := peft.NewConst(b.X)
	out, fs := d.SRNet.ForwardFeatures(x)
	var loss *peft.Tensor
	add := func(w float64, t *peft.Tensor) {
		if w == 0 {
			return
		}
		t = peft.Scale(t, w)
		if loss == nil {
			loss = t
		} else {
			loss = peft.Add(loss, t)
		}
	}
	add(d.cfg.Rec, peft.MSE(out, peft.NewConst(b.Y)))
	if d.cfg.TS == 0 && d.cfg.AD == 0 {
		return loss
	}
	tout, ft := d.teacher.ForwardFeatures(x)
	add(d.cfg.TS, peft.MSE(out, peft.NewConst(tout.Value)))
	if d.cfg.AD != 0 {
		for _, p := range d.pairs {
			add(d.cfg.AD/float64(len(d.pairs)), AffinityLoss(fs[p[0]], d.SRNet.Width, ft[p[1]], d.teacher.Width))
		}
	}
	return loss
}

// Distill trains the trainable parameters of student (its ConvLoRA
// adapters, after Add) on data with DSCLoRA's loss
//
//	L = λ₁·MSE(student(x), HR) + λ₂·MSE(student(x), teacher(x)) + λ₃·L_AD
//
// L_AD the mean over cfg.Pairs of AffinityLoss between the student's and
// the teacher's feature maps, the teacher frozen (no gradient reaches it,
// whether or not its parameters are trainable). It runs peft.Train with
// cfg.Train, so ctx, schedules, evaluation and callbacks behave as there;
// the history's evaluation loss and metric are the student's MSE and PSNR
// on data's evaluation images. λ₂ = λ₃ = 0 is plain ConvLoRA training,
// for which teacher may be nil.
func Distill(ctx context.Context, student, teacher *peft.SRNet, data peft.Dataset, cfg DistillConfig) (*peft.History, error) {
	if err := cfg.check(student, teacher); err != nil {
		return nil, err
	}
	pairs := cfg.Pairs
	if pairs == nil && teacher != nil {
		pairs = [][2]int{{student.Depth - 1, teacher.Depth - 1}}
	}
	if teacher != nil {
		teacher.SetTraining(false)
	}
	return peft.Train(ctx, &distilled{SRNet: student, teacher: teacher, cfg: cfg, pairs: pairs}, data, cfg.Train)
}
