// Package dora is DoRA: LoRA with the adapted weight split into a trained
// magnitude per output unit and a direction that a low-rank update turns.
// Its adapters are saved in HuggingFace PEFT's layout as LoRA with
// use_dora (see file.go).
package dora

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// DoRA splits the adapted weight into a trained magnitude and a direction
// that LoRA updates (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank
// Adaptation", ICML, arXiv:2402.09353). For a frozen W (out×in):
//
//	V  = W + s·B·A                 B: out×r (init 0), A: r×in (Kaiming-uniform init)
//	W' = diag(M / ‖V‖_row) · V     M: 1×out, init ‖W‖_row, so W' = W at init
//
// where ‖V‖_row (out×1) holds the Euclidean norm of each row of V (one per
// output unit, PEFT's dim=1 norm of the out×in weight; the paper's
// "column-wise" norm of its in×out notation) and s = α/r (α/√r with
// rsLoRA). As the paper suggests (§4.3) and PEFT does, ‖V‖_row is treated as
// a constant in backpropagation. The forward pass is PEFT's, for x (n×in):
//
//	g = M / ‖V‖_rowᵀ                                        (1×out)
//	y = base + (g − 1) ⊙ (x̃·Wᵀ) + g ⊙ (s·x̃·Aᵀ·Bᵀ)         (n×out)
//
// with base = x·Wᵀ + b the frozen layer's output and x̃ = dropout(x); with no
// dropout, y = x·W'ᵀ + b. Trainable: A, B and M, r·(in + out) + out values.
type DoRA struct {
	A, B    *peft.Tensor // A (r×in), B (out×r): PEFT's lora_A, lora_B
	M       *peft.Tensor // magnitude (1×out): PEFT's lora_magnitude_vector
	R       int          // rank r
	Alpha   float64      // α
	RSLoRA  bool         // s = α/√r instead of α/r
	Dropout float64      // dropout probability on the adapter's input, in [0, 1)

	rng *rand.Rand // dropout masks

	// heldNorm, if non-nil, is what Forward uses as ‖V‖_row (1×out) instead
	// of the norm of the current A and B. Backpropagation already treats
	// the norm as a constant; holding it also for changes of A and B lets
	// central differences, which evaluate Forward at moved A and B,
	// differentiate the same function the backward pass does. Only tests
	// set it (export_test.go); MergedWeight ignores it.
	heldNorm *mat.Dense
}

var _ peft.Adapter = (*DoRA)(nil)

// Config configures Add, after PEFT's LoraConfig(use_dora=True).
type Config struct {
	R       int      // rank r, 1 ≤ r ≤ min(out, in) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init and the dropout masks
}

// loraConfig returns cfg as the LoRA config whose checks DoRA shares.
func (cfg Config) loraConfig() lora.Config {
	return lora.Config{R: cfg.R, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA, Targets: cfg.Targets, Name: cfg.Name, Seed: cfg.Seed}
}

// New returns a DoRA adapter for the layer named module (for its
// parameters' names "module.lora_A.name.weight", …) whose frozen weight is
// w (out×in): A drawn from rng as LoRA's (Kaiming-uniform), B = 0 and
// M = ‖w‖_row, so that the layer's output is unchanged. It is an error,
// naming module and the value, if r is outside [1, min(out, in)], α is
// negative or not finite, or dropout is outside [0, 1).
func New(module, name string, w mat.Matrix, cfg Config, rng *rand.Rand) (*DoRA, error) {
	out, in := w.Dims()
	if err := cfg.loraConfig().Check("DoRA", module, out, in); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.R)
	}
	a := lora.RandomA(rng, cfg.R, in)  // (r×in)
	b := mat.NewDense(out, cfg.R, nil) // (out×r)
	d, err := FromFactors(module, name, a, b, mat.NewDense(1, out, nil), cfg, rand.New(rand.NewSource(rng.Int63())))
	if err != nil {
		return nil, err
	}
	// M = ‖W + s·B·A‖_row with B = 0: the same computation as Forward's
	// norm, so that g = M/‖V‖ is exactly 1 at init.
	d.M.Value.Copy(d.Norm(w))
	return d, nil
}

// FromFactors returns a DoRA adapter with the given A (r×in), B (out×r) and
// magnitude M (1×out), not copied, cfg's α, rsLoRA and dropout, and rng for
// the dropout masks: what loading a saved adapter uses. It checks what New
// does, and that the shapes chain. cfg.R is taken from A, and cfg.Alpha is
// α as it is (0 gives s = 0; New's default α = r is not applied).
func FromFactors(module, name string, a, b, m *mat.Dense, cfg Config, rng *rand.Rand) (*DoRA, error) {
	r, in := a.Dims()
	out, rb := b.Dims()
	if rb != r {
		return nil, fmt.Errorf("peft: DoRA on %s: A %s and B %s do not chain", module, peft.ShapeOf(r, in), peft.ShapeOf(out, rb))
	}
	if mr, mc := m.Dims(); mr != 1 || mc != out {
		return nil, fmt.Errorf("peft: DoRA on %s: magnitude M %s does not fit B %s: want (1×%d)", module, peft.ShapeOf(mr, mc), peft.ShapeOf(out, rb), out)
	}
	cfg.R = r
	if err := cfg.loraConfig().Check("DoRA", module, out, in); err != nil {
		return nil, err
	}
	return &DoRA{
		A:       peft.NewParam(module+".lora_A."+name+".weight", a),
		B:       peft.NewParam(module+".lora_B."+name+".weight", b),
		M:       peft.NewParam(module+".lora_magnitude_vector."+name+".weight", m),
		R:       r,
		Alpha:   cfg.Alpha,
		RSLoRA:  cfg.RSLoRA,
		Dropout: cfg.Dropout,
		rng:     rng,
	}, nil
}

// Add freezes m's base weights and attaches a DoRA adapter, named
// cfg.Name, to every module matching cfg.Targets (see New), making it the
// active one. Each A is drawn from one generator seeded with cfg.Seed,
// module after module in model order. Parameters are named as PEFT's
// ("fc1.lora_A.default.weight", "fc1.lora_magnitude_vector.default.weight").
func Add(m peft.Model, cfg Config) ([]*DoRA, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		return New(l.Name, name, l.W.Value, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the DoRA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*DoRA { return adapters.As[*DoRA](ads) }

// Scaling returns s: α/r, or α/√r with RSLoRA.
func (d *DoRA) Scaling() float64 {
	if d.RSLoRA {
		return d.Alpha / math.Sqrt(float64(d.R))
	}
	return d.Alpha / float64(d.R)
}

// Rank returns r.
func (d *DoRA) Rank() int { return d.R }

// Params returns A, B and M.
func (d *DoRA) Params() []*peft.Tensor { return []*peft.Tensor{d.A, d.B, d.M} }

// Settings returns d's rank, α, rsLoRA and dropout, as LoraConfig records
// them.
func (d *DoRA) Settings() lora.Settings {
	return lora.Settings{R: d.R, Alpha: d.Alpha, RSLoRA: d.RSLoRA, Dropout: d.Dropout}
}

// direction returns V = W + s·B·A (out×in) as a new matrix.
func (d *DoRA) direction(w mat.Matrix) *mat.Dense {
	var v mat.Dense
	v.Mul(d.B.Value, d.A.Value)
	v.Scale(d.Scaling(), &v)
	v.Add(w, &v)
	return &v
}

// rowNormsOf returns ‖v‖_row as a 1×out row.
func rowNormsOf(v *mat.Dense) *mat.Dense {
	out, in := v.Dims()
	nrm := mat.NewDense(1, out, nil)
	for i := 0; i < out; i++ {
		var s float64
		for j := 0; j < in; j++ {
			x := v.At(i, j)
			s += x * x
		}
		nrm.Set(0, i, math.Sqrt(s))
	}
	return nrm
}

// Norm returns the detached row norms ‖W + s·B·A‖_row (1×out) for the
// layer's frozen weight w (out×in).
func (d *DoRA) Norm(w mat.Matrix) *mat.Dense { return rowNormsOf(d.direction(w)) }

// check panics with a peft.ShapeError unless w (out×in) fits d.
func (d *DoRA) check(op string, w mat.Matrix) {
	out, in := w.Dims()
	ar, ac := d.A.Dims()
	br, bc := d.B.Dims()
	mr, mc := d.M.Dims()
	if ac != in || br != out || bc != ar || mr != 1 || mc != out {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("W %s, A %s, B %s, M %s", peft.ShapeOf(out, in), peft.ShapeOf(ar, ac), peft.ShapeOf(br, bc), peft.ShapeOf(mr, mc)),
			Want: fmt.Sprintf("A (r×%d), B (%d×r), M (1×%d)", in, out, out)})
	}
}

// Forward returns the layer's output (n×out) for x (n×in), given the base
// output base = x·Wᵀ + b (n×out).
func (d *DoRA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	d.check("DoRA.Forward("+l.Name+")", l.W.Value)
	s := d.Scaling()
	xd := x
	if d.Dropout > 0 && l.Training {
		xd = peft.Dropout(x, d.Dropout, d.rng, true) // x̃ (n×in)
	}
	nrm := d.heldNorm
	if nrm == nil {
		nrm = d.Norm(l.W.Value) // ‖W + s·B·A‖_row (1×out)
	}
	g := peft.Div(d.M, peft.NewConst(nrm))                                // g = M/‖V‖ (1×out), the norm detached
	xw := peft.MatMulT(xd, peft.Detach(l.W))                              // x̃·Wᵀ (n×out)
	lr := peft.Scale(peft.MatMulT(peft.MatMulT(xd, d.A), d.B), s)         // s·x̃·Aᵀ·Bᵀ (n×out); x̃·Aᵀ is (n×r)
	return peft.Add(base, peft.Sub(peft.MulRow(peft.Add(xw, lr), g), xw)) // base + (g−1)⊙x̃Wᵀ + g⊙lr
}

// MergedWeight returns W' = diag(M/‖W0 + s·B·A‖_row)·(W0 + s·B·A) (out×in).
func (d *DoRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d.check("DoRA.MergedWeight", w0)
	v := d.direction(w0)
	nrm := rowNormsOf(v)
	out, in := v.Dims()
	for i := 0; i < out; i++ {
		g := d.M.Value.At(0, i) / nrm.At(0, i)
		for j := 0; j < in; j++ {
			v.Set(i, j, g*v.At(i, j))
		}
	}
	return v
}
