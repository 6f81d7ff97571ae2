// Package qgalore is Q-GaLore: GaLore with its projectors stored in INT4,
// the weights it trains kept in INT8 with stochastic rounding, and a
// per-layer projector refresh interval that grows while the layer's
// gradient subspace stays put.
package qgalore

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/quant"
	"gonum.org/v1/gonum/mat"
)

// QGaLore is GaLore with quantized projectors and weights and a lazy,
// layer-adaptive subspace (Zhang et al. 2024, "Q-GaLore: Quantized GaLore
// with INT4 Projection and Layer-Adaptive Low-Rank Gradients",
// arXiv:2407.08296). For a targeted matrix W (m×n) with gradient G (m×n):
//
//	at a refresh:   G = U·Σ·Vᵀ (thin SVD)
//	m < n (left):   P̃ = INT4(U[:, :r]) (m×r),   R = P̃ᵀ·G (r×n),  back(N) = P̃·N
//	m ≥ n (right):  Q̃ = INT4(Vᵀ[:r, :]) (r×n),  R = G·Q̃ᵀ (m×r),  back(N) = N·Q̃
//	M ← β₁M + (1−β₁)R,   V ← β₂V + (1−β₂)R⊙R                   (shape of R)
//	W ← SR_INT8( W·(1 − η·λ) − η·√(1−β₂ᵗ)/(1−β₁ᵗ) · α·back(M / (√V + ε)) )
//
// INT4 and INT8 are peft/quant's symmetric absmax integer formats: the
// entries, row by row, are cut into blocks of BlockSize (256, the paper's
// group size), each with one float32 scale s_b, and code j ∈ [−q, q],
// q = 2^(bits−1) − 1, stands for j·s_b/q. The projector is rounded to the
// nearest code (quant.INT). The weight is rounded stochastically (see
// StochasticRound): up with probability equal to the fractional part, so
// E[SR(x)] = x and an update smaller than one step s_b/q is not lost but
// taken with probability proportional to its size. Step leaves the
// tensor's Value equal to the dequantized INT8 weight; the float64 Value is
// only the model's view of it.
//
// The refresh interval of each matrix starts at T = UpdateProjGap. At each
// refresh after the first, the cosine similarity |⟨u_new, u_old⟩|/(‖·‖‖·‖)
// between the new leading singular vector (P's first column, or Q's first
// row) and the stored INT4 one joins a queue of the last QueueSize (5);
// when the queue is full and its mean is ≥ CosThreshold (0.4), the
// interval becomes ⌈T·GapGrowth⌉ (×2). A layer whose subspace has
// converged thus runs ever fewer SVDs; one whose subspace keeps turning
// keeps T.
//
// Every other trainable tensor (biases, norms, untargeted matrices) gets
// plain float64 AdamW with the same β₁, β₂, ε, as in peft/galore.
//
// Where it departs from the paper's code (github.com/VITA-Group/Q-GaLore,
// q_galore_torch/):
//   - quantization is peft/quant's symmetric absmax (one float32 scale per
//     block, 2^bits − 1 levels) rather than the code's asymmetric min-max
//     with a zero point (2^bits levels);
//   - Adam's moments are float64, not bitsandbytes' 8-bit blockwise states;
//   - the cosine is taken in absolute value, since a singular vector's sign
//     is arbitrary (the code's signed cosine reads a sign flip of an
//     unchanged subspace as −1), and against the stored INT4 vector rather
//     than a separate float copy;
//   - the next refresh comes T steps after the last one (the code tests
//     t mod T = 0, which after T changes can come sooner or later);
//   - a weight is converted to INT8 at its first nonzero update, by the
//     same stochastic rounding, and a step whose update is exactly zero
//     (zero gradient and no decay) leaves it alone; the code converts the
//     model to INT8 by round-to-nearest before training.
//
// QGaLore implements peft.Optimizer and peft.ContextOptimizer: Train gives
// it its context, which stops a projector's SVD when cancelled.
type QGaLore struct {
	cfg   Config
	state map[*peft.Tensor]*qState
	ctx   context.Context // of the SVDs; nil: context.Background()
}

// Config configures New. Zero fields select the defaults noted (the
// paper's, for LLaMA-130M pre-training, where it gives them).
type Config struct {
	// Rank r of the projected gradient, 1 ≤ r ≤ min(m,n) of every targeted
	// matrix (the paper: 256 for LLaMA-130M).
	Rank int
	// UpdateProjGap T: the starting refresh interval of each matrix's
	// projector, in its steps (0 selects 200).
	UpdateProjGap int
	// Scale α of the projected-back update (0 selects 0.25).
	Scale float64
	// Targets names the matrices to project, as peft/galore's Targets do:
	// a tensor's full name, its module's name, a dotted suffix of either,
	// a path.Match glob or a regular expression written ^…$. Only 2-D
	// tensors (both sides > 1) are projected. Empty: every 2-D trainable
	// tensor with min(m,n) > Rank.
	Targets []string
	// Beta1, Beta2 are Adam's moment decay rates (0 selects 0.9, 0.999).
	Beta1, Beta2 float64
	// Eps is Adam's ε (0 selects 1e-8).
	Eps float64
	// WeightDecay λ, decoupled, for every tensor (0: none).
	WeightDecay float64
	// ProjBits of the projector's integer codes, 2 to 8 (0 selects 4); 64
	// keeps it in float64.
	ProjBits int
	// WeightBits of the projected weights' integer codes, 2 to 8 (0
	// selects 8); 64 keeps them in float64 (the model's own, not counted in
	// StateBytes), which with ProjBits 64 and GapGrowth 1 is GaLore.
	WeightBits int
	// BlockSize is the number of entries per scale of both (0 selects the
	// paper's group size, 256).
	BlockSize int
	// CosThreshold is the mean cosine similarity between successive leading
	// singular vectors above which the interval grows (0 selects 0.4).
	CosThreshold float64
	// QueueSize is the number of similarities averaged (0 selects 5).
	QueueSize int
	// GapGrowth γ ≥ 1 multiplies the interval of a stable layer (0 selects
	// 2; 1 turns the adaptive schedule off).
	GapGrowth float64
	// Seed seeds the stochastic rounding: the same seed, parameters and
	// gradients give the same weights.
	Seed uint64
}

// qState is one tensor's optimizer state.
type qState struct {
	proj  bool             // projected (a targeted matrix) or plain AdamW
	left  bool             // projected on the left (m < n): P (m×r); else right: Q (r×n)
	pq    *quant.Quantized // P̃ (m×r) or Q̃ (r×n); nil until the first step
	w     *quant.Quantized // the weight (m×n) in WeightBits; nil until its first nonzero update
	m, v  *mat.Dense       // Adam moments: shape of R (r×n or m×r), or of W if !proj
	t     int              // steps taken
	gap   int              // the current refresh interval T_ℓ
	next  int              // the value of t at which the next refresh comes
	cos   []float64        // the last QueueSize cosine similarities, oldest first
	svds  int              // refreshes so far
	seeds uint64           // the stochastic rounding's stream for this tensor
}

// New returns a Q-GaLore optimizer. A configuration out of range (rank
// r ≤ 0, bits outside 2–8 and not 64, …) panics with a peft.ArgError
// naming the field and the value; peft.Maybe turns it into an error.
func New(cfg Config) *QGaLore {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	deff := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	def(&cfg.UpdateProjGap, 200)
	deff(&cfg.Scale, 0.25)
	deff(&cfg.Beta1, 0.9)
	deff(&cfg.Beta2, 0.999)
	deff(&cfg.Eps, 1e-8)
	def(&cfg.ProjBits, 4)
	def(&cfg.WeightBits, 8)
	def(&cfg.BlockSize, 256)
	deff(&cfg.CosThreshold, 0.4)
	def(&cfg.QueueSize, 5)
	deff(&cfg.GapGrowth, 2)
	bad := func(msg string, args ...any) {
		panic(peft.ArgError{Op: "qgalore.New", Msg: fmt.Sprintf(msg, args...)})
	}
	bits := func(b int) bool { return b == 64 || (b >= 2 && b <= 8) }
	switch {
	case cfg.Rank <= 0:
		bad("Rank = %d out of range: want 1 ≤ r ≤ min(m,n) of each targeted matrix", cfg.Rank)
	case cfg.UpdateProjGap < 0:
		bad("UpdateProjGap = %d out of range: want T ≥ 1 (0 selects 200)", cfg.UpdateProjGap)
	case cfg.Beta1 < 0 || cfg.Beta1 >= 1:
		bad("Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case cfg.Beta2 < 0 || cfg.Beta2 >= 1:
		bad("Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case !(cfg.Eps >= 0):
		bad("Eps = %g out of range: want ε ≥ 0", cfg.Eps)
	case !(cfg.WeightDecay >= 0):
		bad("WeightDecay = %g out of range: want λ ≥ 0", cfg.WeightDecay)
	case math.IsNaN(cfg.Scale) || math.IsInf(cfg.Scale, 0):
		bad("Scale = %g: want a finite α", cfg.Scale)
	case !bits(cfg.ProjBits):
		bad("ProjBits = %d out of range: want 2 to 8, or 64 for float64 (0 selects 4)", cfg.ProjBits)
	case !bits(cfg.WeightBits):
		bad("WeightBits = %d out of range: want 2 to 8, or 64 for float64 (0 selects 8)", cfg.WeightBits)
	case cfg.BlockSize < 0:
		bad("BlockSize = %d out of range: want ≥ 1 (0 selects 256)", cfg.BlockSize)
	case math.IsNaN(cfg.CosThreshold):
		bad("CosThreshold = %g: want a number (0 selects 0.4)", cfg.CosThreshold)
	case cfg.QueueSize < 0:
		bad("QueueSize = %d out of range: want ≥ 1 (0 selects 5)", cfg.QueueSize)
	case !(cfg.GapGrowth >= 1) || math.IsInf(cfg.GapGrowth, 1):
		bad("GapGrowth = %g out of range: want a finite γ ≥ 1 (0 selects 2, 1 turns the schedule off)", cfg.GapGrowth)
	}
	for _, p := range cfg.Targets {
		if err := peft.CheckParamPattern(p); err != nil {
			bad("target pattern %q: %v", p, err)
		}
	}
	return &QGaLore{cfg: cfg, state: map[*peft.Tensor]*qState{}}
}

// Config returns q's configuration with the defaults filled in.
func (q *QGaLore) Config() Config { return q.cfg }

// projects reports whether p is a matrix q projects, or an error when it is
// targeted but the rank does not fit it.
func (q *QGaLore) projects(p *peft.Tensor) (bool, error) {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false, nil
	}
	if len(q.cfg.Targets) == 0 {
		return min(m, n) > q.cfg.Rank, nil
	}
	if !peft.MatchParam(q.cfg.Targets, p.Name) {
		return false, nil
	}
	if q.cfg.Rank > min(m, n) {
		return false, peft.ArgError{Op: "QGaLore(" + p.Name + ")", Msg: fmt.Sprintf(
			"Rank = %d out of range [1, %d] for the %s matrix", q.cfg.Rank, min(m, n), peft.ShapeOf(m, n))}
	}
	return true, nil
}

// Check returns the error that Step would panic with for params: a targeted
// matrix whose min(m,n) is below the rank. Call it before training to get
// the error as a value.
func (q *QGaLore) Check(params []*peft.Tensor) error {
	for _, p := range params {
		if !p.Trainable {
			continue
		}
		if _, err := q.projects(p); err != nil {
			return err
		}
	}
	return nil
}

// SetContext sets the context of the SVDs of the following steps (Train
// calls it with its own). Until it is called, they run with
// context.Background().
func (q *QGaLore) SetContext(ctx context.Context) { q.ctx = ctx }

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr; a projected weight's Value is left equal to its
// dequantized INT8 codes (WeightBits). It panics with a peft.ArgError if a
// targeted matrix is smaller than the rank (see Check), and with an error
// naming the tensor and the step if the SVD of its gradient fails: it does
// not converge, or the context set by SetContext is cancelled (the error
// then wraps the context's). Tensors before that one in params have been
// updated, the others not; peft.Maybe turns the panic into an error.
func (q *QGaLore) Step(params []*peft.Tensor, lr float64) {
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		st := q.state[p]
		if st == nil {
			proj, err := q.projects(p)
			if err != nil {
				panic(err)
			}
			h := fnv.New64a()
			h.Write([]byte(p.Name))
			st = &qState{proj: proj, gap: q.cfg.UpdateProjGap, seeds: h.Sum64()}
			q.state[p] = st
		}
		if !st.proj {
			upd := q.stepFull(p, st, lr)
			q.decay(p.Value, lr)
			p.Value.Sub(p.Value, upd)
			continue
		}
		// The update first, so that a step cancelled in its SVD changes
		// nothing.
		upd := q.stepProjected(p, st, lr)
		if q.cfg.WeightBits == 64 {
			q.decay(p.Value, lr)
			p.Value.Sub(p.Value, upd)
			continue
		}
		if (q.cfg.WeightDecay == 0 || lr == 0) && isZero(upd) {
			continue // nothing to round: the weight stays as it is
		}
		// W ← SR(W·(1 − η·λ) − update); W is read from Value, which
		// equals the dequantized codes unless the caller changed it
		wf := mat.DenseCopyOf(p.Value)
		q.decay(wf, lr)
		wf.Sub(wf, upd)
		w, err := StochasticRound(wf, q.cfg.WeightBits, q.cfg.BlockSize, q.cfg.Seed^st.seeds^(uint64(st.t)*0x9e3779b97f4a7c15))
		if err != nil {
			panic(fmt.Errorf("peft: QGaLore(%s) at step %d: %w", p.Name, st.t, err))
		}
		st.w = w
		p.Value.Copy(w.Dequantize())
	}
}

// decay applies decoupled weight decay, W ← W·(1 − η·λ), in place.
func (q *QGaLore) decay(w *mat.Dense, lr float64) {
	if q.cfg.WeightDecay > 0 {
		w.Scale(1-lr*q.cfg.WeightDecay, w)
	}
}

// stepFull returns plain Adam's update of the whole tensor, lr included.
func (q *QGaLore) stepFull(p *peft.Tensor, st *qState, lr float64) *mat.Dense {
	r, c := p.Dims()
	if st.m == nil {
		st.m, st.v = mat.NewDense(r, c, nil), mat.NewDense(r, c, nil)
	}
	st.t++
	upd := q.adam(st, p.Grad) // (r×c)
	upd.Scale(lr, upd)
	return upd
}

// stepProjected returns the projected Adam update of a matrix, lr and the
// scale α included, refreshing its projector when due.
func (q *QGaLore) stepProjected(p *peft.Tensor, st *qState, lr float64) *mat.Dense {
	gr := p.Grad // G (m×n)
	m, n := gr.Dims()
	if st.pq == nil || st.t >= st.next {
		q.refresh(p, st)
	}
	pq := st.pq.Dequantize() // P̃ (m×r) or Q̃ (r×n)
	// project the gradient
	var rg mat.Dense
	if st.left {
		rg.Mul(pq.T(), gr) // R = P̃ᵀ·G (r×n)
	} else {
		rg.Mul(gr, pq.T()) // R = G·Q̃ᵀ (m×r)
	}
	st.t++
	if st.m == nil {
		rr, rc := rg.Dims()
		st.m, st.v = mat.NewDense(rr, rc, nil), mat.NewDense(rr, rc, nil)
	}
	nrm := q.adam(st, &rg)
	// project the normalized update back
	back := mat.NewDense(m, n, nil)
	if st.left {
		back.Mul(pq, nrm) // P̃·N (m×n)
	} else {
		back.Mul(nrm, pq) // N·Q̃ (m×n)
	}
	back.Scale(lr*q.cfg.Scale, back)
	return back
}

// refresh recomputes st's projector from the SVD of p's gradient, quantizes
// it, and updates the layer's refresh interval from the similarity of the
// new leading singular vector with the stored one.
func (q *QGaLore) refresh(p *peft.Tensor, st *qState) {
	gr := p.Grad
	m, n := gr.Dims()
	r := q.cfg.Rank
	ctx := q.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	svd, err := accel.ThinSVD(ctx, gr)
	if err != nil {
		panic(fmt.Errorf("peft: QGaLore(%s): SVD of the %s gradient at step %d: %w", p.Name, peft.ShapeOf(m, n), st.t+1, err))
	}
	st.left = m < n
	var pf *mat.Dense
	var lead func(*mat.Dense) []float64 // the leading singular vector of a projector
	if st.left {
		pf = mat.DenseCopyOf(svd.U.Slice(0, m, 0, r)) // P (m×r)
		lead = func(a *mat.Dense) []float64 { return mat.Col(nil, 0, a) }
	} else {
		pf = mat.DenseCopyOf(svd.VT.Slice(0, r, 0, n)) // Q (r×n)
		lead = func(a *mat.Dense) []float64 { return mat.Row(nil, 0, a) }
	}
	if st.pq != nil {
		c := absCosine(lead(pf), lead(st.pq.Dequantize()))
		if len(st.cos) == q.cfg.QueueSize {
			st.cos = st.cos[1:]
		}
		st.cos = append(st.cos, c)
		if len(st.cos) == q.cfg.QueueSize && mean(st.cos) >= q.cfg.CosThreshold {
			st.gap = int(math.Ceil(float64(st.gap) * q.cfg.GapGrowth))
		}
	}
	var quantizer quant.Quantizer = quant.INT{Bits: q.cfg.ProjBits, BlockSize: q.cfg.BlockSize}
	if q.cfg.ProjBits == 64 {
		quantizer = quant.Identity{}
	}
	pq, err := quantizer.Quantize(pf)
	if err != nil {
		panic(fmt.Errorf("peft: QGaLore(%s): projector at step %d: %w", p.Name, st.t+1, err))
	}
	st.pq = pq
	st.svds++
	st.next = st.t + st.gap
}

// adam updates st's moments with gradient gr (st.t already counts this step)
// and returns the bias-corrected step direction
// √(1−β₂ᵗ)/(1−β₁ᵗ) · M/(√V + ε), of gr's shape.
func (q *QGaLore) adam(st *qState, gr *mat.Dense) *mat.Dense {
	return peft.AdamDirection(st.m, st.v, gr, q.cfg.Beta1, q.cfg.Beta2, q.cfg.Eps, peft.AdamBiasCorrection(st.t, q.cfg.Beta1, q.cfg.Beta2))
}

// StochasticRound returns w (r×c) as symmetric absmax integers of bits
// bits (2 to 8), in peft/quant's layout (entries row by row in blocks of
// blockSize, one float32 scale s_b per block, code j + q for
// j ∈ [−q, q], q = 2^(bits−1) − 1), rounding stochastically: with
// x = w/s_b·q,
//
//	j = ⌊x⌋ + 1 with probability x − ⌊x⌋,  else ⌊x⌋
//
// so the dequantized value j·s_b/q has expectation w and lies within one
// step s_b/q of it. s_b is the block's absmax rounded up to float32, as in
// quant.INT. The draws come from a PCG generator seeded from seed: the same
// w and seed give the same codes, and different seeds, even consecutive
// ones, independent draws. It returns an error if bits or blockSize
// are out of range or w holds a NaN or an infinity.
func StochasticRound(w *mat.Dense, bits, blockSize int, seed uint64) (*quant.Quantized, error) {
	if bits < 2 || bits > 8 {
		return nil, fmt.Errorf("qgalore: StochasticRound: bits = %d out of range: want 2 ≤ bits ≤ 8", bits)
	}
	if blockSize < 1 {
		return nil, fmt.Errorf("qgalore: StochasticRound: blockSize = %d out of range: want ≥ 1", blockSize)
	}
	rows, cols := w.Dims()
	n := rows * cols
	x := make([]float64, 0, n) // W row by row
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			v := w.At(i, j)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("qgalore: StochasticRound: W[%d, %d] = %v: only finite values can be quantized", i, j, v)
			}
			x = append(x, v)
		}
	}
	qm := 1<<(bits-1) - 1
	nb := (n + blockSize - 1) / blockSize
	out := &quant.Quantized{
		Format: fmt.Sprintf("INT%d", bits), Rows: rows, Cols: cols, BlockSize: blockSize, CodeBits: bits,
		Levels: quant.LevelsOf(fmt.Sprintf("INT%d", bits)),
		Codes:  make([]byte, (n*bits+7)/8),
		Scales: make([]float32, nb),
	}
	// PCG from two splitmix64 outputs of seed: nearby seeds (0, 1, 2, …)
	// would otherwise start correlated streams
	s1 := splitmix64(seed)
	rng := rand.New(rand.NewPCG(s1, splitmix64(s1)))
	for b := 0; b < nb; b++ {
		blk := x[b*blockSize : min((b+1)*blockSize, n)]
		var a float64
		for _, v := range blk {
			a = math.Max(a, math.Abs(v))
		}
		s := roundUp32(a)
		out.Scales[b] = s
		for k, v := range blk {
			j := 0
			if s != 0 {
				t := v / float64(s) * float64(qm)
				j = int(math.Floor(t))
				if rng.Float64() < t-float64(j) {
					j++
				}
				j = max(-qm, min(qm, j))
			}
			quant.PutCode(out.Codes, b*blockSize+k, bits, j+qm)
		}
	}
	return out, nil
}

// splitmix64 returns a well-mixed 64-bit value of x (Steele et al.'s
// SplitMix64 finalizer of x + γ).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// roundUp32 returns the smallest float32 ≥ a (a ≥ 0, finite), as peft/quant
// stores its scales.
func roundUp32(a float64) float32 {
	f := float32(a)
	if float64(f) < a {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

func isZero(a *mat.Dense) bool {
	r, c := a.Dims()
	for i := 0; i < r; i++ {
		for _, v := range a.RawRowView(i)[:c] {
			if v != 0 {
				return false
			}
		}
	}
	return true
}

// absCosine returns |⟨a, b⟩|/(‖a‖‖b‖), 0 if either is zero.
func absCosine(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return math.Abs(ab) / math.Sqrt(aa*bb)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// StateBytes returns the size of q's state in bytes, each part at its
// stored width: Adam's two moments (float64, of the projected shape for
// projected matrices), the projectors (ProjBits per entry plus a float32
// scale per block), the projected weights (WeightBits per entry plus a
// float32 scale per block; these are the weights themselves, which
// AdamW's and GaLore's StateBytes leave to the model) and each projected
// matrix's queue of QueueSize float64 similarities. Counters are not
// counted. It grows as Step first meets each tensor.
func (q *QGaLore) StateBytes() int {
	n := 0
	for _, st := range q.state {
		for _, d := range []*mat.Dense{st.m, st.v} {
			if d != nil {
				r, c := d.Dims()
				n += 8 * r * c
			}
		}
		if st.pq != nil {
			n += int(st.pq.StorageBits() / 8)
			n += 8 * q.cfg.QueueSize
		}
		if st.w != nil {
			n += int(st.w.StorageBits() / 8)
		}
	}
	return n
}

// Projector returns the current quantized projector of p: P̃ (m×r) with
// left true, or Q̃ (r×n) with left false; nil if p is not projected or not
// yet stepped. Its Dequantize is the matrix the steps use.
func (q *QGaLore) Projector(p *peft.Tensor) (pq *quant.Quantized, left bool) {
	st := q.state[p]
	if st == nil || !st.proj {
		return nil, false
	}
	return st.pq, st.left
}

// Weight returns the quantized weight of p (WeightBits), whose Dequantize
// equals p.Value after each step; nil if p is not projected, WeightBits is
// 64, or p has not had a nonzero update yet.
func (q *QGaLore) Weight(p *peft.Tensor) *quant.Quantized {
	st := q.state[p]
	if st == nil {
		return nil
	}
	return st.w
}

// Gap returns p's current projector refresh interval in steps and the
// number of SVDs its projector has taken; (0, 0) if p is not projected or
// not yet stepped.
func (q *QGaLore) Gap(p *peft.Tensor) (gap, svds int) {
	st := q.state[p]
	if st == nil || !st.proj {
		return 0, 0
	}
	return st.gap, st.svds
}

var (
	_ peft.Optimizer        = (*QGaLore)(nil)
	_ peft.ContextOptimizer = (*QGaLore)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "Q-GaLore",
		Kind:    peft.OptimizerMethod,
		Paper:   "Zhang et al. 2024, Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients, arXiv:2407.08296",
		Package: "github.com/gopeft/gopeft/peft/qgalore",
		Summary: "GaLore with INT4 projectors, INT8 weights updated by stochastic rounding, and a refresh interval that doubles while a layer's subspace is stable",
	})
}
