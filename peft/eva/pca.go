package eva

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Allocate returns EVA's rank redistribution: of the explained variance
// ratios ratios[l][i] with i < caps[l] (each layer's descending), the
// budget largest across layers are kept, and r_l is the number kept from
// layer l. Equal ratios go to the earlier layer, then the earlier
// component, so that each layer keeps a prefix of its directions. It panics
// if caps and ratios differ in length, or budget is negative or above the
// number of ratios offered.
func Allocate(ratios [][]float64, caps []int, budget int) []int {
	if len(caps) != len(ratios) {
		panic(peft.ArgError{Op: "eva.Allocate", Msg: fmt.Sprintf("%d layers of ratios, %d caps", len(ratios), len(caps))})
	}
	type entry struct {
		v    float64
		l, i int
	}
	var all []entry
	for l, rs := range ratios {
		for i := 0; i < min(caps[l], len(rs)); i++ {
			all = append(all, entry{rs[i], l, i})
		}
	}
	if budget < 0 || budget > len(all) {
		panic(peft.ArgError{Op: "eva.Allocate", Msg: fmt.Sprintf("budget %d outside [0, %d], the ratios offered", budget, len(all))})
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].v > all[b].v })
	ranks := make([]int, len(ratios))
	for _, e := range all[:budget] {
		ranks[e.l]++
	}
	return ranks
}

// negligible is the share of the total variance below which a direction
// counts as converged whatever its similarity: it explains nothing.
const negligible = 1e-12

// stats is one layer's streaming PCA: the count, mean and scatter matrix of
// every input row added, and the principal directions of the last update.
type stats struct {
	k, c int
	n    int
	mean []float64     // (k)
	s    *mat.SymDense // (k×k) Σ (x − μ)(x − μ)ᵀ

	lambda []float64  // (k) eigenvalues of s, descending, ≥ 0
	ratio  []float64  // (k) λ_i / Σλ
	comps  *mat.Dense // (c×k) the first c directions, rows, nil before the first update
	sim    []float64  // (c) |cos| with the previous update's directions; 0 at the first
	vecs   *mat.Dense // (k×k) scratch for the eigenvectors
}

func newStats(k, c int) *stats {
	return &stats{k: k, c: c, mean: make([]float64, k), s: mat.NewSymDense(k, nil), sim: make([]float64, c)}
}

// add merges the rows of x (n_b×k) into the count, mean and scatter by the
// pairwise update of Chan, Golub and LeVeque:
//
//	n′ = n + n_b,  δ = μ_b − μ,  μ′ = μ + δ·n_b/n′
//	S′ = S + S_b + δδᵀ·n·n_b/n′,  S_b = Σ_b (x − μ_b)(x − μ_b)ᵀ
func (st *stats) add(x *mat.Dense) {
	nb, k := x.Dims()
	if k != st.k {
		panic(peft.ShapeError{Op: "eva: layer input", Got: peft.ShapeOf(nb, k), Want: fmt.Sprintf("(n×%d)", st.k)})
	}
	if nb == 0 {
		return
	}
	mb := make([]float64, k)
	for i := 0; i < nb; i++ {
		for j, v := range x.RawRowView(i) {
			mb[j] += v
		}
	}
	for j := range mb {
		mb[j] /= float64(nb)
	}
	xc := mat.NewDense(nb, k, nil) // (n_b×k) centred batch
	for i := 0; i < nb; i++ {
		row, src := xc.RawRowView(i), x.RawRowView(i)
		for j := range row {
			row[j] = src[j] - mb[j]
		}
	}
	var sb mat.SymDense
	sb.SymOuterK(1, xc.T()) // (k×k) = Xcᵀ·Xc
	n1 := st.n + nb
	w := float64(st.n) * float64(nb) / float64(n1)
	delta := make([]float64, k)
	for j := range delta {
		delta[j] = mb[j] - st.mean[j]
		st.mean[j] += delta[j] * float64(nb) / float64(n1)
	}
	st.s.AddSym(st.s, &sb)
	st.s.SymRankOne(st.s, w, mat.NewVecDense(k, delta))
	st.n = n1
}

// update recomputes the eigen-decomposition of the scatter and the
// similarity of the new directions to the old.
func (st *stats) update() error {
	var eig mat.EigenSym
	if !eig.Factorize(st.s, true) {
		return fmt.Errorf("the eigen-decomposition of the input scatter (%d×%d) did not converge", st.k, st.k)
	}
	vals := eig.Values(nil) // ascending
	if st.vecs == nil {
		st.vecs = mat.NewDense(st.k, st.k, nil)
	}
	eig.VectorsTo(st.vecs)
	k := st.k
	st.lambda = make([]float64, k)
	total := 0.0
	for i := 0; i < k; i++ {
		st.lambda[i] = math.Max(vals[k-1-i], 0)
		total += st.lambda[i]
	}
	st.ratio = make([]float64, k)
	if total > 0 {
		for i, v := range st.lambda {
			st.ratio[i] = v / total
		}
	}
	comps := mat.NewDense(st.c, k, nil)
	for i := 0; i < st.c; i++ {
		row := comps.RawRowView(i)
		for j := range row {
			row[j] = st.vecs.At(j, k-1-i)
		}
		if st.comps != nil {
			dot := 0.0
			for j, v := range st.comps.RawRowView(i) {
				dot += v * row[j]
			}
			st.sim[i] = math.Abs(dot)
		}
	}
	st.comps = comps
	return nil
}

// converged reports whether the first r directions have converged: each
// has |cos| ≥ tau with the previous estimate, or no variance.
func (st *stats) converged(r int, tau float64) bool {
	if st.comps == nil {
		return false
	}
	total := 0.0
	for _, v := range st.lambda {
		total += v
	}
	for i := 0; i < r; i++ {
		if st.sim[i] < tau && st.lambda[i] > negligible*total {
			return false
		}
	}
	return true
}

// variances returns λ_i/(n − 1), the sample variance along each direction.
func (st *stats) variances() []float64 {
	out := make([]float64, st.k)
	if st.n > 1 {
		for i, v := range st.lambda {
			out[i] = v / float64(st.n-1)
		}
	}
	return out
}

// singular returns √λ_i, the singular values of the centred inputs.
func (st *stats) singular() []float64 {
	out := make([]float64, st.k)
	for i, v := range st.lambda {
		out[i] = math.Sqrt(v)
	}
	return out
}

// finalComponents returns a copy of the directions, each with its largest
// entry (the first of equal ones) positive.
func (st *stats) finalComponents() *mat.Dense {
	out := mat.DenseCopyOf(st.comps)
	for i := 0; i < st.c; i++ {
		row := out.RawRowView(i)
		big := 0
		for j, v := range row {
			if math.Abs(v) > math.Abs(row[big]) {
				big = j
			}
		}
		if row[big] < 0 {
			for j := range row {
				row[j] = -row[j]
			}
		}
	}
	return out
}

func fmtSims(s []float64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = fmt.Sprintf("%.4f", v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
