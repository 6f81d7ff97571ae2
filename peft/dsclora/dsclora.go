// Package dsclora is DSCLoRA: ConvLoRA, a low-rank update of a convolution
// kernel in loralib's factorization, trained on a super-resolution student
// under a distillation loss from a larger teacher (see Distill).
//
// Chai, Zhang, Zhang, Cheng, Qin, Yang and Song, 2025, "Distillation-
// Supervised Convolutional Low-Rank Adaptation for Efficient Image
// Super-Resolution", arXiv:2504.11271; code github.com/Yaozzz666/DSCF-SR.
// The paper puts ConvLoRA on the SPAN network's block convolutions, the
// convolution before the pixel shuffle and the upsampler, and trains it on
//
//	L = λ₁·L_rec(student, HR) + λ₂·L_TS(student, teacher) + λ₃·L_AD
//
// where L_AD compares the spatial affinity (second-order statistics) of
// student and teacher feature maps. gopeft's version of both parts is
// below, on peft.SRNet and the digits' super-resolution task.
package dsclora

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// ConvLoRA adapts the frozen kernel W₀ of a convolution, (C_out, C_in, k, k)
// held flattened as the Linear's W (C_out × C_in·k²), in the factorization
// of loralib's ConvLoRA (Hu et al.'s reference LoRA code), which DSCLoRA
// uses:
//
//	A: (r·k) × (C_in·k),   Kaiming-uniform U(−1/√(C_in·k), 1/√(C_in·k))
//	B: (C_out·k) × (r·k),  init 0
//	ΔW = s·reshape(B·A, C_out × C_in·k²),  s = α/r
//	h  = x·(W₀ + ΔW)ᵀ + b                 x (n × C_in·k²) im2col patches
//
// where reshape reads B·A ((C_out·k) × (C_in·k)) in row-major order as the
// kernel (C_out, C_in, k, k), as PyTorch's .view does. So the conv's
// output is the base conv plus the conv with kernel ΔW; ΔW is zero at init
// (the adapted network starts as the base network exactly); B·A has rank
// ≤ r·k (not r: each of the r·k rows of A mixes a k-wide slice of the
// kernel); ΔW as the C_out × C_in·k² matrix the conv applies puts k
// (C_out × C_in·k) blocks of B·A side by side, so its rank is at most
// min(C_out, C_in·k², r·k²) and can exceed r·k (measured 8 at r·k = 6 in
// notebook 06); and a layer trains r·k²·(C_in + C_out) numbers.
//
// The kernel shape is read from Linear.Kernel (set by peft.Conv2d). A kernel
// that is not square (kh ≠ kw) is refused with an error naming the module.
// A plain Linear (Kernel nil) is taken as a 1×1 convolution (k = 1,
// C_out × C_in = d × k of its W), where ConvLoRA is plain LoRA: A (r×in),
// B (d×r), ΔW = s·B·A. That is how the shared adapter suite, whose layers
// are plain, runs it.
//
// Defaults: α = 0 means α = r (s = 1), as gopeft's LoRA; the paper's code
// uses (r, α) = (8, 16) on its larger convolutions and (2, 4) on the
// blocks', s = 2 on both. No dropout (loralib's conv has lora_dropout; the
// DSCLoRA code does not use it).
//
// Departure from HuggingFace PEFT: PEFT's LoRA on an nn.Conv2d factorizes
// differently, A a k×k convolution from C_in to r channels and B a 1×1
// convolution from r to C_out, so ΔW (C_out × C_in·k²) = B·A with A (r ×
// C_in·k²) and B (C_out × r): rank ≤ r and r·(C_in·k² + C_out) parameters.
// gopeft's lora package on a peft.Conv2d is exactly that form; this
// package is loralib's, which the paper uses, and saves as its own PEFT
// type GOPEFT_DSCLORA (see file.go).
type ConvLoRA struct {
	A     *peft.Tensor // (r·k × C_in·k)
	B     *peft.Tensor // (C_out·k × r·k)
	R     int          // rank r (B·A has rank ≤ r·k, ΔW ≤ r·k²)
	Alpha float64      // α; s = α/r

	Cout, Cin, K int // the kernel is (C_out, C_in, k, k)
}

var _ peft.Adapter = (*ConvLoRA)(nil)

// Config configures Add.
type Config struct {
	R       int      // rank r, 1 ≤ r ≤ min(C_in, C_out) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init
}

// KernelOf returns the kernel (C_out, C_in, k) of l: from l.Kernel, which
// must be 4-D, square (kh = kw) and match W, or (d, in, 1) for a plain
// Linear whose W is (d × in). It is an error naming the module otherwise.
func KernelOf(l *peft.Linear) (cout, cin, k int, err error) {
	d, in := l.W.Dims()
	kn := l.Kernel
	if kn == nil {
		return d, in, 1, nil
	}
	if len(kn) != 4 {
		return 0, 0, 0, fmt.Errorf("peft: DSCLoRA on %s: Kernel %v is not a 2-D convolution's (C_out, C_in, kh, kw)", l.Name, kn)
	}
	if kn[2] != kn[3] {
		return 0, 0, 0, fmt.Errorf("peft: DSCLoRA on %s: Kernel %v is %d×%d; ConvLoRA needs a square kernel", l.Name, kn, kn[2], kn[3])
	}
	if kn[0] < 1 || kn[1] < 1 || kn[2] < 1 || kn[0] != d || kn[1]*kn[2]*kn[3] != in {
		return 0, 0, 0, fmt.Errorf("peft: DSCLoRA on %s: Kernel %v does not match W %s", l.Name, kn, peft.ShapeOf(d, in))
	}
	return kn[0], kn[1], kn[2], nil
}

// Check returns an error naming module, the field and its value if cfg
// does not fit a kernel (C_out, C_in, k, k): R outside [1, min(C_in,
// C_out)] (at which r·k reaches B·A's full rank), or α negative or not
// finite.
func (cfg Config) Check(module string, cout, cin, k int) error {
	if m := min(cin, cout); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: DSCLoRA on %s: R = %d out of range for the kernel (%d, %d, %d, %d): want 1 ≤ R ≤ min(C_in, C_out) = %d", module, cfg.R, cout, cin, k, k, m)
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: DSCLoRA on %s: Alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	}
	return nil
}

// New returns the ConvLoRA adapter of layer l (see KernelOf), named name
// (its parameters are "module.lora_A.name.weight", …), with A drawn from rng
// and B zero. It is an error naming the module if l's kernel is not square
// or cfg does not fit.
func New(l *peft.Linear, name string, cfg Config, rng *rand.Rand) (*ConvLoRA, error) {
	cout, cin, k, err := KernelOf(l)
	if err != nil {
		return nil, err
	}
	if err := cfg.Check(l.Name, cout, cin, k); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.R)
	}
	r := cfg.R
	return &ConvLoRA{
		A:     peft.NewParam(l.Name+".lora_A."+name+".weight", peft.RandUniform(rng, r*k, cin*k, 1/math.Sqrt(float64(cin*k)))),
		B:     peft.NewParam(l.Name+".lora_B."+name+".weight", mat.NewDense(cout*k, r*k, nil)),
		R:     r,
		Alpha: cfg.Alpha,
		Cout:  cout, Cin: cin, K: k,
	}, nil
}

// Add freezes m's base weights and attaches a ConvLoRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// Each A is drawn from one generator seeded with cfg.Seed, module after
// module in model order.
func Add(m peft.Model, cfg Config) ([]*ConvLoRA, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		return New(l, name, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the ConvLoRA adapters among ads (those that are not are
// skipped).
func As(ads []peft.Adapter) []*ConvLoRA { return adapters.As[*ConvLoRA](ads) }

// Scaling returns s = α/r.
func (a *ConvLoRA) Scaling() float64 { return a.Alpha / float64(a.R) }

// Forward returns base + x·ΔWᵀ for the patches x (n × C_in·k²), base
// (n × C_out), with ΔW = s·reshape(B·A) formed as in the definition.
func (a *ConvLoRA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	ba := peft.MatMul(a.B, a.A)                                            // (C_out·k × C_in·k)
	dw := peft.Scale(peft.Reshape(ba, a.Cout, a.Cin*a.K*a.K), a.Scaling()) // (C_out × C_in·k²)
	return peft.Add(base, peft.MatMulT(x, dw))                             // (n × C_out)
}

// Params returns A and B.
func (a *ConvLoRA) Params() []*peft.Tensor { return []*peft.Tensor{a.A, a.B} }

// Rank returns r (B·A has rank ≤ r·k; ΔW as the conv's C_out × C_in·k²
// matrix, rank ≤ r·k², see the type's doc).
func (a *ConvLoRA) Rank() int { return a.R }

// Product returns B·A ((C_out·k) × (C_in·k)), the matrix whose rank is at
// most r·k.
func (a *ConvLoRA) Product() *mat.Dense {
	var ba mat.Dense
	ba.Mul(a.B.Value, a.A.Value)
	return &ba
}

// Delta returns ΔW = s·reshape(B·A) (C_out × C_in·k²), the kernel (C_out,
// C_in, k, k) flattened.
func (a *ConvLoRA) Delta() *mat.Dense {
	ba := a.Product()
	dw := mat.NewDense(a.Cout, a.Cin*a.K*a.K, nil)
	s := a.Scaling()
	raw := dw.RawMatrix().Data
	for i, v := range ba.RawMatrix().Data {
		raw[i] = s * v // row-major B·A is row-major ΔW: the same elements in the same order
	}
	return dw
}

// MergedWeight returns w0 + ΔW (C_out × C_in·k²). It panics with a
// ShapeError if w0 is not of that shape.
func (a *ConvLoRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != a.Cout || c != a.Cin*a.K*a.K {
		panic(peft.ShapeError{Op: "ConvLoRA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(a.Cout, a.Cin*a.K*a.K) + ", the adapter's kernel flattened"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}
