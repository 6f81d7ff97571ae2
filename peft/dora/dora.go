package peft

import (
	"fmt"
	"math"
	"math/rand"

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
//
// DoRA implements Adapter.
type DoRA struct {
	A, B    *Tensor // A (r×in), B (out×r): PEFT's lora_A, lora_B
	M       *Tensor // magnitude (1×out): PEFT's lora_magnitude_vector
	R       int     // rank r
	Alpha   float64 // α
	RSLoRA  bool    // s = α/√r instead of α/r
	Dropout float64 // dropout probability on the adapter's input, in [0, 1)

	rng *rand.Rand // dropout masks
}

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
func (d *DoRA) Params() []*Tensor { return []*Tensor{d.A, d.B, d.M} }

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

// check panics with a ShapeError unless w (out×in) fits d.
func (d *DoRA) check(op string, w mat.Matrix) {
	out, in := w.Dims()
	ar, ac := d.A.Dims()
	br, bc := d.B.Dims()
	mr, mc := d.M.Dims()
	if ac != in || br != out || bc != ar || mr != 1 || mc != out {
		panic(ShapeError{Op: op, Got: fmt.Sprintf("W %s, A %s, B %s, M %s", ShapeOf(out, in), ShapeOf(ar, ac), ShapeOf(br, bc), ShapeOf(mr, mc)),
			Want: fmt.Sprintf("A (r×%d), B (%d×r), M (1×%d)", in, out, out)})
	}
}

// Forward returns the layer's output (n×out) for x (n×in), given the base
// output base = x·Wᵀ + b (n×out).
func (d *DoRA) Forward(l *Linear, x, base *Tensor) *Tensor {
	d.check("DoRA.Forward("+l.Name+")", l.W.Value)
	s := d.Scaling()
	xd := x
	if d.Dropout > 0 && l.Training {
		xd = Dropout(x, d.Dropout, d.rng, true) // x̃ (n×in)
	}
	norm := NewConst(d.Norm(l.W.Value))                 // ‖W + s·B·A‖_row (1×out), detached
	g := Div(d.M, norm)                                 // g = M/‖V‖ (1×out)
	xw := MatMulT(xd, Detach(l.W))                      // x̃·Wᵀ (n×out)
	lora := Scale(MatMulT(MatMulT(xd, d.A), d.B), s)    // s·x̃·Aᵀ·Bᵀ (n×out); x̃·Aᵀ is (n×r)
	return Add(base, Sub(MulRow(Add(xw, lora), g), xw)) // base + (g−1)⊙x̃Wᵀ + g⊙lora
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

var _ Adapter = (*DoRA)(nil)

// DoRAConfig configures AddDoRA, after PEFT's LoraConfig(use_dora=True).
type DoRAConfig struct {
	R       int      // rank r, 1 ≤ r ≤ min(out, in) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r
	Targets []string // target modules, by name or pattern (see Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init and the dropout masks
}

// AddDoRA freezes m's base weights and attaches a DoRA adapter, named
// cfg.Name, to every module matching cfg.Targets: A and B initialized as
// LoRA's (Kaiming-uniform, zero), M = ‖W‖_row, so the model's output is
// unchanged. Parameters are named as PEFT's ("fc1.lora_A.default.weight",
// "fc1.lora_magnitude_vector.default.weight").
func AddDoRA(m Model, cfg DoRAConfig) ([]*DoRA, error) {
	name := cfg.Name
	if name == "" {
		name = "default"
	}
	lcfg := LoRAConfig{R: cfg.R, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA, Targets: cfg.Targets, Name: name, Seed: cfg.Seed}
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := AddAdapter(m, name, cfg.Targets, func(l *Linear) (Adapter, error) {
		d, k := l.W.Dims()
		a, err := NewLoRA(l.Name, name, d, k, lcfg, rng)
		if err != nil {
			return nil, fmt.Errorf("%w (DoRA)", err)
		}
		dr := &DoRA{A: a.A, B: a.B, R: a.R, Alpha: a.Alpha, RSLoRA: a.RSLoRA, Dropout: a.Dropout, rng: a.rng}
		// M = ‖W + s·B·A‖_row with B = 0: the same computation as Forward's
		// norm, so that g = M/‖V‖ is exactly 1 at init.
		dr.M = NewParam(l.Name+".lora_magnitude_vector."+name+".weight", dr.Norm(l.W.Value))
		return dr, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*DoRA, len(added))
	for i, a := range added {
		out[i] = a.(*DoRA)
	}
	return out, nil
}
