package lqlora

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/quant"
)

// Candidate is one configuration a matrix may get: a quantizer for Q and a
// rank r for L1·L2. Measure and Solve accept r = 0 (Q alone, as QLoRA) for
// comparison; Add needs r ≥ 1, since each module gets a LoRA adapter.
type Candidate struct {
	Quantizer quant.Quantizer
	R         int
}

func (c Candidate) String() string { return fmt.Sprintf("%s r=%d", c.Quantizer, c.R) }

// Table holds, for each module and candidate, the decomposition's storage
// and error: the data of LQ-LoRA's bit-allocation program, and of a
// notebook's memory-against-error plot.
type Table struct {
	Modules []string    // one row each
	Params  []int       // d·k of each module
	Cands   []Candidate // one column each
	// Bits[i][c] is the storage of module i under candidate c: Q's
	// StorageBits plus r·(d+k)·LowRankBits.
	Bits [][]int64
	// Err2[i][c] is ‖W − Q − L1·L2‖²_F of module i under candidate c.
	Err2        [][]float64
	LowRankBits int // bits per entry of L1 and L2 counted in Bits
}

// Measure decomposes each module of m matching targets under each
// candidate (with opt, see Decompose) and returns their storage, counting
// L1 and L2 at lowRankBits per entry (16 if 0), and squared errors. A
// candidate whose rank exceeds a module's min(d, k) gets Bits −1 there
// (Solve never picks it). It changes no weight.
func Measure(ctx context.Context, m peft.Model, targets []string, cands []Candidate, lowRankBits int, opt *Options) (*Table, error) {
	if len(cands) == 0 {
		return nil, fmt.Errorf("peft: LQ-LoRA: Measure: no candidates")
	}
	if lowRankBits == 0 {
		lowRankBits = 16
	}
	if lowRankBits < 0 {
		return nil, fmt.Errorf("peft: LQ-LoRA: Measure: lowRankBits = %d, want ≥ 0", lowRankBits)
	}
	mods, err := peft.Targets(m, targets...)
	if err != nil {
		return nil, err
	}
	t := &Table{Cands: append([]Candidate(nil), cands...), LowRankBits: lowRankBits}
	for _, l := range mods {
		d, k := l.W.Dims()
		bits, errs := make([]int64, len(cands)), make([]float64, len(cands))
		for c, cand := range cands {
			if cand.R < 0 {
				return nil, fmt.Errorf("peft: LQ-LoRA: Measure: candidate %d has rank r = %d, want ≥ 0", c, cand.R)
			}
			if cand.Quantizer == nil {
				return nil, fmt.Errorf("peft: LQ-LoRA: Measure: candidate %d has no Quantizer", c)
			}
			if cand.R > min(d, k) {
				bits[c], errs[c] = -1, math.Inf(1)
				continue
			}
			dec, err := Decompose(ctx, l.W.Value, cand.Quantizer, cand.R, opt)
			if err != nil {
				return nil, fmt.Errorf("peft: LQ-LoRA on %s: candidate %s: %w", l.Name, cand, err)
			}
			bits[c] = dec.StorageBits(lowRankBits)
			errs[c] = dec.Err() * dec.Err()
		}
		t.Modules = append(t.Modules, l.Name)
		t.Params = append(t.Params, d*k)
		t.Bits = append(t.Bits, bits)
		t.Err2 = append(t.Err2, errs)
	}
	return t, nil
}

// TotalParams returns Σ d·k over the modules.
func (t *Table) TotalParams() int64 {
	var n int64
	for _, p := range t.Params {
		n += int64(p)
	}
	return n
}

// Budget returns the budget in bits for bitsPerParam bits per weight entry
// on average: ⌊bitsPerParam · Σ d·k⌋.
func (t *Table) Budget(bitsPerParam float64) int64 {
	return int64(math.Floor(bitsPerParam * float64(t.TotalParams())))
}

// Allocation is a solution of the bit-allocation program.
type Allocation struct {
	Choice []int   // Choice[i]: the candidate (column of Table) of module i
	Bits   int64   // Σ Bits[i][Choice[i]]
	Err2   float64 // Σ Err2[i][Choice[i]]
}

// Plan returns the allocation as Config.Plan: module → candidate.
func (a *Allocation) Plan(t *Table) map[string]Candidate {
	p := make(map[string]Candidate, len(a.Choice))
	for i, c := range a.Choice {
		p[t.Modules[i]] = t.Cands[c]
	}
	return p
}

// BitsPerParam returns a.Bits / Σ d·k.
func (a *Allocation) BitsPerParam(t *Table) float64 {
	return float64(a.Bits) / float64(t.TotalParams())
}

// Solve returns an exact optimum of LQ-LoRA's integer program
//
//	minimize Σ_i Σ_c Err2[i][c]·x_ic
//	subject to Σ_i Σ_c Bits[i][c]·x_ic ≤ budget,  Σ_c x_ic = 1,  x_ic ∈ {0, 1}
//
// (one candidate per module, total storage within budget). It is a
// multiple-choice knapsack, solved by dynamic programming over the modules
// on the Pareto front of (bits, error) of partial assignments: a partial
// assignment using at least as many bits as another with at least as much
// error cannot lead to a better solution, so dropping it keeps the optimum
// exact. The front has at most one point per distinct bit total. Ties in
// error go to fewer bits, then to earlier candidates. It is an error if no
// assignment fits the budget (the message gives the least storage
// possible). Cancelling ctx stops it.
func Solve(ctx context.Context, t *Table, budget int64) (*Allocation, error) {
	type state struct {
		bits   int64
		err    float64
		parent int // index in the previous front
		choice int
	}
	fronts := make([][]state, len(t.Modules)+1)
	fronts[0] = []state{{parent: -1, choice: -1}}
	for i := range t.Modules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var next []state
		for p, s := range fronts[i] {
			for c, b := range t.Bits[i] {
				if b < 0 || s.bits+b > budget {
					continue
				}
				next = append(next, state{s.bits + b, s.err + t.Err2[i][c], p, c})
			}
		}
		if len(next) == 0 {
			return nil, fmt.Errorf("peft: LQ-LoRA: Solve: budget %d bits (%.4g per parameter) is below the least storage of any assignment, %d bits (%.4g per parameter)",
				budget, float64(budget)/float64(t.TotalParams()), t.minBits(), float64(t.minBits())/float64(t.TotalParams()))
		}
		sort.SliceStable(next, func(a, b int) bool {
			if next[a].bits != next[b].bits {
				return next[a].bits < next[b].bits
			}
			return next[a].err < next[b].err
		})
		front := next[:0:0]
		best := math.Inf(1)
		for _, s := range next {
			if s.err < best {
				front = append(front, s)
				best = s.err
			}
		}
		fronts[i+1] = front
	}
	last := fronts[len(t.Modules)]
	bi := 0
	for j, s := range last {
		if s.err < last[bi].err {
			bi = j
		}
	}
	a := &Allocation{Choice: make([]int, len(t.Modules)), Bits: last[bi].bits, Err2: last[bi].err}
	for i, j := len(t.Modules), bi; i > 0; i-- {
		s := fronts[i][j]
		a.Choice[i-1] = s.choice
		j = s.parent
	}
	return a, nil
}

// minBits returns the least total storage over all assignments.
func (t *Table) minBits() int64 {
	var total int64
	for _, row := range t.Bits {
		m := int64(-1)
		for _, b := range row {
			if b >= 0 && (m < 0 || b < m) {
				m = b
			}
		}
		total += m
	}
	return total
}
