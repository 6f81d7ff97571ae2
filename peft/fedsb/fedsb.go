// Package fedsb is Fed-SB: federated LoRA-SB, whose clients train and send
// only the r×r matrix R between a frozen B and A that all of them share,
// so that the server's average of R is the average of the updates.
//
// Singhal, Ponkshe, Vartak, Varshney and Vepakomma, 2025, "Fed-SB: A Silver
// Bullet for Extreme Communication Efficiency and Performance in (Private)
// Federated LoRA Fine-Tuning", arXiv:2502.15436.
package fedsb

import (
	"context"
	"fmt"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/dplora"
	"github.com/gopeft/gopeft/peft/lorasb"
	"gonum.org/v1/gonum/mat"
)

// FedSB is the server side of Fed-SB, a peft.Aggregator for peft.Federate
// (Singhal et al., 2025, arXiv:2502.15436). Every client holds the same
// LoRA-SB adapters (peft/lorasb: ΔW = s·B·R·A, B d×r and A r×k frozen and
// shared, R r×r trained), so a round sends r² numbers per layer each way
// per client, against r(d + k) for LoRA, and the server's mean of R is
// exact:
//
//	R_{t+1} = R_t + mean_k(R_k − R_t) = mean_k R_k
//	s·B·R_{t+1}·A = mean_k s·B·R_k·A                 (B and A are shared)
//
// whereas FedAvg of LoRA's own factors gives mean_k(B_k)·mean_k(A_k), which
// is not mean_k(B_k·A_k): the error Fed-SB's paper calls the source of
// FedIT's loss. Other trainable tensors (a classifier head, as in the
// reference's "classifier" keys) are averaged the same way.
//
// Private Fed-SB: with DP set, each client's update (all its R's together)
// is clipped and noised by DP-LoRA's Gaussian mechanism before the mean
// (see peft/dplora); with r² numbers instead of r(d + k) the same noise
// multiplier adds far less noise in all, and averaging R adds no noise
// products (the paper's two claims for the private setting).
//
// Departures from the paper's reference code (CERT-Lab/fed-sb; the fork
// putssander/fed-sb was read, fed_agg.py and initialization_utils.py):
//   - The server's mean is weighted by the clients' rows n_k by default,
//     as peft.FedAvg; Uniform gives the reference's plain mean.
//   - The reference initializes B, R and A once from the gradient of the
//     whole training set before the federated rounds. Init does the same
//     from the clients' own gradients: each sends its summed gradients
//     (d×k per layer, once) and the server builds LoRA-SB's init from
//     their total, which is the pooled estimate (see Init). Or attach the
//     adapters with lorasb.Add on data the server may see.
//
// HuggingFace PEFT has no Fed-SB; the adapters are LoRA-SB's and save in
// its format ("GOPEFT_LORASB").
type FedSB struct {
	Uniform bool // plain mean of the updates instead of weighting by rows
	// DP, if set, clips and noises each client's update first (its Clip,
	// Noise and noise source are used; its Uniform is ignored).
	DP *dplora.DPLoRA
}

var _ peft.Aggregator = (*FedSB)(nil)

// Aggregate returns the (weighted) mean of the updates of R (and of any
// other trainable tensor that is not a LoRA factor), after DP's clipping
// and noise if set. It is an error if a parameter is a LoRA factor
// (lora_A, lora_B), whose mean would not be exact.
func (f *FedSB) Aggregate(round int, global []*peft.Tensor, updates []peft.ClientUpdate) ([]*mat.Dense, error) {
	for _, p := range global {
		if strings.Contains(p.Name, ".lora_A.") || strings.Contains(p.Name, ".lora_B.") {
			return nil, fmt.Errorf("peft: Fed-SB: %s is a LoRA factor, whose mean is not the mean of the updates; attach LoRA-SB (fedsb.Init, lorasb.Add) or use peft.FedAvg", p.Name)
		}
	}
	if f.DP != nil {
		f.DP.Privatize(updates)
	}
	return peft.MeanUpdate(global, updates, f.Uniform), nil
}

// Init attaches to every module of m matching cfg.Targets a LoRA-SB
// adapter initialized, as lorasb.Add does, from an estimate of full
// fine-tuning's first update, here made from the clients' data without
// pooling it: client k (seeded with cfg.Seed + k) sums the gradients of
// cfg.Batches minibatches of its rows, G_k = Σ_i ∇_W L_i, and sends it; the
// server forms ΔW₁ = −η·sign(Σ_k G_k) ("adam") or −η·Σ_k G_k / (K·N)
// ("sgd"), the estimate lorasb.Add would make from all K·N minibatches,
// takes its SVD and sends every client B, R and A. That costs, once, d·k
// numbers per layer from each client and r(d + k) + r² to each (see
// InitValues). It is an error if cfg does not fit a target (see
// lorasb.Config.Check) or a client's estimate fails.
func Init(ctx context.Context, m peft.Model, clients []*peft.Client, cfg lorasb.Config) ([]*lorasb.LoRASB, error) {
	if len(clients) == 0 {
		return nil, fmt.Errorf("peft: Fed-SB: Init: no clients")
	}
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	for _, l := range mods {
		d, k := l.W.Dims()
		if err := cfg.Check(l.Name, d, k); err != nil {
			return nil, err
		}
	}
	adam := cfg.FirstStep == "" || cfg.FirstStep == "adam"
	var total []lorasb.Update
	for i, c := range clients {
		// Each client's "sgd" estimate is −η·mean_i G_i, from which the
		// server recovers the client's mean gradient exactly.
		ccfg := cfg
		ccfg.FirstStep, ccfg.Seed = "sgd", cfg.Seed+int64(i)
		ups, err := lorasb.EstimateUpdates(ctx, m, c.Data, ccfg)
		if err != nil {
			return nil, fmt.Errorf("peft: Fed-SB: Init: client %d: %w", c.ID, err)
		}
		if total == nil {
			total = ups
			continue
		}
		for j := range total {
			total[j].Delta.Add(total[j].Delta, ups[j].Delta)
		}
	}
	for _, u := range total {
		if adam {
			// −η·sign(ΣG) = η·sign(Σ_k (−η·Ḡ_k)) as every client's N is the same.
			u.Delta.Apply(func(_, _ int, v float64) float64 { return cfg.LR * sign(v) }, u.Delta)
		} else {
			u.Delta.Scale(1/float64(len(clients)), u.Delta)
		}
	}
	return lorasb.AddUpdates(ctx, m, total, cfg)
}

func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// InitValues returns the numbers Init exchanges once with K clients for
// adapters ads: up, each client's d·k gradient sums per layer; down, each
// client's B, R and A, r(d + k) + r² per layer.
func InitValues(ads []*lorasb.LoRASB, clients int) (up, down int) {
	for _, a := range ads {
		d, r := a.B.Dims()
		_, k := a.A.Dims()
		up += clients * d * k
		down += clients * (r*(d+k) + r*r)
	}
	return up, down
}

// RoundValues returns the numbers one client sends (and receives) per
// round for adapters ads: r² per layer.
func RoundValues(ads []*lorasb.LoRASB) int {
	n := 0
	for _, a := range ads {
		r := a.Rank()
		n += r * r
	}
	return n
}

// FactorMeanGap returns ‖mean_k(B_k·A_k) − mean_k(B_k)·mean_k(A_k)‖_F, the
// error FedAvg of LoRA's factors makes in the mean update of one layer
// (zero for Fed-SB's shared B and A). It panics if the shapes differ.
func FactorMeanGap(bs, as []*mat.Dense) float64 {
	if len(bs) != len(as) || len(bs) == 0 {
		panic(peft.ArgError{Op: "fedsb.FactorMeanGap", Msg: fmt.Sprintf("%d B's and %d A's", len(bs), len(as))})
	}
	d, r := bs[0].Dims()
	_, k := as[0].Dims()
	var meanBA, meanB, meanA mat.Dense
	meanBA.ReuseAs(d, k)
	meanB.ReuseAs(d, r)
	meanA.ReuseAs(r, k)
	meanBA.Zero()
	meanB.Zero()
	meanA.Zero()
	for i := range bs {
		if br, bc := bs[i].Dims(); br != d || bc != r {
			panic(peft.ShapeError{Op: "fedsb.FactorMeanGap", Got: peft.ShapeOf(br, bc), Want: peft.ShapeOf(d, r) + ", the first B's"})
		}
		if ar, ac := as[i].Dims(); ar != r || ac != k {
			panic(peft.ShapeError{Op: "fedsb.FactorMeanGap", Got: peft.ShapeOf(ar, ac), Want: peft.ShapeOf(r, k) + ", the first A's"})
		}
		var ba mat.Dense
		ba.Mul(bs[i], as[i])
		meanBA.Add(&meanBA, &ba)
		meanB.Add(&meanB, bs[i])
		meanA.Add(&meanA, as[i])
	}
	n := float64(len(bs))
	meanBA.Scale(1/n, &meanBA)
	meanB.Scale(1/n, &meanB)
	meanA.Scale(1/n, &meanA)
	var prod mat.Dense
	prod.Mul(&meanB, &meanA)
	prod.Sub(&meanBA, &prod)
	return mat.Norm(&prod, 2)
}

func init() {
	peft.Register(peft.Method{
		Name:    "Fed-SB",
		Kind:    peft.HookMethod,
		Paper:   "Singhal, Ponkshe, Vartak, Varshney and Vepakomma 2025, Fed-SB: A Silver Bullet for Extreme Communication Efficiency and Performance in (Private) Federated LoRA Fine-Tuning, arXiv:2502.15436",
		Package: "github.com/gopeft/gopeft/peft/fedsb",
		Summary: "federated LoRA-SB: clients train and send only R (r² per layer) between shared frozen B and A; the server's mean of R is the exact mean update (a peft.Aggregator for peft.Federate)",
	})
}
