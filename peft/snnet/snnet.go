// Package snnet is SN-Netv2: two pretrained networks of different widths
// ("anchors") joined at a layer by a linear stitching layer, initialised by
// least squares on their activations and then adapted with LoRA.
//
// Pan et al., 2023, "Stitched ViTs are Flexible Vision Backbones",
// arXiv:2307.00154 (reference code: github.com/ziplab/SN-Netv2,
// classification/snnet.py). SN-Net stitches the first l blocks of one
// anchor to the blocks of another from l' on, so that one family of
// pretrained models gives many networks between the anchors in cost and
// accuracy; SN-Netv2 stitches in both directions (small→large and
// large→small) and learns each stitching layer as a low-rank update of its
// least-squares init, which the paper finds stabilises training.
//
// # The math
//
// Let F (front) and G (back) be the anchors, with F_{:l}(x) the output of
// F's first l layers (after their activation) and G_{l':}(h) the rest of G
// from layer l'+1 on. The stitched network at (l, l') is
//
//	S(x) = G_{l':}( h·Mᵀ + 1cᵀ + s·h·Aᵀ·Bᵀ ),   h = F_{:l}(x)
//	h (n×d1), M (d2×d1), c (1×d2), A (r×d1), B (d2×r), s = α/r
//
// The stitch's base M, c is the least-squares map between the anchors'
// activations on the same inputs (the reference code's ps_inv):
//
//	X1 = F_{:l}(X) (n×d1),  X2 = G_{:l'}(X) (n×d2)
//	[Mᵀ; cᵀ] = pinv([X1, 1])·X2        ((d1+1)×d2)
//
// which minimises ‖X1·Mᵀ + 1cᵀ − X2‖_F, with the smallest norm when
// [X1, 1] lacks full column rank (dead ReLU units). If X2 = X1·Mᵀ + 1cᵀ
// exactly and [X1, 1] has full column rank, it returns M and c. M is then
// frozen; LoRA trains A (Kaiming-uniform) and B (zero), so the stitch
// starts as the least-squares stitch exactly, and the bias c stays
// trainable: r·(d1 + d2) + d2 numbers per stitching layer.
//
// # Defaults
//
// α = 1 (the reference config's lora_alpha, so s = 1/r); the bias c is
// trained; the least-squares fit uses 4 batches of 64 examples (256 rows,
// enough to over-determine d1 + 1 ≤ 65 unknowns per output). The rank has
// no default: the reference's r = 64 is for 384→768-wide ViTs, and r ≤
// min(d1, d2) here.
//
// # Where gopeft departs from the paper
//
//   - Anchors are MLPs (peft.MLP) on the digits or character GPTs
//     (peft.GPT) on Moby-Dick, not DeiT ViTs. For MLPs the stitch maps one
//     row per example, and positions are the hidden activations 1 … L−1 of
//     an L-layer MLP; the anchors themselves are the curve's end points.
//     For GPTs (gpt.go: StitchGPT, GPTCurve) it maps one row per token, as
//     the reference does per patch token, and positions are the residual
//     stream's block boundaries 0 … L, the embeddings and the stream the
//     head reads included. Anchors of unequal depth are paired
//     l' = round(l·L_G/L_F), SN-Net's interpolated mapping in spirit.
//   - The anchors are frozen, and only the stitching layer trains (LoRA and
//     bias): gopeft is a PEFT library. Whether the reference trains the
//     anchors too is not verified. With frozen anchors no two stitch
//     configurations share a trained parameter, so SN-Netv2's FLOPs-grouped
//     sampling of one configuration per step would only decide how many
//     steps each stitch gets; Curve trains each stitched network on its own
//     for the same steps.
//   - The least-squares fit uses a few batches instead of the reference's
//     one (its batch holds many tokens per image; ours one row per image).
//     Singular values of [X1, 1] below max(n, d1+1)·ε·σ₁ are dropped, as
//     torch.linalg.pinv does by default.
//   - SN-Net (v1) uses an identity stitch when d1 = d2; gopeft always fits
//     the linear map, which includes the identity when that is best.
//   - The three-segment routes of SN-Netv2 (large→small→large and back) are
//     not built.
//
// # What a notebook reads
//
// New fits one stitch (Stitched.FitError, the fit's relative residual);
// Stitched.M and Stitched.Spectrum give the stitch's starting matrix and
// its singular values, Stitched.LoRA the adapter (its A, B and Delta),
// peft.Ranks the rank per module; Curve evaluates the whole stitching
// space as Points of FLOPs, trained numbers and accuracy before and after
// training, and DigitsAnchors trains two anchors (16 and 64 wide) on the
// digits in about half a second. For GPTs, StitchGPT, GPTCurve (Points in
// bits/char and FLOPs per token) and GPTAnchors (the shipped tiny GPT and
// its wide sibling, C = 64 and 96, with Moby-Dick) do the same; GPTFeatures
// and GPTRest run a GPT up to and on from a block boundary.
//
// With frozen GPT anchors, only some stitches reach between the anchors:
// on held-out Moby-Dick (tiny 2.741, wide 2.591 bits/char) every
// least-squares stitch is worse than both (2.789 … 3.044), and after 400
// steps of LoRA (r = 16) the wide→tiny stitches after blocks 1 and 2 reach
// 2.715 and 2.677, while tiny→wide ones and those at the embeddings stay at
// 2.787 … 2.812 (presumably because the back anchor's blocks were never
// trained on the other's stream, and stay frozen here).
//
// # Files
//
// HuggingFace PEFT has no SN-Net. The stitch's adapters are plain
// *lora.LoRA, which LoRA's format saves and loads (peft.SaveAdapter, a
// LORA file for module "stitch"), so SN-Netv2 registers no format of its
// own. The least-squares M and the trained bias c are base
// weights of the Stitched model: peft.SaveModel writes them (with the
// anchors' copies, under unique names), peft.LoadModel reads them back
// into a Stitched built from the same anchors.
package snnet

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "SN-Netv2",
		Kind:    peft.AdapterMethod,
		Paper:   "Pan et al. 2023, Stitched ViTs are Flexible Vision Backbones, arXiv:2307.00154",
		Package: "github.com/gopeft/gopeft/peft/snnet",
		Summary: "a stitching layer M, c between two anchors of different widths, fitted by least squares, then LoRA (α = 1) on M with c trained",
		// nil: the adapters are *lora.LoRA, which LoRA's format saves and
		// loads (relative to the least-squares M; save the stitched model's
		// base weights with peft.SaveModel too).
		Format: nil,
	})
}

// StitchModule is the name of the stitching layer in a Stitched model, the
// default target of Add.
const StitchModule = "stitch"

// DefaultAlpha is SN-Netv2's lora_alpha: the stitch's LoRA scale is 1/r.
const DefaultAlpha = 1.0

// LeastSquares returns the stitching layer that best maps x1 (n×d1) onto
// x2 (n×d2) in least squares: M (d2×d1) and c (1×d2) minimising
// ‖x1·Mᵀ + 1cᵀ − x2‖_F, from [Mᵀ; cᵀ] = pinv([x1, 1])·x2. When [x1, 1] lacks
// full column rank it returns the solution of least norm; singular values
// of [x1, 1] below max(n, d1+1)·ε·σ₁ count as zero (torch.linalg.pinv's
// default). It panics if x1 and x2 differ in rows, and returns an error if
// they hold NaN or Inf, the SVD does not converge, or ctx is cancelled.
func LeastSquares(ctx context.Context, x1, x2 *mat.Dense) (m, c *mat.Dense, err error) {
	n, d1 := x1.Dims()
	n2, d2 := x2.Dims()
	if n != n2 || n == 0 {
		panic(peft.ShapeError{Op: "snnet.LeastSquares", Got: fmt.Sprintf("X1 %s, X2 %s", peft.ShapeOf(n, d1), peft.ShapeOf(n2, d2)),
			Want: "X1 (n×d1) and X2 (n×d2) with the same n ≥ 1 rows"})
	}
	if err := finite("X1", x1); err != nil {
		return nil, nil, err
	}
	if err := finite("X2", x2); err != nil {
		return nil, nil, err
	}
	x1o := mat.NewDense(n, d1+1, nil) // [X1, 1] (n×(d1+1))
	x1o.Slice(0, n, 0, d1).(*mat.Dense).Copy(x1)
	for i := 0; i < n; i++ {
		x1o.Set(i, d1, 1)
	}
	svd, err := accel.ThinSVD(ctx, x1o)
	if err != nil {
		return nil, nil, fmt.Errorf("peft: SN-Netv2 least squares: SVD of [X1, 1] %s: %w", peft.ShapeOf(n, d1+1), err)
	}
	// pinv([X1, 1])·X2 = V·S⁺·Uᵀ·X2, keeping the p singular values above
	// the cutoff. U is n×q, S q, VT q×(d1+1), q = min(n, d1+1).
	cut := float64(max(n, d1+1)) * 0x1p-52 * svd.S[0]
	p := 0
	for p < len(svd.S) && svd.S[p] > cut {
		p++
	}
	var utx mat.Dense // Uᵀ·X2 (p×d2), row i scaled by 1/σ_i
	utx.Mul(svd.U.Slice(0, n, 0, p).T(), x2)
	for i := 0; i < p; i++ {
		row := utx.RawRowView(i)
		for j := range row {
			row[j] /= svd.S[i]
		}
	}
	var theta mat.Dense // [Mᵀ; cᵀ] ((d1+1)×d2)
	theta.Mul(svd.VT.Slice(0, p, 0, d1+1).T(), &utx)
	m = mat.DenseCopyOf(theta.Slice(0, d1, 0, d2).T()) // (d2×d1)
	c = mat.DenseCopyOf(theta.Slice(d1, d1+1, 0, d2))  // (1×d2)
	return m, c, nil
}

// finite returns an error naming the first NaN or Inf of x.
func finite(what string, x *mat.Dense) error {
	r, c := x.Dims()
	for i := 0; i < r; i++ {
		for j, v := range x.RawRowView(i) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("peft: SN-Netv2 least squares: %s %s holds %v at (%d,%d)", what, peft.ShapeOf(r, c), v, i, j)
			}
		}
	}
	return nil
}

// Config configures Add: SN-Netv2's LoRA on stitching layers.
type Config struct {
	R int // rank r, 1 ≤ r ≤ min(d1, d2) of every target
	// Alpha is α, the LoRA scale being α/r; 0 means DefaultAlpha (1), the
	// reference's lora_alpha, not LoRA's α = r.
	Alpha   float64
	Targets []string // target modules; {StitchModule} if empty
	// FreezeBias keeps the targets' biases frozen. SN-Netv2 trains the
	// stitch's bias c, so Add unfreezes it unless this is set.
	FreezeBias bool
	Name       string // adapter name, "default" if empty
	Seed       int64  // seeds A's init
}

// lora returns the LoRA config cfg amounts to, with the defaults applied.
func (cfg Config) lora(name string) lora.Config {
	alpha := cfg.Alpha
	if alpha == 0 {
		alpha = DefaultAlpha
	}
	return lora.Config{R: cfg.R, Alpha: alpha, Targets: cfg.Targets, Name: name, Seed: cfg.Seed}
}

// Add freezes m's base weights and attaches to every module matching
// cfg.Targets (the stitch of a Stitched model by default) a LoRA adapter
// with SN-Netv2's settings: A Kaiming-uniform, B zero, s = α/r with α = 1
// unless set, no dropout. Unless cfg.FreezeBias, it then makes the
// targets' biases trainable again, as SN-Netv2 trains the stitch's bias.
// Errors (a rank outside [1, min(d, k)], a negative α, an unknown target)
// name the module and the value, and leave m as it was.
//
// A later peft.AddAdapter (any method's Add) freezes every base weight
// again, the biases included.
func Add(m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	if len(cfg.Targets) == 0 {
		cfg.Targets = []string{StitchModule}
	}
	name := peft.AdapterName(cfg.Name)
	lcfg := cfg.lora(name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	var mods []*peft.Linear
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		if err := lcfg.Check("SN-Netv2", l.Name, d, k); err != nil {
			return nil, err
		}
		mods = append(mods, l)
		return lora.New(l.Name, name, d, k, lcfg, rng)
	})
	if err != nil {
		return nil, err
	}
	if !cfg.FreezeBias {
		for _, l := range mods {
			if l.B != nil {
				l.B.Unfreeze()
			}
		}
	}
	return lora.As(added), nil
}
