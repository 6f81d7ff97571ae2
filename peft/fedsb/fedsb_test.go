package fedsb_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dplora"
	"github.com/gopeft/gopeft/peft/fedsb"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/lorasb"
	"gonum.org/v1/gonum/mat"
)

func randDense(rng *rand.Rand, r, c int) *mat.Dense {
	m := mat.NewDense(r, c, nil)
	m.Apply(func(_, _ int, _ float64) float64 { return rng.NormFloat64() }, m)
	return m
}

func bra(b, r, a mat.Matrix) *mat.Dense {
	var br, out mat.Dense
	br.Mul(b, r)
	out.Mul(&br, a)
	return &out
}

// The paper's invariant: with B and A shared, the server's mean of R gives
// exactly the mean of the clients' updates B·R_k·A, weighted or not.
func TestAggregationExact(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const d, k, r, K = 7, 5, 3, 4
	b, a, rt := randDense(rng, d, r), randDense(rng, r, k), randDense(rng, r, r)
	global := []*peft.Tensor{peft.NewParam("fc1.lorasb_R.default.weight", rt)}
	for _, uniform := range []bool{false, true} {
		var ups []peft.ClientUpdate
		want := mat.NewDense(d, k, nil)
		total := 0.0
		for i := 0; i < K; i++ {
			rk := randDense(rng, r, r) // client k's trained R
			var dr mat.Dense
			dr.Sub(rk, rt)
			n := 10 + 7*i
			w := float64(n)
			if uniform {
				w = 1
			}
			var wbra mat.Dense
			wbra.Scale(w, bra(b, rk, a))
			want.Add(want, &wbra)
			total += w
			ups = append(ups, peft.ClientUpdate{Client: i, Samples: n, Delta: []*mat.Dense{&dr}})
		}
		want.Scale(1/total, want)
		step, err := (&fedsb.FedSB{Uniform: uniform}).Aggregate(1, global, ups)
		if err != nil {
			t.Fatal(err)
		}
		var next mat.Dense
		next.Add(rt, step[0])
		var diff mat.Dense
		diff.Sub(bra(b, &next, a), want)
		if e := mat.Norm(&diff, math.Inf(1)); e > 1e-12 {
			t.Errorf("uniform %v: ‖B·mean(R)·A − mean(B·R_k·A)‖∞ = %.3g, want ≤ 1e-12", uniform, e)
		}
	}
}

// FedAvg of LoRA's factors is not the mean update; on a known case the gap
// is 0.5: B₁A₁ = e₁e₁ᵀ, B₂A₂ = e₂e₂ᵀ average to I/2, while the averaged
// factors give (½,½)ᵀ(½,½) = ¼·𝟙.
func TestFactorMeanGap(t *testing.T) {
	bs := []*mat.Dense{mat.NewDense(2, 1, []float64{1, 0}), mat.NewDense(2, 1, []float64{0, 1})}
	as := []*mat.Dense{mat.NewDense(1, 2, []float64{1, 0}), mat.NewDense(1, 2, []float64{0, 1})}
	if g := fedsb.FactorMeanGap(bs, as); math.Abs(g-0.5) > 1e-15 {
		t.Errorf("known case: gap %.17g, want 0.5", g)
	}
	// Fed-SB's factors B·R_k and A (A shared) have no gap.
	rng := rand.New(rand.NewSource(2))
	b, a := randDense(rng, 6, 3), randDense(rng, 3, 4)
	var fbs, fas, lbs, las []*mat.Dense
	for i := 0; i < 5; i++ {
		var br mat.Dense
		br.Mul(b, randDense(rng, 3, 3))
		fbs, fas = append(fbs, &br), append(fas, a)
		lbs, las = append(lbs, randDense(rng, 6, 3)), append(las, randDense(rng, 3, 4))
	}
	sb, fl := fedsb.FactorMeanGap(fbs, fas), fedsb.FactorMeanGap(lbs, las)
	t.Logf("gap: shared A %.3g, independent factors %.3g", sb, fl)
	if sb > 1e-12 || fl < 0.1 {
		t.Errorf("gap: shared A %.3g (want ≤ 1e-12), independent factors %.3g (want > 0.1)", sb, fl)
	}
}

func digitsClients(t testing.TB, n int, split peft.Split) []*peft.Client {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	clients, err := peft.NewClients(data, n, split, 1)
	if err != nil {
		t.Fatal(err)
	}
	return clients
}

func sbMLP(t testing.TB, clients []*peft.Client, r int) (*peft.MLP, []*lorasb.LoRASB) {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	ads, err := fedsb.Init(context.Background(), m, clients, lorasb.Config{R: r, LR: 0.1, Targets: []string{"fc1", "fc2"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m, ads
}

func loraMLP(t testing.TB, r int) (*peft.MLP, []*lora.LoRA) {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	ads, err := lora.Add(m, lora.Config{R: r, Targets: []string{"fc1", "fc2"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m, ads
}

// recorder keeps the updates its aggregator receives, before it sees them.
type recorder struct {
	peft.Aggregator
	got []peft.ClientUpdate
}

func (r *recorder) Aggregate(round int, global []*peft.Tensor, ups []peft.ClientUpdate) ([]*mat.Dense, error) {
	for _, u := range ups {
		c := u
		c.Delta = nil
		for _, d := range u.Delta {
			c.Delta = append(c.Delta, mat.DenseCopyOf(d))
		}
		r.got = append(r.got, c)
	}
	return r.Aggregator.Aggregate(round, global, ups)
}

// Through a whole round: the global ΔW of each layer after Fed-SB is the
// mean of the clients' ΔW_k; after FedAvg-LoRA it is not.
func TestFederateRoundExact(t *testing.T) {
	clients := digitsClients(t, 5, peft.DirichletSplit(0.5))
	cfg := peft.FedConfig{Rounds: 1, Local: peft.TrainConfig{Steps: 5, BatchSize: 16, LR: 0.05}, BytesPerValue: 8}
	// meanDelta returns Σ n_k·ΔW_k / Σ n_k, with ΔW_k = delta(k's params).
	meanDelta := func(got []peft.ClientUpdate, start []*mat.Dense, delta func(ps []*mat.Dense) *mat.Dense) *mat.Dense {
		var sum *mat.Dense
		total := 0.0
		for _, u := range got {
			var ps []*mat.Dense
			for i := range start { // fc1's parameters come first
				var p mat.Dense
				p.Add(start[i], u.Delta[i])
				ps = append(ps, &p)
			}
			dw := delta(ps)
			dw.Scale(float64(u.Samples), dw)
			if sum == nil {
				sum = dw
			} else {
				sum.Add(sum, dw)
			}
			total += float64(u.Samples)
		}
		sum.Scale(1/total, sum)
		return sum
	}
	gap := func(a, b *mat.Dense) float64 {
		var d mat.Dense
		d.Sub(a, b)
		return mat.Norm(&d, math.Inf(1)) / mat.Norm(b, math.Inf(1))
	}

	m, ads := sbMLP(t, clients, 4)
	startSB := []*mat.Dense{mat.DenseCopyOf(ads[0].R.Value), mat.DenseCopyOf(ads[1].R.Value)}
	rec := &recorder{Aggregator: &fedsb.FedSB{}}
	cfg.Aggregator = rec
	if _, err := peft.Federate(context.Background(), m, clients, cfg); err != nil {
		t.Fatal(err)
	}
	want := meanDelta(rec.got, startSB, func(ps []*mat.Dense) *mat.Dense { // fc1's ΔW = s·B·R·A
		dw := bra(ads[0].B.Value, ps[0], ads[0].A.Value)
		dw.Scale(ads[0].Scaling(), dw)
		return dw
	})
	sbGap := gap(ads[0].Delta(), want)

	ml, lads := loraMLP(t, 4)
	startL := []*mat.Dense{mat.DenseCopyOf(lads[0].A.Value), mat.DenseCopyOf(lads[0].B.Value)}
	rec = &recorder{Aggregator: peft.FedAvg{}}
	cfg.Aggregator = rec
	if _, err := peft.Federate(context.Background(), ml, clients, cfg); err != nil {
		t.Fatal(err)
	}
	want = meanDelta(rec.got, startL, func(ps []*mat.Dense) *mat.Dense { // fc1's ΔW = s·B·A
		var dw mat.Dense
		dw.Mul(ps[1], ps[0])
		dw.Scale(lads[0].Scaling(), &dw)
		return &dw
	})
	loraGap := gap(lads[0].Delta(), want)
	t.Logf("relative gap between the global ΔW and the clients' mean ΔW: Fed-SB %.3g, FedAvg-LoRA %.3g", sbGap, loraGap)
	if sbGap > 1e-12 || loraGap < 1e-3 {
		t.Errorf("gap: Fed-SB %.3g (want ≤ 1e-12), FedAvg-LoRA %.3g (want > 1e-3)", sbGap, loraGap)
	}
}

func TestBytesPerRound(t *testing.T) {
	clients := digitsClients(t, 6, peft.IIDSplit())
	const r, rounds, per = 5, 2, 4
	m, ads := sbMLP(t, clients, r)
	h, err := peft.Federate(context.Background(), m, clients, peft.FedConfig{Rounds: rounds, ClientsPerRound: per,
		Local: peft.TrainConfig{Steps: 2, BatchSize: 8, LR: 0.05}, Aggregator: &fedsb.FedSB{}})
	if err != nil {
		t.Fatal(err)
	}
	// r² per layer, two layers, four bytes a number, each way.
	if h.Values != 2*r*r || fedsb.RoundValues(ads) != 2*r*r {
		t.Errorf("values per client per round: history %d, RoundValues %d; want 2·r² = %d", h.Values, fedsb.RoundValues(ads), 2*r*r)
	}
	if want := int64(rounds * per * 2 * r * r * 4); h.UpBytes[rounds] != want || h.DownBytes[rounds] != want {
		t.Errorf("bytes after %d rounds: up %d, down %d; want %d each", rounds, h.UpBytes[rounds], h.DownBytes[rounds], want)
	}
	up, down := fedsb.InitValues(ads, len(clients))
	if wantUp, wantDown := 6*(64*64+10*64), 6*(r*(64+64)+r*r+r*(10+64)+r*r); up != wantUp || down != wantDown {
		t.Errorf("InitValues = %d, %d; want %d, %d", up, down, wantUp, wantDown)
	}
}

// With one client, Init is lorasb.Add on its rows: the same B, R and A.
func TestInitOneClientIsLoRASB(t *testing.T) {
	clients := digitsClients(t, 3, peft.IIDSplit())
	for _, step := range []string{"adam", "sgd"} {
		cfg := lorasb.Config{R: 3, LR: 0.05, Targets: []string{"fc1", "fc2"}, Seed: 4, FirstStep: step, Batches: 10, BatchSize: 4}
		m1, _ := peft.LoadDigitsMLP()
		fed, err := fedsb.Init(context.Background(), m1, clients[:1], cfg)
		if err != nil {
			t.Fatal(err)
		}
		m2, _ := peft.LoadDigitsMLP()
		central, err := lorasb.Add(context.Background(), m2, clients[0].Data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range fed {
			if !mat.EqualApprox(fed[i].Delta(), central[i].Delta(), 1e-12) {
				t.Errorf("%s: layer %d's init differs from lorasb.Add's", step, i)
			}
		}
	}
}

// Fed-SB reaches LoRA's accuracy for a quarter of the bytes: at rank 10
// (200 numbers per client per round) against LoRA r = 4 (808), each at its
// best learning rate of {0.01, 0.03, 0.1}, 10 non-IID clients, 10 rounds.
func TestAccuracyVsBytes(t *testing.T) {
	clients := digitsClients(t, 10, peft.DirichletSplit(0.5))
	run := func(m peft.Model, lr float64, agg peft.Aggregator) *peft.FedHistory {
		h, err := peft.Federate(context.Background(), m, clients, peft.FedConfig{Rounds: 10,
			Local: peft.TrainConfig{Steps: 20, BatchSize: 16, LR: lr}, Aggregator: agg, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	ml, _ := loraMLP(t, 4)
	hl := run(ml, 0.03, nil)
	ms, _ := sbMLP(t, clients, 10)
	hs := run(ms, 0.1, &fedsb.FedSB{})
	sbBytes := hs.Bytes()[10]
	// LoRA's accuracy once it had sent as many bytes as Fed-SB in all.
	atSame := hl.EvalMetric[0]
	for i, b := range hl.Bytes() {
		if b <= sbBytes {
			atSame = hl.EvalMetric[i]
		}
	}
	t.Logf("FedAvg-LoRA r=4: accuracy %.4f after %d bytes (%.4f after %d)", hl.Final(), hl.Bytes()[10], atSame, sbBytes)
	t.Logf("Fed-SB r=10:     accuracy %.4f after %d bytes", hs.Final(), sbBytes)
	if 4*sbBytes > hl.Bytes()[10] || hs.Final() < hl.Final()-0.02 || hs.Final() < atSame+0.2 {
		t.Error("Fed-SB should match FedAvg-LoRA's accuracy for a quarter of its bytes, and beat it by 0.2 at equal bytes")
	}
}

// Private Fed-SB against DP-LoRA at the same clipping, noise multiplier
// and so the same ε: with 200 noised numbers instead of 808, Fed-SB keeps
// more accuracy.
func TestPrivateAccuracy(t *testing.T) {
	clients := digitsClients(t, 20, peft.IIDSplit())
	for _, c := range []struct{ clip, sigma float64 }{{2, 0.3}, {0.5, 0.6}} {
		cfg := func(lr float64, agg peft.Aggregator) peft.FedConfig {
			return peft.FedConfig{Rounds: 10, ClientsPerRound: 10, Local: peft.TrainConfig{Steps: 20, BatchSize: 16, LR: lr}, Aggregator: agg, Seed: 1}
		}
		ml, _ := loraMLP(t, 4)
		dpl, _ := dplora.New(dplora.Config{Clip: c.clip, Noise: c.sigma, Seed: 1})
		hl, err := peft.Federate(context.Background(), ml, clients, cfg(0.03, dpl))
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := sbMLP(t, clients, 10)
		dps, _ := dplora.New(dplora.Config{Clip: c.clip, Noise: c.sigma, Seed: 1})
		hs, err := peft.Federate(context.Background(), ms, clients, cfg(0.1, &fedsb.FedSB{DP: dps}))
		if err != nil {
			t.Fatal(err)
		}
		eps := dps.Epsilon(0.5, 10, 1e-5)
		t.Logf("C = %g, σ = %g (ε = %.1f at δ = 1e-5): DP-LoRA %.4f, private Fed-SB %.4f", c.clip, c.sigma, eps, hl.Final(), hs.Final())
		if hs.Final() < hl.Final()+0.15 {
			t.Errorf("C = %g, σ = %g: private Fed-SB %.4f, DP-LoRA %.4f; want Fed-SB ahead by 0.15", c.clip, c.sigma, hs.Final(), hl.Final())
		}
	}
}

func TestErrors(t *testing.T) {
	clients := digitsClients(t, 3, peft.IIDSplit())
	ml, _ := loraMLP(t, 2)
	_, err := peft.Federate(context.Background(), ml, clients, peft.FedConfig{Rounds: 1,
		Local: peft.TrainConfig{Steps: 1, BatchSize: 4, LR: 0.01}, Aggregator: &fedsb.FedSB{}})
	if err == nil || !strings.Contains(err.Error(), "fc1.lora_A.default.weight is a LoRA factor") {
		t.Errorf("Fed-SB over LoRA: error %v, want one naming the LoRA factor", err)
	}
	m, _ := peft.LoadDigitsMLP()
	if _, err := fedsb.Init(context.Background(), m, nil, lorasb.Config{R: 2, LR: 0.1}); err == nil || !strings.Contains(err.Error(), "no clients") {
		t.Errorf("Init without clients: %v", err)
	}
	if _, err := fedsb.Init(context.Background(), m, clients, lorasb.Config{R: 11, LR: 0.1, Targets: []string{"fc2"}}); err == nil || !strings.Contains(err.Error(), "R = 11") {
		t.Errorf("Init with R = 11 on fc2 (10×64): %v", err)
	}
	if len(m.Layers[1].Adapters) != 0 {
		t.Error("a failed Init left an adapter")
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("Fed-SB")
	if !ok || m.Kind != peft.HookMethod || !strings.Contains(m.Paper, "2502.15436") {
		t.Errorf("Fed-SB registered as %+v, %v", m, ok)
	}
}
