// Package lqlora is LQ-LoRA: each frozen weight is split into a quantized
// part, which becomes the layer's base, and a rank-r part, which
// initializes a LoRA adapter that is then trained; an exact small integer
// program picks each matrix's quantizer and rank within a memory budget.
//
// The adapters are plain *lora.LoRA, trained, merged and saved as LoRA; the
// quantized bases are saved beside them (SaveBase, LoadBase).
package lqlora

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/quant"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "LQ-LoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Guo, Greengard, Xing and Kim 2023, LQ-LoRA: Low-rank Plus Quantized Matrix Decomposition for Efficient Language Model Finetuning, arXiv:2311.12023",
		Package: "github.com/gopeft/gopeft/peft/lqlora",
		Summary: "W ≈ Q + L1·L2 by alternating SVD and quantization: Q (NF4, INT…) becomes the frozen base, LoRA starts at s·B·A = L1·L2; an exact ILP picks quantizer and rank per matrix within a bit budget",
		// nil: the adapters are *lora.LoRA, saved in LoRA's format (PEFT
		// loads them as LoRA); the quantized base goes in a separate file
		// written by SaveBase.
		Format: nil,
	})
}

// Config configures Add. LQ-LoRA (Guo, Greengard, Xing and Kim 2023,
// "LQ-LoRA: Low-rank Plus Quantized Matrix Decomposition for Efficient
// Language Model Finetuning", arXiv:2311.12023) decomposes each target
// weight W (d×k) as
//
//	W ≈ Q + L1·L2        Q (d×k) quantized, L1 (d×r), L2 (r×k)
//
// by Decompose's alternation, then trains a LoRA adapter on the frozen,
// dequantized Q:
//
//	h = x·Qᵀ + b + s·x·Aᵀ·Bᵀ,   B = L1/√s (d×r), A = L2/√s (r×k)
//
// so s·B·A = L1·L2 at init whatever α is, and the model's output at init
// differs from the original only by W − Q − L1·L2, the decomposition's
// error. L1 = U_r·S_r^{1/2} and L2 = S_r^{1/2}·V_rᵀ as in the reference code,
// so B and A are balanced. The layer's W is replaced by Q's dequantized
// value (float64 in memory; the quantized form, at Q.Bits() per entry, is
// kept in Layer.Dec.Q and stored by SaveBase). Disabling the adapter gives
// the quantized model, as PEFT does for LoftQ.
//
// Defaults: NF4 with blocks of 64 (QLoRA's format, which LQ-LoRA's NF-k
// family includes), 100 iterations at most with the stop at the first
// non-decreasing error (the reference code's), α = r (s = 1); the README's
// example uses r = 64, α = 16.
//
// Departures: the reference code uses a randomized SVD; gopeft's matrices
// are small, so the SVD is exact. The data-aware variant (Fisher-weighted
// SVD) is not implemented. The reference returns the iterate at which the
// error rose; Decompose returns the one before, the best. Bit allocation
// is solved exactly (Solve) instead of with Gurobi under a time limit, and
// may choose the rank as well as the quantizer (the paper fixes the rank).
type Config struct {
	R int // rank r, 1 ≤ r ≤ min(d, k) of every target (unless Plan gives it)
	// Quantizer quantizes Q; nil means NF4 with blocks of 64.
	Quantizer quant.Quantizer
	// Plan, if set, gives each module its own quantizer and rank (from
	// Solve), overriding R and Quantizer; every target must be in it.
	Plan    map[string]Candidate
	MaxIter int      // iterations at most; 0 means 100
	Fixed   bool     // run all MaxIter iterations (see Options)
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the dropout masks
}

// Layer is one adapted module: its LoRA adapter and the decomposition that
// initialized it.
type Layer struct {
	Module    string
	LoRA      *lora.LoRA      // trained; s·B·A = L1·L2 at init
	Quantizer quant.Quantizer // Q's quantizer
	Dec       *Decomposition  // Q, L1, L2 and the error at each iteration
}

// Bits returns the stored bits per entry of W: Q's storage and the r·(d+k)
// adapter entries at lowRankBits each, over d·k.
func (l *Layer) Bits(lowRankBits int) float64 {
	return float64(l.Dec.StorageBits(lowRankBits)) / float64(l.Dec.Q.Len())
}

// Adapters returns the layers' LoRA adapters, in order.
func Adapters(ls []*Layer) []*lora.LoRA {
	out := make([]*lora.LoRA, len(ls))
	for i, l := range ls {
		out[i] = l.LoRA
	}
	return out
}

// Add decomposes every module of m matching cfg.Targets, attaches a LoRA
// adapter initialized from L1·L2, and replaces each module's W by Q
// dequantized. On error (rank out of range, a bad quantizer setting, an
// unknown module, a module with adapters already, an SVD failure) no
// weight is changed and no adapter is left.
func Add(m peft.Model, cfg Config) ([]*Layer, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context: cancelling ctx stops the
// decompositions and returns its error, with no weight changed.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*Layer, error) {
	name := peft.AdapterName(cfg.Name)
	if cfg.MaxIter < 0 {
		return nil, fmt.Errorf("peft: LQ-LoRA: MaxIter = %d out of range: want ≥ 1 (0 means %d)", cfg.MaxIter, DefaultMaxIter)
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	base := map[*peft.Linear]*mat.Dense{} // Q of each module, applied once all succeed
	var layers []*Layer
	_, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: LQ-LoRA on %s: the module already has adapters %s, and LQ-LoRA changes its base weight", l.Name, quoteList(l.AdapterNames()))
		}
		d, k := l.W.Dims()
		r, q := cfg.R, cfg.Quantizer
		if cfg.Plan != nil {
			c, ok := cfg.Plan[l.Name]
			if !ok {
				return nil, fmt.Errorf("peft: LQ-LoRA on %s: Plan has no entry for the module", l.Name)
			}
			r, q = c.R, c.Quantizer
		}
		if q == nil {
			q = quant.NF4{BlockSize: quant.DefaultBlockSize}
		}
		lcfg := lora.Config{R: r, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA}
		if lcfg.Alpha == 0 {
			lcfg.Alpha = float64(r) // as lora.New: s = 1
		}
		if err := lcfg.Check("LQ-LoRA", l.Name, d, k); err != nil {
			return nil, err
		}
		dec, err := Decompose(ctx, l.W.Value, q, r, &Options{MaxIter: cfg.MaxIter, Fixed: cfg.Fixed})
		if err != nil {
			return nil, fmt.Errorf("peft: LQ-LoRA on %s: Quantizer %s: %w", l.Name, q, err)
		}
		s := scaling(lcfg)
		b := mat.NewDense(d, r, nil) // B = L1/√s (d×r)
		b.Scale(1/math.Sqrt(s), dec.L1)
		a := mat.NewDense(r, k, nil) // A = L2/√s (r×k)
		a.Scale(1/math.Sqrt(s), dec.L2)
		ad, err := lora.FromFactors(l.Name, name, a, b, lcfg, rand.New(rand.NewSource(rng.Int63())))
		if err != nil {
			return nil, err
		}
		base[l] = dec.Q.Dequantize()
		layers = append(layers, &Layer{Module: l.Name, LoRA: ad, Quantizer: q, Dec: dec})
		return ad, nil
	})
	if err != nil {
		return nil, err
	}
	for l, q := range base {
		l.W.Value.Copy(q)
	}
	return layers, nil
}

// scaling returns LoRA's s for cfg: α/r, or α/√r with rsLoRA.
func scaling(cfg lora.Config) float64 {
	if cfg.RSLoRA {
		return cfg.Alpha / math.Sqrt(float64(cfg.R))
	}
	return cfg.Alpha / float64(cfg.R)
}

// quoteList returns names quoted and comma-separated, as peft's errors
// list modules.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
