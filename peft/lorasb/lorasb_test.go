package lorasb_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lorasb"
	"gonum.org/v1/gonum/mat"
)

// regression is a Dataset of fixed rows (X, Y), for models whose Loss reads
// X and Y (adaptertest.Chain, peft.LinearModel). With full set, Sample
// returns every row whatever the size: each minibatch gradient is then
// the full-data gradient.
type regression struct {
	X, Y *mat.Dense
	full bool
}

func (d regression) Sample(rng *rand.Rand, size int) peft.Batch {
	if d.full {
		return peft.Batch{X: d.X, Y: d.Y}
	}
	n, k := d.X.Dims()
	_, o := d.Y.Dims()
	b := peft.Batch{X: mat.NewDense(size, k, nil), Y: mat.NewDense(size, o, nil)}
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		b.X.SetRow(i, d.X.RawRowView(j))
		b.Y.SetRow(i, d.Y.RawRowView(j))
	}
	return b
}

func (d regression) EvalBatches() []peft.Batch { return nil }

// chainData returns random regression data for the suite's chain (5 → 3).
func chainData() regression {
	rng := rand.New(rand.NewSource(11))
	return regression{X: adaptertest.RandDense(rng, 40, 5), Y: adaptertest.RandDense(rng, 40, 3)}
}

// TestSuite runs the shared adapter suite on LoRA-SB initialized from data
// (10 minibatches of 4), with each FirstStep. The adapted model starts at
// W₀ + the rank-r approximation of ΔW₁, not at W₀, so ZeroAtInit is false;
// W₀ itself is unchanged.
func TestSuite(t *testing.T) {
	for _, step := range []string{"adam", "sgd"} {
		t.Run(step, func(t *testing.T) {
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					as, err := lorasb.Add(context.Background(), m, chainData(), lorasb.Config{
						R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed,
						LR: 0.01, Batches: 10, BatchSize: 4, FirstStep: step,
					})
					return adaptertest.Adapters(as), err
				},
			})
		})
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("lora-sb")
	if !ok {
		t.Fatal("LoRA-SB is not registered")
	}
	if m.Name != "LoRA-SB" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_LORASB" ||
		m.Package != "github.com/gopeft/gopeft/peft/lorasb" || !strings.Contains(m.Paper, "arXiv:2411.19557") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	as, err := lorasb.Add(context.Background(), adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3), chainData(),
		lorasb.Config{R: 1, LR: 1e-3, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(as[0]); !ok || owner.Name != "LoRA-SB" {
		t.Errorf("a LoRA-SB adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// fullGradient returns the gradient of the teacher student's loss,
// mean((x·Wᵀ − y)²) over the n×d entries, at W (d×k) on the whole training
// set: (2/(n·d))·(X·Wᵀ − Y)ᵀ·X.
func fullGradient(task *peft.TeacherTask, w mat.Matrix) *mat.Dense {
	n, _ := task.X.Dims()
	d, _ := w.Dims()
	var e, g mat.Dense
	e.Mul(task.X, w.T())
	e.Sub(&e, task.Y)
	g.Mul(e.T(), task.X)
	g.Scale(2/float64(n*d), &g)
	return &g
}

// truncated returns the best rank-r approximation of a, by gonum's SVD
// (independent of accel's), and a's singular values.
func truncated(t *testing.T, a *mat.Dense, r int) (*mat.Dense, []float64) {
	t.Helper()
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDThin) {
		t.Fatal("gonum's SVD failed")
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	d, _ := u.Dims()
	k, _ := v.Dims()
	us := mat.NewDense(d, r, nil)
	us.Apply(func(_, j int, x float64) float64 { return x * s[j] }, u.Slice(0, d, 0, r))
	var out mat.Dense
	out.Mul(us, v.Slice(0, k, 0, r).T())
	return &out, s
}

// orthonormality returns max |BᵀB − I| and max |A·Aᵀ − I|.
func orthonormality(a *lorasb.LoRASB) (float64, float64) {
	var btb, aat mat.Dense
	btb.Mul(a.B.Value.T(), a.B.Value)
	aat.Mul(a.A.Value, a.A.Value.T())
	r := a.Rank()
	id := mat.NewDiagDense(r, nil)
	for i := 0; i < r; i++ {
		id.SetDiag(i, 1)
	}
	btb.Sub(&btb, id)
	aat.Sub(&aat, id)
	return adaptertest.MaxAbs(&btb), adaptertest.MaxAbs(&aat)
}

// outside returns max |(I − Q·Qᵀ)·M|: how far M's columns are from the
// span of Q's orthonormal columns.
func outside(q, m mat.Matrix) float64 {
	var p, res mat.Dense
	p.Mul(q.T(), m)
	res.Mul(q, &p)
	res.Sub(m, &res)
	return adaptertest.MaxAbs(&res)
}

// teacherBasis returns the teacher's U (d×r): orthonormal columns spanning
// ΔW*'s column space.
func teacherBasis(task *peft.TeacherTask) *mat.Dense {
	var svd mat.SVD
	svd.Factorize(task.Delta, mat.SVDThin)
	var u mat.Dense
	svd.UTo(&u)
	d, _ := u.Dims()
	return mat.DenseCopyOf(u.Slice(0, d, 0, len(task.Sigma)))
}

// TestInitKnownAnswer checks the init on a teacher task whose every
// minibatch is the whole training set, so that ΣG = N·G with G known in
// closed form, for both first steps and α = r and α ≠ r:
//   - EstimateUpdates gives −η·sign(G) ("adam") or −η·G ("sgd"), to 1e-12;
//   - s·B·R·A is the best rank-r approximation of ΔW₁ by gonum's SVD, to
//     1e-10 relative, R is diagonal, BᵀB = A·Aᵀ = I, and Spectrum is ΔW₁'s;
//   - with "sgd", B spans the column space of G, which is the teacher's
//     span(U) since G = −(2/(n·d))·ΔW*·XᵀX: the known answer, to 1e-10.
//     With "adam", sign(G) is not low-rank and its top subspace only
//     approximates G's: the test reports ‖Uᵀ·B‖²_F/r, the fraction of B
//     in span(U) (0.756 measured; 3/16 = 0.19 for a random B), and asserts
//     at least 0.6.
func TestInitKnownAnswer(t *testing.T) {
	const d, k, r, eta = 16, 12, 3, 0.01
	task := peft.NewTeacherTask(d, k, []float64{3, 2, 1}, 200, 5)
	data := regression{X: task.X, Y: task.Y, full: true}
	g := fullGradient(task, task.W0)
	tu := teacherBasis(task)
	for _, step := range []string{"adam", "sgd"} {
		for _, alpha := range []float64{0, 7} {
			cfg := lorasb.Config{R: r, Alpha: alpha, LR: eta, Batches: 4, FirstStep: step, Targets: []string{"proj"}}
			ups, err := lorasb.EstimateUpdates(context.Background(), task.Model(), data, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := mat.NewDense(d, k, nil)
			want.Apply(func(_, _ int, v float64) float64 {
				if step == "sgd" {
					return -eta * v
				}
				return -eta * math.Copysign(1, v)
			}, g)
			if len(ups) != 1 || ups[0].Module != "proj" {
				t.Fatalf("updates %v, want one for proj", ups)
			}
			if diff := adaptertest.RelDiffMax(ups[0].Delta, want); diff > 1e-12 {
				t.Errorf("%s: ΔW₁ differs from the closed form by %.3g relative", step, diff)
			}
			m := task.Model()
			as, err := lorasb.Add(context.Background(), m, data, cfg)
			if err != nil {
				t.Fatal(err)
			}
			a := as[0]
			best, sv := truncated(t, want, r)
			if diff := adaptertest.RelDiffMax(a.Delta(), best); diff > 1e-10 {
				t.Errorf("%s α=%g: s·B·R·A differs from ΔW₁'s best rank-%d approximation by %.3g relative", step, alpha, r, diff)
			}
			for i := 0; i < r; i++ {
				for j := 0; j < r; j++ {
					if v := a.R.Value.At(i, j); (i != j && v != 0) || (i == j && math.Abs(v*a.Scaling()-sv[i]) > 1e-12*sv[0]) {
						t.Errorf("%s α=%g: R[%d,%d] = %g, want diag(σ)/s (σ_%d = %g, s = %g)", step, alpha, i, j, v, i, sv[i], a.Scaling())
					}
				}
			}
			for i, v := range sv {
				if math.Abs(a.Spectrum[i]-v) > 1e-12*sv[0] {
					t.Errorf("%s: Spectrum[%d] = %g, gonum's σ = %g", step, i, a.Spectrum[i], v)
				}
			}
			if eb, ea := orthonormality(a); eb > 1e-12 || ea > 1e-12 {
				t.Errorf("%s: |BᵀB − I| = %.3g, |A·Aᵀ − I| = %.3g", step, eb, ea)
			}
			if !mat.Equal(m.Layer.W.Value, task.W0) {
				t.Errorf("%s: W₀ changed", step)
			}
			var p mat.Dense
			p.Mul(tu.T(), a.B.Value)
			overlap := mat.Norm(&p, 2) * mat.Norm(&p, 2) / r // ‖Uᵀ·B‖²_F / r ∈ [0, 1]
			if step == "sgd" {
				if o := outside(tu, a.B.Value); o > 1e-10 {
					t.Errorf("sgd: B leaves the teacher's span(U) by %.3g", o)
				}
			} else if alpha == 0 {
				t.Logf("adam: ‖Uᵀ·B‖²_F/r = %.4f of B in the teacher's span(U); σ(ΔW₁)/σ_1 = %.3f", overlap, scaled(sv))
				if overlap < 0.6 {
					t.Errorf("adam: only %.3f of B in the teacher's span(U), want ≥ 0.6", overlap)
				}
			}
		}
	}
}

func scaled(s []float64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = v / s[0]
	}
	return out
}

// TestEquivalentGradient checks the paper's central identity: with B and
// A orthonormal, the update that R's gradient makes in weight space,
// s·B·∇_R L·A, is s²·B·Bᵀ·G·Aᵀ·A, the full gradient G projected onto B's
// and A's subspaces (to 1e-12), at a point away from the init.
func TestEquivalentGradient(t *testing.T) {
	const r = 4
	task := peft.NewTeacherTask(10, 8, []float64{2, 1}, 60, 6)
	m := task.Model()
	as, err := lorasb.Add(context.Background(), m, regression{X: task.X, Y: task.Y}, lorasb.Config{R: r, Alpha: 6, LR: 0.05, Batches: 5, BatchSize: 8, Targets: []string{"proj"}})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	a.R.Value.Add(a.R.Value, adaptertest.RandDense(rand.New(rand.NewSource(7)), r, r)) // away from the init
	a.R.ZeroGrad()
	m.Loss(peft.Batch{X: task.X, Y: task.Y}).Backward()
	g := fullGradient(task, a.MergedWeight(task.W0)) // G at W₀ + s·B·R·A
	s := a.Scaling()
	var lhs, br mat.Dense
	br.Mul(a.B.Value, a.R.Grad)
	lhs.Mul(&br, a.A.Value)
	lhs.Scale(s, &lhs) // s·B·∇_R L·A
	var pb, pa, rhs mat.Dense
	pb.Mul(a.B.Value, a.B.Value.T()) // B·Bᵀ
	pa.Mul(a.A.Value.T(), a.A.Value) // Aᵀ·A
	rhs.Mul(&pb, g)
	rhs.Mul(&rhs, &pa)
	rhs.Scale(s*s, &rhs)
	diff := adaptertest.RelDiffMax(&lhs, &rhs)
	t.Logf("s·B·∇_R·A vs s²·P_B·G·P_A: %.3g relative", diff)
	if diff > 1e-12 {
		t.Errorf("s·B·∇_R L·A differs from s²·P_B·G·P_A by %.3g relative", diff)
	}
}

// TestOnlyR: only R is trainable and gets a gradient; B and A are frozen
// and get none; the model trains r² numbers per layer; the gradient
// estimate leaves every parameter's trainability and gradient as it was.
func TestOnlyR(t *testing.T) {
	m := peft.NewMLP([]int{6, 9, 4}, 2)
	rng := rand.New(rand.NewSource(3))
	x := adaptertest.RandDense(rng, 30, 6)
	labels := make([]int, 30)
	for i := range labels {
		labels[i] = rng.Intn(4)
	}
	cls := classData{x: x, labels: labels}
	for _, p := range m.Params() {
		if !p.Trainable {
			t.Fatal("the fresh MLP has a frozen parameter")
		}
	}
	if _, err := lorasb.EstimateUpdates(context.Background(), m, cls, lorasb.Config{LR: 1e-3, Batches: 3, Targets: []string{"fc1", "fc2"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		if !p.Trainable || p.Grad != nil {
			t.Errorf("%s: after EstimateUpdates trainable %v, gradient %v; want as before (trainable, none)", p.Name, p.Trainable, p.Grad != nil)
		}
	}
	const r = 3
	as, err := lorasb.Add(context.Background(), m, cls, lorasb.Config{R: r, LR: 1e-3, Batches: 3, Targets: []string{"fc1", "fc2"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := peft.TrainableParams(m); n != 2*r*r {
		t.Errorf("%d trainable numbers, want 2·r² = %d", n, 2*r*r)
	}
	m.Loss(cls.Sample(rng, 8)).Backward()
	for _, a := range as {
		if a.R.Grad == nil || adaptertest.MaxAbs(a.R.Grad) == 0 || !a.R.Trainable {
			t.Error("R is not trained or got no gradient")
		}
		if a.B.Trainable || a.A.Trainable || a.B.Grad != nil || a.A.Grad != nil {
			t.Error("B or A is trainable or got a gradient")
		}
		if len(a.Params()) != 1 || a.Params()[0] != a.R {
			t.Error("Params is not R alone")
		}
	}
	for _, p := range peft.BaseParams(m) {
		if p.Trainable || p.Grad != nil {
			t.Errorf("base parameter %s is trainable or got a gradient", p.Name)
		}
	}
}

// classData is a classification Dataset of fixed rows.
type classData struct {
	x      *mat.Dense
	labels []int
}

func (c classData) Sample(rng *rand.Rand, size int) peft.Batch {
	_, k := c.x.Dims()
	b := peft.Batch{X: mat.NewDense(size, k, nil), Labels: make([]int, size)}
	for i := 0; i < size; i++ {
		j := rng.Intn(len(c.labels))
		b.X.SetRow(i, c.x.RawRowView(j))
		b.Labels[i] = c.labels[j]
	}
	return b
}

func (c classData) EvalBatches() []peft.Batch { return nil }

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  lorasb.Config
		want []string
	}{
		{lorasb.Config{R: 2, Targets: []string{"fc1"}}, []string{"LR = 0", "LRAt"}},
		{lorasb.Config{R: 2, LR: math.NaN(), Targets: []string{"fc1"}}, []string{"LR = NaN"}},
		{lorasb.Config{R: 2, LR: 1, Batches: -1, Targets: []string{"fc1"}}, []string{"Batches = -1"}},
		{lorasb.Config{R: 2, LR: 1, BatchSize: -4, Targets: []string{"fc1"}}, []string{"BatchSize = -4"}},
		{lorasb.Config{R: 2, LR: 1, FirstStep: "lion", Targets: []string{"fc1"}}, []string{`FirstStep = "lion"`}},
		{lorasb.Config{R: 4, LR: 1, Targets: []string{"fc1", "fc2"}}, []string{"LoRA-SB on fc2", "R = 4", "(3×4)"}},
		{lorasb.Config{R: 1, Alpha: -1, LR: 1, Targets: []string{"fc1"}}, []string{"LoRA-SB on fc1", "Alpha = -1"}},
	} {
		m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
		_, err := lorasb.Add(context.Background(), m, chainData(), c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	// Factors that do not chain; an update of the wrong shape.
	_, err := lorasb.New("fc", "", mat.NewDense(4, 2, nil), mat.NewDense(3, 3, nil), mat.NewDense(3, 5, nil), lorasb.Config{})
	if e := adaptertest.ErrorMentions(err, "LoRA-SB on fc", "B (4×2)", "R (3×3)", "A (3×5)"); e != nil {
		t.Error(e)
	}
	m := adaptertest.NewChain(1, []string{"fc1"}, 5, 4)
	_, err = lorasb.AddUpdates(context.Background(), m, []lorasb.Update{{Module: "fc1", Delta: mat.NewDense(5, 4, nil)}}, lorasb.Config{R: 1})
	if e := adaptertest.ErrorMentions(err, "LoRA-SB on fc1", "(5×4)", "(4×5)"); e != nil {
		t.Error(e)
	}
}

// TestCancel: a cancelled context stops the estimate with its error, and
// nothing is attached.
func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
	_, err := lorasb.Add(ctx, m, chainData(), lorasb.Config{R: 1, LR: 1, Targets: []string{"fc1"}})
	if !errors.Is(err, context.Canceled) || adaptertest.ErrorMentions(err, "minibatch 1 of 50") != nil {
		t.Errorf("cancelled: %v, want context.Canceled before minibatch 1 of 50", err)
	}
	for _, l := range m.Mods {
		if len(l.Adapters) != 0 || !l.W.Trainable {
			t.Errorf("%s: an adapter stayed or W's state changed", l.Name)
		}
	}
}

// loraXS attaches LoRA-XS with a random init to task's model: B and A with
// random orthonormal columns and rows, R ~ N(0, (1e-5)²) as LoRA-XS's
// reference initializes its r×r matrix; α = r.
func loraXS(t *testing.T, m peft.Model, d, k, r int, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	orth := func(n int) *mat.Dense {
		var qr mat.QR
		qr.Factorize(adaptertest.RandDense(rng, n, r))
		var q mat.Dense
		qr.QTo(&q)
		return mat.DenseCopyOf(q.Slice(0, n, 0, r))
	}
	b, a := orth(d), mat.DenseCopyOf(orth(k).T())
	rm := adaptertest.RandDense(rng, r, r)
	rm.Scale(1e-5, rm)
	if _, err := peft.AddAdapter(m, "", []string{"proj"}, func(l *peft.Linear) (peft.Adapter, error) {
		return lorasb.New(l.Name, "default", b, rm, a, lorasb.Config{})
	}); err != nil {
		t.Fatal(err)
	}
}

// TestTeacherTraining trains LoRA-SB and LoRA-XS with a random init, both
// r² = 16 numbers, the same steps and rates, on a teacher task of rank 3:
// LoRA-SB's subspaces hold the teacher's ΔW*, the random ones do not, so
// LoRA-SB must end with less than half LoRA-XS's evaluation loss.
func TestTeacherTraining(t *testing.T) {
	const d, k, r = 32, 24, 4
	task := peft.NewTeacherTask(d, k, []float64{3, 2, 1}, 512, 9)
	cfg := peft.TrainConfig{Steps: 200, BatchSize: 32, LR: 0.05, WarmupSteps: 10, Seed: 1}
	eval := func(m peft.Model) float64 {
		l, _, err := peft.Evaluate(context.Background(), m, task)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	base := eval(task.Model())
	sb := task.Model()
	if _, err := lorasb.Add(context.Background(), sb, task, lorasb.Config{R: r, LR: peft.LRAt(cfg, 1), BatchSize: 8, Targets: []string{"proj"}, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	sbInit := eval(sb)
	if _, err := peft.Train(context.Background(), sb, task, cfg); err != nil {
		t.Fatal(err)
	}
	xs := task.Model()
	loraXS(t, xs, d, k, r, 3)
	if _, err := peft.Train(context.Background(), xs, task, cfg); err != nil {
		t.Fatal(err)
	}
	lsb, lxs := eval(sb), eval(xs)
	t.Logf("eval loss: base %.4f; LoRA-SB at init %.4f, trained %.4f (recovery error %.3f); LoRA-XS random init trained %.4f (recovery error %.3f); %d numbers each",
		base, sbInit, lsb, task.RecoveryError(sb), lxs, task.RecoveryError(xs), r*r)
	if !(lsb < 0.5*lxs) {
		t.Errorf("LoRA-SB eval loss %.4f, LoRA-XS (random init) %.4f: want LoRA-SB below half", lsb, lxs)
	}
}

// TestFile checks the saved layout and the round trip, bit for bit, and
// that a malformed file is refused with an error naming what is wrong.
func TestFile(t *testing.T) {
	names := []string{"fc1", "fc2"}
	m := adaptertest.NewChain(1, names, 5, 4, 3)
	as, err := lorasb.Add(context.Background(), m, chainData(), lorasb.Config{R: 2, Alpha: 5, LR: 0.1, Batches: 5, Targets: names})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		a.R.Value.Set(0, 1, 0.5) // as if trained
	}
	fresh := func() *adaptertest.Chain { return adaptertest.NewChain(1, names, 5, 4, 3) }
	f := fresh()
	dir := adaptertest.SaveLoad(t, m, f)
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(4)), 3, 5))
	if !mat.Equal(f.Forward(x).Value, m.Forward(x).Value) {
		t.Error("the loaded adapter's output differs")
	}
	for i, l := range f.Mods {
		b := l.ActiveAdapter().(*lorasb.LoRASB)
		if !mat.Equal(b.B.Value, as[i].B.Value) || !mat.Equal(b.R.Value, as[i].R.Value) || !mat.Equal(b.A.Value, as[i].A.Value) ||
			b.Alpha != 5 || !b.R.Trainable || b.B.Trainable || b.A.Trainable {
			t.Errorf("%s: the loaded adapter differs, or the wrong factors are trainable", l.Name)
		}
	}
	adaptertest.RefusesLoad(t, dir, fresh, []adaptertest.Refusal{
		{What: "no r", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "r") },
			Want: []string{`"r"`, "missing"}},
		{What: "r = 5", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["r"] = 5 },
			Want: []string{`"r"`, "LoRA-SB on fc1", "R = 5"}},
		{What: "R not square", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.fc2.lorasb_R.weight"] = mat.NewDense(2, 3, nil)
			shapes["base_model.model.fc2.lorasb_R.weight"] = []int{2, 3}
		}, Want: []string{"lorasb_R", "[2 3]", "(2×2)"}},
		{What: "no lorasb_A", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.fc1.lorasb_A.weight")
		}, Want: []string{"lorasb_A", "fc1"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["lora_dropout"] = 0.1 },
			Want: []string{"lora_dropout"}},
	})
}
