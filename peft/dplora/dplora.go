// Package dplora is DP-LoRA: federated LoRA whose clients clip their
// updates and add Gaussian noise before sending them, with a Rényi-DP
// accountant that reports the (ε, δ) the rounds spent.
//
// Liu, Zhu, Zha, Gao, Zhong, White and Qiu, 2023, "Differentially Private
// Low-Rank Adaptation of Large Language Model Using Federated Learning",
// arXiv:2312.17493.
package dplora

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// DPLoRA is the server side of DP-LoRA, a peft.Aggregator for
// peft.Federate (Liu et al., 2023, arXiv:2312.17493). The clients train
// LoRA adapters (lora.Add: B d×r, A r×k on each target, r(d + k) numbers
// sent per layer per round); each client's update, the whole vector Δ_k of
// its trained numbers over all layers, goes through the Gaussian mechanism
// before the server sees it,
//
//	Δ̃_k = Δ_k · min(1, C/‖Δ_k‖₂) + N(0, σ²C²·I)        (clip, then noise)
//	Δ   = Σ_k n_k·Δ̃_k / Σ_k n_k                          (FedAvg of the noised updates)
//
// so that any one client's data moves what leaves it by at most C in norm,
// hidden under noise of standard deviation σC per coordinate. Epsilon
// gives the (ε, δ) spent (see accountant.go for the formulas).
//
// Defaults and departures from the paper, whose text and reference code
// (LLM-Data-Privacy/DP-LoRA) leave the clipping point and the accountant
// unspecified:
//   - Noise is added to each client's whole update once per round
//     (user-level DP, as in McMahan et al., 2018, "Learning Differentially
//     Private Recurrent Language Models", arXiv:1710.06963), not per sample
//     inside local training (DP-SGD). In the simulation the noise each
//     client would add is drawn by the server-side Aggregate from Seed;
//     no un-noised update enters the mean. The updates arrive rounded to
//     the dtype peft.Federate sends; the noise is added after.
//   - The accountant takes the noise multiplier σ of one client's upload
//     and the rate q = ClientsPerRound/clients at which a client is drawn,
//     treating the draw as Poisson sampling (peft.Federate draws a fixed
//     number without replacement: the usual approximation). It holds even
//     against a server that sees each upload; the noise in the mean, σC·√K
//     over K clients, would allow a smaller ε against outsiders.
//   - The mean is weighted by the clients' rows n_k, as the paper's
//     server averages; Uniform gives the plain mean.
//   - The paper calibrates σ = √(2 ln(1.25/δ))/ε for one release; NoiseFor
//     calibrates σ for the whole run through the accountant instead.
//
// HuggingFace PEFT has no DP-LoRA (privacy is Opacus's business there); the
// adapters are plain LoRA and save as such.
type DPLoRA struct {
	Clip    float64 // C > 0, the bound on each update's norm
	Noise   float64 // σ ≥ 0, the noise multiplier: std σC per coordinate
	Uniform bool    // average the noised updates uniformly instead of by n_k

	// Norms holds the norms ‖Δ_k‖ before clipping of the last round's
	// updates, in the order received: how often C binds.
	Norms []float64

	rng *rand.Rand
}

var _ peft.Aggregator = (*DPLoRA)(nil)

// Config configures New.
type Config struct {
	Clip    float64 // C > 0
	Noise   float64 // σ ≥ 0 (0: clipping only, no privacy)
	Uniform bool    // plain mean instead of weighting by rows
	Seed    int64   // seeds the noise
}

// New returns a DP-LoRA aggregator. It is an error, naming the field and
// its value, if C is not a finite number > 0 or σ not a finite number ≥ 0.
func New(cfg Config) (*DPLoRA, error) {
	switch {
	case !(cfg.Clip > 0) || math.IsInf(cfg.Clip, 0):
		return nil, fmt.Errorf("peft: DP-LoRA: Clip = %v; want a finite norm bound C > 0", cfg.Clip)
	case !(cfg.Noise >= 0) || math.IsInf(cfg.Noise, 0):
		return nil, fmt.Errorf("peft: DP-LoRA: Noise = %v; want a finite noise multiplier σ ≥ 0", cfg.Noise)
	}
	return &DPLoRA{Clip: cfg.Clip, Noise: cfg.Noise, Uniform: cfg.Uniform, rng: rand.New(rand.NewSource(cfg.Seed))}, nil
}

// Aggregate clips each update to norm C, adds N(0, σ²C²) to each of its
// numbers, and returns the (weighted) mean. It changes the updates.
func (a *DPLoRA) Aggregate(round int, global []*peft.Tensor, updates []peft.ClientUpdate) ([]*mat.Dense, error) {
	a.Privatize(updates)
	return peft.MeanUpdate(global, updates, a.Uniform), nil
}

// Privatize applies the Gaussian mechanism to each update in place: clips
// it to norm C (see ClipUpdate) and adds N(0, σ²C²) to each of its numbers,
// recording the norms before clipping in Norms. Other aggregators (Fed-SB's)
// call it to privatize their clients' updates.
func (a *DPLoRA) Privatize(updates []peft.ClientUpdate) {
	a.Norms = a.Norms[:0]
	for _, u := range updates {
		a.Norms = append(a.Norms, ClipUpdate(u.Delta, a.Clip))
		AddNoise(u.Delta, a.Noise*a.Clip, a.rng)
	}
}

// Epsilon returns the ε that rounds rounds of this aggregator have spent
// at δ when each client is drawn with probability q per round (see the
// package's accountant): +Inf if σ = 0.
func (a *DPLoRA) Epsilon(q float64, rounds int, delta float64) float64 {
	return Epsilon(q, a.Noise, rounds, delta)
}

// Norm returns the Euclidean norm of all the numbers of delta together,
// ‖Δ‖₂ = √(Σ_i ‖Δ_i‖_F²).
func Norm(delta []*mat.Dense) float64 {
	s := 0.0
	for _, d := range delta {
		f := mat.Norm(d, 2)
		s += f * f
	}
	return math.Sqrt(s)
}

// ClipUpdate scales delta in place by min(1, c/‖Δ‖₂), so that its norm
// (see Norm) is at most c, and returns the norm before. It panics if c is
// not > 0.
func ClipUpdate(delta []*mat.Dense, c float64) float64 {
	if !(c > 0) {
		panic(peft.ArgError{Op: "dplora.ClipUpdate", Msg: fmt.Sprintf("c = %v; want > 0", c)})
	}
	n := Norm(delta)
	if n > c {
		for _, d := range delta {
			d.Scale(c/n, d)
		}
	}
	return n
}

// AddNoise adds an independent N(0, std²) draw from rng to every number of
// delta.
func AddNoise(delta []*mat.Dense, std float64, rng *rand.Rand) {
	if std == 0 {
		return
	}
	for _, d := range delta {
		d.Apply(func(_, _ int, v float64) float64 { return v + std*rng.NormFloat64() }, d)
	}
}

func init() {
	peft.Register(peft.Method{
		Name:    "DP-LoRA",
		Kind:    peft.HookMethod,
		Paper:   "Liu, Zhu, Zha, Gao, Zhong, White and Qiu 2023, Differentially Private Low-Rank Adaptation of Large Language Model Using Federated Learning, arXiv:2312.17493",
		Package: "github.com/gopeft/gopeft/peft/dplora",
		Summary: "federated LoRA with clipped, Gaussian-noised client updates (a peft.Aggregator for peft.Federate) and an RDP accountant for ε",
	})
}
