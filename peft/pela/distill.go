package pela

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// DistillConfig configures Distill. The loss of a batch is
//
//	TaskWeight·(the student's own loss)
//	  + KDAlpha·mean_l MSE(f_l^s, f_l^t)      feature distillation
//	  + KDBeta·MSE(z^s, z^t)                  logit distillation
//
// with f_l the output of compressed layer l and z the output of the
// model's last module (the logits of the MLP or the GPT), in the student
// (s) and in the teacher (t), each model running its own forward pass on
// the batch. If the three weights are all 0, the reference's are used:
// TaskWeight 1, KDAlpha 1, KDBeta 0 (DeiT/engine.py, kd_alpha and
// kd_beta; its script trains DeiT's own loss alongside).
type DistillConfig struct {
	Train      peft.TrainConfig // steps, batch size, learning rate, … of the run
	TaskWeight float64          // weight of the student's own loss, ≥ 0
	KDAlpha    float64          // weight of the feature distillation, ≥ 0
	KDBeta     float64          // weight of the logit distillation, ≥ 0
}

// Distill trains the PELA factors of student (the compressed model, Add
// done) on data with DistillConfig's loss, the paper's intermediate
// pre-training, and returns the run's history (its EvalLoss is the
// distillation loss on the evaluation set, its EvalMetric the student's
// metric). The teacher is the original model: pass nil to use the
// student's own frozen weights W, which PELA keeps (the adapters'
// base output), or a separate model whose modules have the student's
// names and shapes. Features are the compressed layers' outputs: DeiT's
// reference distils the transformer blocks' outputs, which gopeft's Model
// interface does not expose.
//
// The "weight perturbation regularization" of the paper is not
// implemented: the reference code computes it (inf_norm) but its weight
// defaults to 0 and the training scripts do not set it.
//
// A separate teacher gets, for the run, a recording adapter on each
// module Distill reads (removed when it returns, the active adapter
// restored); it is an error if one of those modules has an adapter merged.
// Cancelling ctx stops the run as peft.Train does.
func Distill(ctx context.Context, student, teacher peft.Model, data peft.Dataset, cfg DistillConfig) (*peft.History, error) {
	if cfg.TaskWeight == 0 && cfg.KDAlpha == 0 && cfg.KDBeta == 0 {
		cfg.TaskWeight, cfg.KDAlpha = 1, 1
	}
	for _, w := range []struct {
		name string
		v    float64
	}{{"TaskWeight", cfg.TaskWeight}, {"KDAlpha", cfg.KDAlpha}, {"KDBeta", cfg.KDBeta}} {
		if !(w.v >= 0) || math.IsInf(w.v, 0) {
			return nil, fmt.Errorf("peft: PELA Distill: DistillConfig.%s = %v; want a finite weight ≥ 0", w.name, w.v)
		}
	}
	ps := Of(student)
	if len(ps) == 0 {
		return nil, fmt.Errorf("peft: PELA Distill: the student has no active PELA adapter (compress it with pela.Add first)")
	}
	mods := student.Modules()
	last := mods[len(mods)-1].Name
	names := make([]string, 0, len(ps)+1)
	for _, p := range ps {
		names = append(names, p.module)
	}
	dm := &distillModel{student: student, teacher: teacher, cfg: cfg, ps: ps, features: names, last: last}
	// The student's outputs: its PELA adapters record themselves; the last
	// module, if not compressed, gets a probe.
	needLast := cfg.KDBeta > 0
	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()
	for _, p := range ps {
		p.recording = true
		undo = append(undo, func() { p.recording, p.last, p.teach = false, nil, false })
	}
	dm.sRec = map[string]func() *peft.Tensor{}
	for _, p := range ps {
		dm.sRec[p.module] = func() *peft.Tensor { return p.last }
	}
	if _, ok := dm.sRec[last]; needLast && !ok {
		get, u, err := probeOn(student, last)
		if err != nil {
			return nil, err
		}
		undo = append(undo, u)
		dm.sRec[last] = get
	}
	dm.tRec = map[string]func() *peft.Tensor{}
	if teacher == nil {
		for k, v := range dm.sRec {
			dm.tRec[k] = v
		}
	} else {
		want := names
		if needLast {
			want = append(append([]string(nil), names...), last)
		}
		for _, name := range want {
			sl, _ := peft.Module(student, name)
			tl, err := peft.Module(teacher, name)
			if err != nil {
				return nil, fmt.Errorf("peft: PELA Distill: the teacher lacks the student's module: %w", err)
			}
			sd, sk := sl.Dims()
			if td, tk := tl.Dims(); td != sd || tk != sk {
				return nil, fmt.Errorf("peft: PELA Distill: teacher's %s has W %s, the student's %s", name, peft.ShapeOf(td, tk), peft.ShapeOf(sd, sk))
			}
			if _, ok := dm.tRec[name]; ok {
				continue
			}
			get, u, err := probeOn(teacher, name)
			if err != nil {
				return nil, err
			}
			undo = append(undo, u)
			dm.tRec[name] = get
		}
		teacher.SetTraining(false)
	}
	if cfg.Train.Name == "" {
		cfg.Train.Name = "PELA distillation"
	}
	return peft.Train(ctx, dm, data, cfg.Train)
}

// distillModel is the student seen by peft.Train, with Distill's loss.
type distillModel struct {
	student, teacher peft.Model
	cfg              DistillConfig
	ps               []*PELA
	features         []string                       // compressed modules, in order
	last             string                         // the last module
	sRec, tRec       map[string]func() *peft.Tensor // outputs of the last pass
}

func (m *distillModel) Modules() []*peft.Linear { return m.student.Modules() }
func (m *distillModel) Params() []*peft.Tensor  { return m.student.Params() }
func (m *distillModel) SetTraining(t bool)      { m.student.SetTraining(t) }

// Loss runs the teacher's pass, then the student's, and returns the
// weighted sum of DistillConfig.
func (m *distillModel) Loss(b peft.Batch) *peft.Tensor {
	grab := func(rec map[string]func() *peft.Tensor, detach bool) map[string]*peft.Tensor {
		out := map[string]*peft.Tensor{}
		for k, get := range rec {
			t := get()
			if t == nil {
				panic(peft.ArgError{Op: "pela.Distill", Msg: fmt.Sprintf("module %s produced no output in the forward pass", k)})
			}
			if detach {
				t = peft.Detach(t)
			}
			out[k] = t
		}
		return out
	}
	// The teacher's pass.
	if m.teacher == nil {
		for _, p := range m.ps {
			p.teach = true
		}
		m.student.Loss(b)
		for _, p := range m.ps {
			p.teach = false
		}
	} else {
		m.teacher.Loss(b)
	}
	tf := grab(m.tRec, true)
	// The student's pass.
	loss := peft.Scale(m.student.Loss(b), m.cfg.TaskWeight)
	sf := grab(m.sRec, false)
	if m.cfg.KDAlpha > 0 {
		var fm *peft.Tensor
		for _, name := range m.features {
			e := mse(sf[name], tf[name])
			if fm == nil {
				fm = e
			} else {
				fm = peft.Add(fm, e)
			}
		}
		loss = peft.Add(loss, peft.Scale(fm, m.cfg.KDAlpha/float64(len(m.features))))
	}
	if m.cfg.KDBeta > 0 {
		loss = peft.Add(loss, peft.Scale(mse(sf[m.last], tf[m.last]), m.cfg.KDBeta))
	}
	return loss
}

// Metric returns the student's metric on b, NaN if it has none.
func (m *distillModel) Metric(b peft.Batch) float64 {
	if mm, ok := m.student.(peft.Metricer); ok {
		return mm.Metric(b)
	}
	return math.NaN()
}

// MetricName returns the student's metric's name.
func (m *distillModel) MetricName() string {
	if mm, ok := m.student.(peft.Metricer); ok {
		return mm.MetricName()
	}
	return ""
}

// mse returns the mean of (a − b)² over the entries.
func mse(a, b *peft.Tensor) *peft.Tensor {
	d := peft.Sub(a, b)
	return peft.Mean(peft.Mul(d, d))
}

// probeName is the name of the recording adapters Distill attaches.
const probeName = "pela-distill-probe"

// probe is a recording adapter: it gives the output of the adapter it
// wraps (or the base output) and keeps it.
type probe struct {
	inner peft.Adapter
	last  *peft.Tensor
}

func (p *probe) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	out := base
	if p.inner != nil && !l.Disabled {
		out = p.inner.Forward(l, x, base)
	}
	p.last = out
	return out
}
func (p *probe) Params() []*peft.Tensor { return nil }
func (p *probe) Rank() int              { return 0 }
func (p *probe) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if p.inner != nil {
		return p.inner.MergedWeight(w0)
	}
	return mat.DenseCopyOf(w0)
}

// probeOn attaches a probe to m's module name and returns its reader and
// the undo, which detaches it and restores the active adapter.
func probeOn(m peft.Model, name string) (func() *peft.Tensor, func(), error) {
	l, err := peft.Module(m, name)
	if err != nil {
		return nil, nil, err
	}
	if l.Merged() != "" {
		return nil, nil, fmt.Errorf("peft: PELA Distill: %s has adapter %q merged; unmerge it to distil", name, l.Merged())
	}
	active, disabled := l.Active, l.Disabled
	p := &probe{inner: l.ActiveAdapter()}
	if err := l.Attach(probeName, p); err != nil {
		return nil, nil, fmt.Errorf("peft: PELA Distill: %w", err)
	}
	l.Disabled = false // the probe passes the base output through when the inner one is off
	if disabled {
		p.inner = nil
	}
	undo := func() {
		_ = l.Detach(probeName)
		l.Active, l.Disabled = active, disabled
	}
	return func() *peft.Tensor { return p.last }, undo, nil
}
