package loralimits

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Row is one line of Diagnose's table: one block of the GPT at one input
// scale and one adapter scale.
type Row struct {
	Block        int     // the block i of blocks.i.attn
	InputScale   float64 // X is multiplied by this
	AdapterScale float64 // the adapter's ΔW is multiplied by this
	L            int     // sequence length
	QMax, KMax   float64 // ‖X·W_Qᵀ‖_max, ‖X·W_Kᵀ‖_max, base weights
	// QMaxAdapted and KMaxAdapted are the same with the active adapter's
	// update (scaled) added: ‖X·(W + c·ΔW)ᵀ‖_max; equal to QMax, KMax
	// with no adapter.
	QMaxAdapted, KMaxAdapted float64
	Threshold                float64 // √(ln L): the scale, not the constant
	Below                    bool    // max(QMaxAdapted, KMaxAdapted) < Threshold
	ScoreMax                 float64 // max |Q_h·K_hᵀ|/√d_h over heads and causal entries
	Degree                   int     // g, the Taylor degree
	ExpErr                   float64 // worst head's ‖exp(S) − P_g(S)‖_F/‖exp(S)‖_F
	AttnErr                  float64 // worst head's max-entry error of the attention matrix
	PolyRank                 float64 // C(d_h + g, g), the polynomial kernel's rank
}

// String returns the row as one line of a table.
func (r Row) String() string {
	return fmt.Sprintf("block %d  x·%-5g ΔW·%-4g  ‖Q‖max %7.3f ‖K‖max %7.3f (adapted %7.3f %7.3f)  √ln L %.3f below %-5v  max|S| %7.3f  deg %d: exp err %.3g attn err %.3g",
		r.Block, r.InputScale, r.AdapterScale, r.QMax, r.KMax, r.QMaxAdapted, r.KMaxAdapted, r.Threshold, r.Below, r.ScoreMax, r.Degree, r.ExpErr, r.AttnErr)
}

// recorder is a temporary adapter that keeps the input of the layer it
// wraps and otherwise does what the wrapped adapter (or none) does.
type recorder struct {
	inner peft.Adapter
	x     *mat.Dense
}

func (r *recorder) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	r.x = mat.DenseCopyOf(x.Value)
	if r.inner != nil {
		return r.inner.Forward(l, x, base)
	}
	return base
}
func (r *recorder) Params() []*peft.Tensor { return nil }
func (r *recorder) Rank() int {
	if r.inner != nil {
		return r.inner.Rank()
	}
	return 0
}
func (r *recorder) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r.inner != nil {
		return r.inner.MergedWeight(w0)
	}
	return mat.DenseCopyOf(w0)
}

const captureName = "loralimits.capture"

// Capture runs g on one sequence of tokens and returns, for each block,
// the input X (L×C) of its attn.q and attn.k layers (LN₁ of the residual
// stream, the same for both), read by a temporary adapter wrapping each
// layer and removed afterwards. It is an error if an adapter is merged
// into one of those layers.
func Capture(g *peft.GPT, tokens []int) (xq, xk []*mat.Dense, err error) {
	type saved struct {
		l      *peft.Linear
		active string
		rec    *recorder
	}
	var ss []saved
	defer func() {
		for _, s := range ss {
			s.l.Detach(captureName)
			if s.active != "" {
				s.l.Active = s.active
			}
		}
	}()
	for _, b := range g.Blocks {
		for _, l := range []*peft.Linear{b.Q, b.K} {
			rec := &recorder{inner: l.ActiveAdapter()}
			s := saved{l: l, active: l.Active, rec: rec}
			if err := l.Attach(captureName, rec); err != nil {
				return nil, nil, err
			}
			ss = append(ss, s)
		}
	}
	g.Forward(tokens, 1)
	for i := 0; i < len(ss); i += 2 {
		xq = append(xq, ss[i].rec.x)
		xk = append(xk, ss[i+1].rec.x)
	}
	return xq, xk, nil
}

// Options configures Diagnose.
type Options struct {
	InputScales   []float64 // factors applied to X; {1} if empty
	AdapterScales []float64 // factors applied to each active adapter's ΔW; {1} if empty
	Degree        int       // Taylor degree g ≥ 0 of the polynomial method
}

// Diagnose measures, for g on one sequence of tokens (length L ≤
// Context), each block's max-entry norms of X·W_Qᵀ and X·W_Kᵀ, base and
// adapted, against √(ln L), and the error of the degree-o.Degree
// polynomial approximation of its causal attention scores, for every
// input scale and adapter scale in o: one Row per block and pair of
// scales, input scale outermost. The active adapters of attn.q and attn.k
// enter through their MergedWeight; g is not changed.
func Diagnose(g *peft.GPT, tokens []int, o Options) ([]Row, error) {
	L := len(tokens)
	if L < 2 || L > g.Config.Context {
		return nil, fmt.Errorf("peft: loralimits: %d tokens; want 2 ≤ L ≤ Context = %d", L, g.Config.Context)
	}
	if o.Degree < 0 {
		return nil, fmt.Errorf("peft: loralimits: Options.Degree = %d; want g ≥ 0", o.Degree)
	}
	ins, ads := o.InputScales, o.AdapterScales
	if len(ins) == 0 {
		ins = []float64{1}
	}
	if len(ads) == 0 {
		ads = []float64{1}
	}
	for _, v := range append(append([]float64(nil), ins...), ads...) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("peft: loralimits: scale %v is not finite", v)
		}
	}
	xq, xk, err := Capture(g, tokens)
	if err != nil {
		return nil, err
	}
	H := g.Config.Heads
	dh := g.Config.Dim / H
	var rows []Row
	for _, si := range ins {
		for _, sa := range ads {
			for bi, b := range g.Blocks {
				wq, dq := weights(b.Q)
				wk, dk := weights(b.K)
				q := project(xq[bi], si, wq, nil, 0)
				k := project(xk[bi], si, wk, nil, 0)
				qa := project(xq[bi], si, wq, dq, sa)
				ka := project(xk[bi], si, wk, dk, sa)
				r := Row{Block: bi, InputScale: si, AdapterScale: sa, L: L,
					QMax: MaxNorm(q), KMax: MaxNorm(k), QMaxAdapted: MaxNorm(qa), KMaxAdapted: MaxNorm(ka),
					Threshold: Threshold(L), Degree: o.Degree, PolyRank: Monomials(dh, o.Degree)}
				r.Below = math.Max(r.QMaxAdapted, r.KMaxAdapted) < r.Threshold
				for h := 0; h < H; h++ {
					qh := qa.Slice(0, L, h*dh, (h+1)*dh).(*mat.Dense)
					kh := ka.Slice(0, L, h*dh, (h+1)*dh).(*mat.Dense)
					e, a, s := PolyError(qh, kh, o.Degree)
					r.ExpErr, r.AttnErr, r.ScoreMax = math.Max(r.ExpErr, e), math.Max(r.AttnErr, a), math.Max(r.ScoreMax, s)
				}
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// weights returns l's base weight W (d×k) and its active adapter's update
// ΔW = MergedWeight(W) − W (nil with no adapter).
func weights(l *peft.Linear) (w, dw *mat.Dense) {
	w = l.W.Value
	a := l.ActiveAdapter()
	if a == nil || l.Merged() != "" {
		return w, nil
	}
	dw = a.MergedWeight(mat.DenseCopyOf(w))
	dw.Sub(dw, w)
	return w, dw
}

// project returns si·X·(W + sa·ΔW)ᵀ (L×d), ΔW omitted if nil.
func project(x *mat.Dense, si float64, w, dw *mat.Dense, sa float64) *mat.Dense {
	eff := mat.DenseCopyOf(w)
	if dw != nil {
		var s mat.Dense
		s.Scale(sa, dw)
		eff.Add(eff, &s)
	}
	var out mat.Dense
	out.Mul(x, eff.T())
	out.Scale(si, &out)
	return &out
}
