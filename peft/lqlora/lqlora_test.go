package lqlora_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/lqlora"
	"github.com/gopeft/gopeft/peft/quant"
	"gonum.org/v1/gonum/mat"
)

func adapters(ls []*lqlora.Layer) []peft.Adapter {
	out := make([]peft.Adapter, len(ls))
	for i, l := range ls {
		out[i] = l.LoRA
	}
	return out
}

func suiteCase(q quant.Quantizer, tol float64) adaptertest.Case {
	return adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ls, err := lqlora.Add(m, lqlora.Config{R: o.R, Alpha: o.Alpha, Quantizer: q, Targets: o.Targets, Seed: o.Seed})
			return adapters(ls), err
		},
		ChangesBase: true,
		ZeroAtInit:  true,
		InitTol:     tol,
	}
}

// TestSuite runs the shared suite on LQ-LoRA with NF4 (the default).
// LQ-LoRA replaces W by Q (ChangesBase), and the output at init is the
// original model's up to the decomposition error W − Q − L1·L2, which is
// not rounding: with NF4 each entry of W − L1·L2 may move by up to 0.152
// of its block's absmax. On the suite's case (fc1 4×5, fc2 3×4, r = 2,
// α = 3; one NF4 block per weight) the output moves by 1.8e-2 relative
// (measured, TestInitFaults); InitTol = 5e-2 allows for that and stays
// well below what the faults this guards against give: without L1·L2
// (adapter zero at init) or with W kept instead of Q (L1·L2 counted
// twice) the output moves by 0.55 and 0.94 relative (measured). TestSuiteIdentity
// checks the same with no quantization, to rounding.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, suiteCase(nil, 5e-2))
}

// TestSuiteIdentity runs the suite with the identity quantizer: then
// Q + L1·L2 = W to rounding, and the output at init is the original's to
// 1e-14 relative (measured 1.4e-16; the tolerance is PiSSA's).
func TestSuiteIdentity(t *testing.T) {
	adaptertest.Run(t, suiteCase(quant.Identity{}, 1e-14))
}

// TestInitFaults measures, on the suite's model, what the output at init
// would be under the faults TestSuite's InitTol guards against, so that
// its comment stays true: they must exceed 5× the tolerance.
func TestInitFaults(t *testing.T) {
	names := []string{"fc1", "fc2"}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(5)), 6, 5))
	want := adaptertest.NewChain(1, names, 5, 4, 3).Forward(x).Value
	rel := func(got *mat.Dense) float64 {
		var d mat.Dense
		d.Sub(got, want)
		return mat.Norm(&d, math.Inf(1)) / mat.Norm(want, math.Inf(1))
	}
	m := adaptertest.NewChain(1, names, 5, 4, 3)
	ls, err := lqlora.Add(m, lqlora.Config{R: 2, Alpha: 3, Targets: names})
	if err != nil {
		t.Fatal(err)
	}
	ok := rel(m.Forward(x).Value)
	peft.DisableAdapters(m)
	noLR := rel(m.Forward(x).Value) // Q alone
	peft.EnableAdapters(m)
	for i, l := range m.Mods { // W kept: W + L1·L2
		l.W.Value.Copy(adaptertest.NewChain(1, names, 5, 4, 3).Mods[i].W.Value)
	}
	twice := rel(m.Forward(x).Value)
	t.Logf("output at init vs original: %.2g relative; Q alone %.2g; W + L1·L2 %.2g", ok, noLR, twice)
	if ok > 5e-2 || noLR < 0.25 || twice < 0.25 {
		t.Errorf("InitTol 5e-2 no longer separates the init (%.2g) from the faults (%.2g, %.2g)", ok, noLR, twice)
	}
	_ = ls
}

func randMat(seed int64, r, c int) *mat.Dense {
	return adaptertest.RandDense(rand.New(rand.NewSource(seed)), r, c)
}

// truncatedSVDRef returns the best rank-r approximation of w from gonum's
// SVD (an oracle independent of accel's).
func truncatedSVDRef(t *testing.T, w *mat.Dense, r int) *mat.Dense {
	var svd mat.SVD
	if !svd.Factorize(w, mat.SVDThin) {
		t.Fatal("gonum SVD failed")
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	d, k := w.Dims()
	out := mat.NewDense(d, k, nil)
	for i := 0; i < r; i++ {
		var o mat.Dense
		o.Outer(s[i], u.ColView(i), v.ColView(i))
		out.Add(out, &o)
	}
	return out
}

func maxAbsDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, math.Inf(1))
}

// TestIdentityQuantizer checks the paper's invariant with no quantization:
// Q + L1·L2 = W, and L1·L2 is the best rank-r approximation of W
// (Eckart–Young; compared with gonum's SVD truncated), L1 = U_r·S_r^{1/2},
// L2 = S_r^{1/2}·V_rᵀ (so L1ᵀL1 = L2·L2ᵀ = S_r).
func TestIdentityQuantizer(t *testing.T) {
	for _, sh := range [][3]int{{9, 6, 2}, {5, 11, 3}, {8, 8, 8}} {
		w := randMat(int64(sh[0]), sh[0], sh[1])
		dec, err := lqlora.Decompose(context.Background(), w, quant.Identity{}, sh[2], nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(dec.Approx(), w); d > 1e-12 {
			t.Errorf("%v: |Q + L1·L2 − W|max = %g", sh, d)
		}
		if d := maxAbsDiff(dec.LowRank(), truncatedSVDRef(t, w, sh[2])); d > 1e-12 {
			t.Errorf("%v: L1·L2 differs from the truncated SVD by %g", sh, d)
		}
		var g1, g2 mat.Dense
		g1.Mul(dec.L1.T(), dec.L1)
		g2.Mul(dec.L2, dec.L2.T())
		if d := maxAbsDiff(&g1, &g2); d > 1e-12 {
			t.Errorf("%v: L1ᵀL1 and L2·L2ᵀ differ by %g", sh, d)
		}
		if dec.Err() > 1e-12 {
			t.Errorf("%v: error %g with no quantization", sh, dec.Err())
		}
	}
}

// TestDecomposition checks on the shipped digits MLP's weights (fc1 64×64,
// fc2 10×64) that LQ-LoRA's error is at most plain quantization's
// (QLoRA-style, L = 0), for NF4, INT4 and INT8, and logs memory against
// error: bits per parameter (Q's storage and r·(d+k) bf16 adapter
// entries) and ‖W − Q − L1·L2‖_F/‖W‖_F.
func TestDecomposition(t *testing.T) {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, l := range m.Layers {
		w := l.W.Value
		norm := mat.Norm(w, 2)
		for _, q := range []quant.Quantizer{quant.NF4{}, quant.NF4{DoubleQuant: true}, quant.INT4{}, quant.INT8{}} {
			plain, err := lqlora.Decompose(ctx, w, q, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []int{0, 2, 4, 8} {
				dec, err := lqlora.Decompose(ctx, w, q, r, nil)
				if err != nil {
					t.Fatal(err)
				}
				d, k := w.Dims()
				bits := float64(dec.StorageBits(16)) / float64(d*k)
				t.Logf("%s %-13s r=%-2d  %.3f bits/param  rel. error %.5f  (%d iterations, best %d)", l.Name, q, r, bits, dec.Err()/norm, len(dec.Errors), dec.Iter)
				if dec.Err() > plain.Err()*(1+1e-12) {
					t.Errorf("%s %s r=%d: error %g above plain quantization's %g", l.Name, q, r, dec.Err(), plain.Err())
				}
				if d := maxAbsDiff(dec.Approx(), mat.NewDense(d, k, nil)); d == 0 {
					t.Errorf("empty approximation")
				}
			}
		}
	}
}

// TestErrorNonIncreasing checks that the iterates Decompose keeps have
// non-increasing error and that it stops at the first that does not fall,
// returning the one before it; with Fixed it runs every iteration, and the
// test logs where the error rises (the quantization step can raise it).
func TestErrorNonIncreasing(t *testing.T) {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	w := m.Layers[0].W.Value
	for _, q := range []quant.Quantizer{quant.NF4{}, quant.INT4{}, quant.INT{Bits: 3}} {
		dec, err := lqlora.Decompose(context.Background(), w, q, 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := dec.Errors
		for i := 1; i < dec.Iter; i++ {
			if e[i] >= e[i-1] {
				t.Errorf("%s: kept iterate %d has error %g ≥ %g before it", q, i+1, e[i], e[i-1])
			}
		}
		if len(e) < lqlora.DefaultMaxIter && (len(e) != dec.Iter+1 || e[len(e)-1] < e[dec.Iter-1]) {
			t.Errorf("%s: stopped after %d iterations, returning %d: errors %v", q, len(e), dec.Iter, e)
		}
		if dec.Err() != minOf(e) {
			t.Errorf("%s: returned error %g, the least seen is %g", q, dec.Err(), minOf(e))
		}
		fixed, err := lqlora.Decompose(context.Background(), w, q, 4, &lqlora.Options{MaxIter: 40, Fixed: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(fixed.Errors) != 40 || fixed.Iter != 40 {
			t.Errorf("%s: Fixed ran %d iterations, returned %d, want 40", q, len(fixed.Errors), fixed.Iter)
		}
		var rises []int
		for i := 1; i < 40; i++ {
			if fixed.Errors[i] > fixed.Errors[i-1] {
				rises = append(rises, i+1)
			}
		}
		t.Logf("%s: early stop after %d iterations (error %.5g → %.5g); fixed 40: error rises at iterations %v", q, len(e), e[0], dec.Err(), rises)
	}
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

// bruteForce returns the least Σ err over all assignments within budget,
// and false if none fits.
func bruteForce(bits [][]int64, errs [][]float64, budget int64) (float64, bool) {
	best, found := math.Inf(1), false
	var rec func(i int, b int64, e float64)
	rec = func(i int, b int64, e float64) {
		if b > budget {
			return
		}
		if i == len(bits) {
			found = true
			best = math.Min(best, e)
			return
		}
		for c := range bits[i] {
			if bits[i][c] >= 0 {
				rec(i+1, b+bits[i][c], e+errs[i][c])
			}
		}
	}
	rec(0, 0, 0)
	return best, found
}

// TestSolveBruteForce checks Solve against enumeration of every assignment:
// on a constructed case where taking the best error-per-bit trade first
// (greedy) fails, and on 200 random tables of 5 modules × 4 candidates at
// budgets from infeasible to unconstrained.
func TestSolveBruteForce(t *testing.T) {
	ctx := context.Background()
	// Two modules. Greedy from the cheapest configs upgrades module 0
	// (saves 5 for 2 bits) and cannot then afford module 1's upgrade
	// (saves 9 for 4 bits); the optimum is module 1's upgrade alone.
	tab := &lqlora.Table{
		Modules: []string{"a", "b"}, Params: []int{4, 4},
		Cands: []lqlora.Candidate{{Quantizer: quant.INT4{}}, {Quantizer: quant.INT8{}}},
		Bits:  [][]int64{{4, 6}, {4, 8}},
		Err2:  [][]float64{{10, 5}, {12, 3}},
	}
	a, err := lqlora.Solve(ctx, tab, 12)
	if err != nil {
		t.Fatal(err)
	}
	if a.Choice[0] != 0 || a.Choice[1] != 1 || a.Err2 != 13 || a.Bits != 12 {
		t.Errorf("constructed case: %+v, want choice [0 1], error 13, 12 bits", a)
	}
	rng := rand.New(rand.NewSource(3))
	for trial := 0; trial < 200; trial++ {
		n, nc := 5, 4
		tab := &lqlora.Table{Modules: make([]string, n), Params: make([]int, n), Cands: make([]lqlora.Candidate, nc)}
		var minB, maxB int64
		for i := 0; i < n; i++ {
			tab.Params[i] = 10
			bits, errs := make([]int64, nc), make([]float64, nc)
			lo, hi := int64(math.MaxInt64), int64(0)
			for c := range bits {
				bits[c] = int64(1 + rng.Intn(20))
				errs[c] = float64(rng.Intn(50)) // integers: ties happen
				if rng.Intn(10) == 0 {
					bits[c], errs[c] = -1, math.Inf(1) // rank too high here
					continue
				}
				lo, hi = min(lo, bits[c]), max(hi, bits[c])
			}
			if hi == 0 { // every candidate unavailable: keep one
				bits[0], errs[0], lo, hi = 5, 7, 5, 5
			}
			tab.Bits = append(tab.Bits, bits)
			tab.Err2 = append(tab.Err2, errs)
			minB, maxB = minB+lo, maxB+hi
		}
		budget := minB - 2 + rng.Int63n(maxB-minB+4)
		want, ok := bruteForce(tab.Bits, tab.Err2, budget)
		a, err := lqlora.Solve(ctx, tab, budget)
		if !ok {
			if err == nil {
				t.Errorf("trial %d: budget %d infeasible, Solve gave %+v", trial, budget, a)
			}
			continue
		}
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		var b int64
		var e float64
		for i, c := range a.Choice {
			b += tab.Bits[i][c]
			e += tab.Err2[i][c]
			if tab.Bits[i][c] < 0 {
				t.Errorf("trial %d: chose an unavailable candidate", trial)
			}
		}
		if b != a.Bits || e != a.Err2 || b > budget || e != want {
			t.Errorf("trial %d: Solve %+v (recomputed %d bits, error %g), budget %d, brute force error %g", trial, a, b, e, budget, want)
		}
	}
	if _, err := lqlora.Solve(ctx, tab, 7); err == nil || !strings.Contains(err.Error(), "8 bits") || !strings.Contains(err.Error(), "budget 7") {
		t.Errorf("infeasible budget: %v", err)
	}
}

// TestAllocate measures the digits MLP under six candidates, solves for
// 5.5 bits per parameter, and adds LQ-LoRA with the plan: each module gets
// its chosen quantizer and rank, the storage is within the budget, and the
// errors are the table's.
func TestAllocate(t *testing.T) {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cands := []lqlora.Candidate{
		{Quantizer: quant.INT{Bits: 3}, R: 2}, {Quantizer: quant.INT{Bits: 3}, R: 8},
		{Quantizer: quant.NF4{}, R: 2}, {Quantizer: quant.NF4{}, R: 8},
		{Quantizer: quant.INT8{}, R: 2}, {Quantizer: quant.INT8{}, R: 8},
	}
	targets := []string{"fc1", "fc2"}
	tab, err := lqlora.Measure(ctx, m, targets, cands, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	budget := tab.Budget(5.5)
	a, err := lqlora.Solve(ctx, tab, budget)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := bruteForce(tab.Bits, tab.Err2, budget)
	if a.Err2 != want || a.Bits > budget {
		t.Errorf("allocation %+v, brute force error %g, budget %d", a, want, budget)
	}
	plan := a.Plan(tab)
	t.Logf("5.5 bits/param: %v → %.3f bits/param, error² %.4g", plan, a.BitsPerParam(tab), a.Err2)
	ls, err := lqlora.Add(m, lqlora.Config{Plan: plan, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	var bits int64
	for i, l := range ls {
		c := plan[l.Module]
		if l.LoRA.Rank() != c.R || l.Quantizer.String() != c.Quantizer.String() {
			t.Errorf("%s: rank %d, quantizer %s; plan %v", l.Module, l.LoRA.Rank(), l.Quantizer, c)
		}
		if e := l.Dec.Err() * l.Dec.Err(); e != tab.Err2[i][a.Choice[i]] {
			t.Errorf("%s: error² %g, table %g", l.Module, e, tab.Err2[i][a.Choice[i]])
		}
		bits += l.Dec.StorageBits(16)
	}
	if bits != a.Bits {
		t.Errorf("the added layers store %d bits, the allocation %d", bits, a.Bits)
	}
}

// TestBaseFile saves an LQ-LoRA model as LoRA adapter + quantized base,
// loads both into a fresh model, and checks the output is identical, the
// weights are Q exactly, and the base file holds Q's StorageBits (plus a
// header of under 2 KiB) — for NF4, NF4 with double quantization, INT4 and
// the identity.
func TestBaseFile(t *testing.T) {
	for _, q := range []quant.Quantizer{quant.NF4{}, quant.NF4{BlockSize: 32, DoubleQuant: true, ScaleBlockSize: 16}, quant.INT4{}, quant.Identity{}} {
		dir := t.TempDir()
		m, err := peft.LoadDigitsMLP()
		if err != nil {
			t.Fatal(err)
		}
		ls, err := lqlora.Add(m, lqlora.Config{R: 4, Alpha: 8, Quantizer: q, Targets: []string{"fc1", "fc2"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range peft.AdapterParams(m.Layers) { // as after training
			p.Value.Apply(func(i, j int, v float64) float64 { return v * (1 + 0.1*math.Sin(float64(3*i+j))) }, p.Value)
		}
		x := peft.NewConst(randMat(9, 7, 64))
		want := m.Forward(x).Value
		base := filepath.Join(dir, "base.safetensors")
		if err := lqlora.SaveBase(base, ls); err != nil {
			t.Fatal(err)
		}
		if err := peft.SaveAdapter(dir, m, ""); err != nil {
			t.Fatal(err)
		}
		fresh, _ := peft.LoadDigitsMLP()
		got, err := lqlora.LoadBase(base, fresh)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(fresh.Forward(x).Value, want) {
			t.Errorf("%s: loaded model's output differs by %g", q, maxAbsDiff(fresh.Forward(x).Value, want))
		}
		var stored int64
		for i, l := range ls {
			if !mat.Equal(fresh.Layers[i].W.Value, m.Layers[i].W.Value) {
				t.Errorf("%s: %s: loaded W is not Q", q, l.Module)
			}
			if got[l.Module].StorageBits() != l.Dec.Q.StorageBits() {
				t.Errorf("%s: %s: loaded Q stores %d bits, saved %d", q, l.Module, got[l.Module].StorageBits(), l.Dec.Q.StorageBits())
			}
			stored += l.Dec.Q.StorageBits()
		}
		fi, err := os.Stat(base)
		if err != nil {
			t.Fatal(err)
		}
		if over := fi.Size() - stored/8; over < 0 || over > 2048 {
			t.Errorf("%s: base file %d bytes for %d bytes of Q", q, fi.Size(), stored/8)
		}
	}
	// A base file for another model's shapes is refused, with no change.
	dir := t.TempDir()
	small := peft.NewMLP([]int{5, 4, 3}, 1)
	ls, err := lqlora.Add(small, lqlora.Config{R: 1, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lqlora.SaveBase(dir+"/b.safetensors", ls); err != nil {
		t.Fatal(err)
	}
	m, _ := peft.LoadDigitsMLP()
	w0 := mat.DenseCopyOf(m.Layers[0].W.Value)
	if _, err := lqlora.LoadBase(dir+"/b.safetensors", m); err == nil || !strings.Contains(err.Error(), "fc1") || !strings.Contains(err.Error(), "(4×5)") {
		t.Errorf("mismatched base: %v", err)
	}
	if !mat.Equal(m.Layers[0].W.Value, w0) {
		t.Error("a refused base file changed the weight")
	}
}

// TestBadConfig checks errors of LQ-LoRA's own settings name module, field
// and value, and leave the model unchanged.
func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  lqlora.Config
		want []string
	}{
		{lqlora.Config{R: 2, Quantizer: quant.NF4{BlockSize: -8}, Targets: []string{"fc2"}}, []string{"fc2", "BlockSize", "-8"}},
		{lqlora.Config{R: 2, Quantizer: quant.INT{Bits: 12}, Targets: []string{"fc1"}}, []string{"fc1", "Bits", "12"}},
		{lqlora.Config{R: 2, MaxIter: -1, Targets: []string{"fc1"}}, []string{"MaxIter", "-1"}},
		{lqlora.Config{Plan: map[string]lqlora.Candidate{"fc1": {Quantizer: quant.NF4{}, R: 1}}, Targets: []string{"fc1", "fc2"}}, []string{"fc2", "Plan"}},
		{lqlora.Config{Plan: map[string]lqlora.Candidate{"fc1": {Quantizer: quant.NF4{}, R: 0}}, Targets: []string{"fc1"}}, []string{"fc1", "r = 0"}},
	} {
		m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
		_, err := lqlora.Add(m, tc.cfg)
		if e := adaptertest.ErrorMentions(err, tc.want...); e != nil {
			t.Error(e)
		}
		fresh := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
		for i, l := range m.Mods {
			if len(l.Adapters) != 0 || !mat.Equal(l.W.Value, fresh.Mods[i].W.Value) {
				t.Errorf("%v: failed Add changed %s", tc.want, l.Name)
			}
		}
	}
}

// TestCancel checks a cancelled context stops Add with ctx's error and no
// weight changed.
func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
	_, err := lqlora.AddContext(ctx, m, lqlora.Config{R: 2, Targets: []string{"fc1", "fc2"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Add: %v", err)
	}
	fresh := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
	for i, l := range m.Mods {
		if len(l.Adapters) != 0 || !mat.Equal(l.W.Value, fresh.Mods[i].W.Value) {
			t.Errorf("cancelled Add changed %s", l.Name)
		}
	}
}

// TestRegistered checks LQ-LoRA's registry entry: an adapter method whose
// adapters LoRA's format saves.
func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("lq-lora")
	if !ok {
		t.Fatal("LQ-LoRA is not registered")
	}
	if m.Name != "LQ-LoRA" || m.Kind != peft.AdapterMethod || m.Format != nil || !strings.Contains(m.Paper, "arXiv:2311.12023") ||
		m.Package != "github.com/gopeft/gopeft/peft/lqlora" {
		t.Errorf("registered %+v", m)
	}
	ls, err := lqlora.Add(peft.NewMLP([]int{6, 7, 4}, 3), lqlora.Config{R: 2, Targets: []string{"fc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(ls[0].LoRA); !ok || owner.Name != "LoRA" {
		t.Errorf("an LQ-LoRA adapter's format is %q (%v), want LoRA's", owner.Name, ok)
	}
	var _ []*lora.LoRA = lqlora.Adapters(ls)
}
