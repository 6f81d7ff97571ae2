package dplora_test

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dplora"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

func randomUpdate(rng *rand.Rand, scale float64) []*mat.Dense {
	var out []*mat.Dense
	for _, s := range [][2]int{{4, 5}, {3, 4}, {1, 7}} {
		m := mat.NewDense(s[0], s[1], nil)
		m.Apply(func(_, _ int, _ float64) float64 { return scale * rng.NormFloat64() }, m)
		out = append(out, m)
	}
	return out
}

func TestClipUpdateBoundsNorm(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const c = 1.5
	for _, scale := range []float64{0.01, 0.1, 1, 10} {
		d := randomUpdate(rng, scale)
		before := dplora.Norm(d)
		want := d[0].At(0, 0) * math.Min(1, c/before)
		got := dplora.ClipUpdate(d, c)
		after := dplora.Norm(d)
		switch {
		case got != before:
			t.Errorf("scale %g: ClipUpdate returned %g, want the norm before, %g", scale, got, before)
		case before > c && math.Abs(after-c) > 1e-12:
			t.Errorf("scale %g: norm %g clipped to %.15g, want exactly C = %g", scale, before, after, c)
		case before <= c && after != before:
			t.Errorf("scale %g: norm %g ≤ C changed to %g", scale, before, after)
		case math.Abs(d[0].At(0, 0)-want) > 1e-15:
			t.Errorf("scale %g: clipping is not a uniform scaling", scale)
		}
	}
}

func TestNoiseVariance(t *testing.T) {
	const c, sigma, n = 2.0, 1.5, 40000
	agg, err := dplora.New(dplora.Config{Clip: c, Noise: sigma, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	// One client with a zero update: what the server gets is the noise alone.
	global := []*peft.Tensor{peft.NewParam("p", mat.NewDense(200, n/200, nil))}
	up := peft.ClientUpdate{Client: 0, Samples: 1, Delta: []*mat.Dense{mat.NewDense(200, n/200, nil)}}
	step, err := agg.Aggregate(1, global, []peft.ClientUpdate{up})
	if err != nil {
		t.Fatal(err)
	}
	var sum, sum2 float64
	for _, v := range step[0].RawMatrix().Data {
		sum += v
		sum2 += v * v
	}
	mean := sum / n
	std := math.Sqrt(sum2/n - mean*mean)
	want := sigma * c
	t.Logf("noise: mean %.5f, std %.5f (σC = %g)", mean, std, want)
	// Standard errors: σC/√n for the mean, σC/√(2n) for the std.
	if math.Abs(mean) > 4*want/math.Sqrt(n) || math.Abs(std-want) > 4*want/math.Sqrt(2*n) {
		t.Errorf("noise mean %.5f, std %.5f; want 0 and σC = %g", mean, std, want)
	}
}

// Published values of the subsampled Gaussian mechanism's privacy.
func TestAccountantPublished(t *testing.T) {
	// Opacus, opacus/tests/accountants_test.py (test_rdp_accountant): σ = 1.5,
	// q = 0.04, 2,250 steps, δ = 1e-5, over the same orders: ε = 7.32911117143.
	if got := dplora.Epsilon(0.04, 1.5, 2250, 1e-5); math.Abs(got-7.32911117143) > 1e-6 {
		t.Errorf("Opacus case: ε = %.11f, want 7.32911117143", got)
	}
	// Google dp_accounting, rdp_privacy_accountant_test.py
	// (test_compute_rdp_poisson_sampled_gaussian): σ = 2.5, q = 0.01, 50
	// steps, rtol 1e-4.
	for _, c := range []struct{ order, rdp float64 }{{2.5, 1.08548710e-03}, {5, 2.18075656e-03}, {50, 2.38460375e-02}, {100, 1.67416308e02}} {
		if got := 50 * dplora.RDP(0.01, 2.5, c.order); math.Abs(got-c.rdp) > 1e-4*c.rdp {
			t.Errorf("dp_accounting case, α = %g: RDP %.8e, want %.8e", c.order, got, c.rdp)
		}
	}
	// Abadi et al. 2016 (§3.1): q = 0.01, σ = 4, T = 10,000, δ = 1e-5 gives
	// ε ≈ 1.26 with the moments accountant; RDP with the tighter conversion
	// must not exceed it.
	got := dplora.Epsilon(0.01, 4, 10000, 1e-5)
	t.Logf("Abadi et al. case: ε = %.4f (moments accountant: 1.26)", got)
	if got > 1.26 || got < 0.9 {
		t.Errorf("Abadi et al. case: ε = %.4f, want in [0.9, 1.26]", got)
	}
	// dp_accounting's test_compute_epsilon_delta_pure_dp: constant RDP 1.1
	// at orders 2…32 gives ε = 1.32783806176 at order 32 for δ = 1e-5.
	var orders, rdp []float64
	for a := 2; a <= 32; a++ {
		orders = append(orders, float64(a))
		rdp = append(rdp, 1.1)
	}
	if eps, order := dplora.EpsilonFromRDP(orders, rdp, 1e-5); math.Abs(eps-1.32783806176) > 1e-10 || order != 32 {
		t.Errorf("pure DP: ε = %.11f at α = %g, want 1.32783806176 at 32", eps, order)
	}
	// Opacus's get_noise_multiplier test: ε = 8, δ = 1e-5, q = 0.04, 90
	// epochs gives σ = 1.425307617 (found to within ε 0.01); NoiseFor finds
	// the σ whose ε is 8 to within 0.1% of σ.
	sigma, err := dplora.NoiseFor(8, 1e-5, 0.04, 2250)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NoiseFor(ε = 8): σ = %.4f (Opacus 1.4253)", sigma)
	if sigma > 1.4253 || sigma < 1.40 || dplora.Epsilon(0.04, sigma, 2250, 1e-5) > 8 || dplora.Epsilon(0.04, 0.998*sigma, 2250, 1e-5) <= 8 {
		t.Errorf("NoiseFor(ε = 8) = %.5f; want the smallest σ with ε ≤ 8, just under Opacus's 1.4253", sigma)
	}
}

func TestRDPKnownAnswers(t *testing.T) {
	// q = 1 is the plain Gaussian mechanism: ε_α = α/(2σ²).
	for _, a := range []float64{1.5, 2, 7.3, 40} {
		if got, want := dplora.RDP(1, 2.7, a), a/(2*2.7*2.7); math.Abs(got-want) > 1e-15*want {
			t.Errorf("q = 1, α = %g: RDP %g, want α/(2σ²) = %g", a, got, want)
		}
	}
	// The quadrature (fractional α) agrees with the binomial sum (integer α)
	// at the orders where both apply, approached from either side.
	for _, a := range []float64{2, 3, 10, 40} {
		lo, mid, hi := dplora.RDP(0.05, 1.3, a-1e-9), dplora.RDP(0.05, 1.3, a), dplora.RDP(0.05, 1.3, a+1e-9)
		if math.Abs(lo-mid) > 1e-7*mid || math.Abs(hi-mid) > 1e-7*mid {
			t.Errorf("α = %g: quadrature %.12g, %.12g around the binomial sum %.12g", a, lo, hi, mid)
		}
	}
	if dplora.Epsilon(0, 1, 100, 1e-5) != 0 || !math.IsInf(dplora.Epsilon(0.1, 0, 1, 1e-5), 1) {
		t.Error("q = 0 must cost nothing and σ = 0 must cost ε = +Inf")
	}
}

func TestEpsilonMonotone(t *testing.T) {
	prev := 0.0
	for _, T := range []int{1, 10, 100, 1000, 10000} {
		e := dplora.Epsilon(0.01, 1.1, T, 1e-5)
		if e <= prev {
			t.Errorf("ε(T = %d) = %g not above ε at fewer rounds, %g", T, e, prev)
		}
		prev = e
	}
	prev = math.Inf(1)
	for _, s := range []float64{0.5, 0.8, 1, 2, 4, 8} {
		e := dplora.Epsilon(0.01, s, 1000, 1e-5)
		if e >= prev {
			t.Errorf("ε(σ = %g) = %g not below ε at less noise, %g", s, e, prev)
		}
		prev = e
	}
}

func loraMLP(t testing.TB) *peft.MLP {
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Add(m, lora.Config{R: 4, Targets: []string{"fc1", "fc2"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return m
}

func params(m peft.Model) []*mat.Dense {
	var out []*mat.Dense
	for _, p := range peft.TrainableOf(m) {
		out = append(out, mat.DenseCopyOf(p.Value))
	}
	return out
}

// With σ = 0 and a bound C that never binds, DP-LoRA is FedAvg-LoRA.
func TestNoNoiseIsFedAvg(t *testing.T) {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	clients, err := peft.NewClients(data, 4, peft.IIDSplit(), 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := peft.FedConfig{Rounds: 2, Local: peft.TrainConfig{Steps: 3, BatchSize: 8, LR: 1e-2}, BytesPerValue: 8}
	a, b := loraMLP(t), loraMLP(t)
	if _, err := peft.Federate(context.Background(), a, clients, cfg); err != nil {
		t.Fatal(err)
	}
	agg, _ := dplora.New(dplora.Config{Clip: 1e6})
	cfg.Aggregator = agg
	if _, err := peft.Federate(context.Background(), b, clients, cfg); err != nil {
		t.Fatal(err)
	}
	pa, pb := params(a), params(b)
	for i := range pa {
		if !mat.EqualApprox(pa[i], pb[i], 1e-15) {
			t.Fatalf("parameter %d differs from FedAvg's", i)
		}
	}
}

// Accuracy on the ten digits falls as the privacy budget shrinks.
func TestAccuracyFallsWithEpsilon(t *testing.T) {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	clients, err := peft.NewClients(data, 20, peft.IIDSplit(), 1)
	if err != nil {
		t.Fatal(err)
	}
	const rounds, per = 10, 10
	q := float64(per) / float64(len(clients))
	var prevAcc, prevEps = 2.0, math.Inf(1)
	for _, sigma := range []float64{0, 0.3, 0.6} {
		agg, err := dplora.New(dplora.Config{Clip: 2, Noise: sigma, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		h, err := peft.Federate(context.Background(), loraMLP(t), clients, peft.FedConfig{Rounds: rounds, ClientsPerRound: per,
			Local: peft.TrainConfig{Steps: 20, BatchSize: 16, LR: 3e-2}, Aggregator: agg, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		eps, acc := agg.Epsilon(q, rounds, 1e-5), h.Final()
		t.Logf("σ = %.1f: ε = %.1f (δ = 1e-5), accuracy %.4f, %d bytes", sigma, eps, acc, h.Bytes()[rounds])
		if sigma > 0 && (!(eps < prevEps) || acc > prevAcc-0.15) {
			t.Errorf("σ = %g: ε %.1f, accuracy %.4f; want both below the previous (%.1f, %.4f), accuracy by 0.15", sigma, eps, acc, prevEps, prevAcc)
		}
		prevAcc, prevEps = acc, eps
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  dplora.Config
		want string
	}{
		{dplora.Config{}, "Clip = 0"},
		{dplora.Config{Clip: math.Inf(1)}, "Clip = +Inf"},
		{dplora.Config{Clip: 1, Noise: -1}, "Noise = -1"},
		{dplora.Config{Clip: 1, Noise: math.NaN()}, "Noise = NaN"},
	} {
		if _, err := dplora.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): error %v, want one naming %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := dplora.NoiseFor(0, 1e-5, 0.1, 10); err == nil || !strings.Contains(err.Error(), "ε = 0") {
		t.Errorf("NoiseFor(ε = 0): error %v", err)
	}
	if err := peft.Maybe(func() { dplora.RDP(1.5, 1, 2) }); err == nil || !strings.Contains(err.Error(), "q = 1.5") {
		t.Errorf("RDP(q = 1.5): %v, want a panic naming q", err)
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("DP-LoRA")
	if !ok || m.Kind != peft.HookMethod || !strings.Contains(m.Paper, "2312.17493") {
		t.Errorf("DP-LoRA registered as %+v, %v", m, ok)
	}
}
