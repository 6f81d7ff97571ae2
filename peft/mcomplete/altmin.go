package mcomplete

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Complete recovers a rank-k matrix from its observed entries by
// alternating minimization with error-tolerant least-squares steps (Gu,
// Song, Yin and Zhang, 2023, "Low Rank Matrix Completion via Robust
// Alternating Minimization in Nearly Linear Time", arXiv:2302.11068, ICLR
// 2024; the exact-solve algorithm and its analysis are Jain, Netrapalli
// and Sanghavi 2013, "Low-rank Matrix Completion using Alternating
// Minimization"). For M (m×n) observed on Ω, p̂ = |Ω|/(m·n):
//
//	init   U₀ = top-k left singular vectors of P_Ω(M)/p̂          (m×k)
//	       clip: rows of U₀ longer than 2μ√(k/m) scaled to that length
//	       Û₀ = orth(U₀)                                          (m×k)
//	step t V = argmin_V ‖P_Ω(Û_t·Vᵀ − M)‖_F    one k×k system per column:
//	         (Σ_{i∈Ω_j} û_i û_iᵀ)·v_j = Σ_{i∈Ω_j} M_ij û_i        (V n×k)
//	       V̂ = orth(V)
//	       U = argmin_U ‖P_Ω(U·V̂ᵀ − M)‖_F    one k×k system per row (U m×k)
//	       X_t = U·V̂ᵀ (m×n),  Û_{t+1} = orth(U)
//
// where orth is a thin QR (Gram–Schmidt) and û_i, v̂_j are rows. With
// enough samples (p ≳ C·μ²k^{O(1)}·log n / n in the analyses; this
// package's tests measure the constant for k = 3, n = 200) and incoherent
// factors, ‖X_t − M‖_F falls geometrically: linear convergence.
//
// The paper's contribution is that each least-squares step may be solved
// only approximately, to a bounded relative error, and the iteration still
// converges linearly with the same sample complexity; it then solves the
// steps with a sketching-preconditioned iterative solver in Õ(|Ω|·k) time
// per step instead of Õ(|Ω|·k²). Config.Solver picks the step:
//
//	"exact"  Cholesky of each k×k normal matrix, formed in O(|Ω_j|·k²)
//	"cg"     Config.CGIters conjugate-gradient steps on each normal
//	         system, matrix-free (G·v = Σ û_i(û_iᵀv), O(|Ω_j|·k) per step),
//	         warm-started from the previous iterate seen in the new basis
//
// Defaults: 50 iterations at most, stop at an observed residual of 1e-13,
// exact solves, k CG steps when Solver is "cg", no clipping (Mu = 0).
//
// Departures from the paper, and why:
//   - No sketching preconditioner: on an incoherent factor with enough
//     samples the normal matrix Σ û_i û_iᵀ ≈ p̂·I is already well
//     conditioned (the preconditioner's job), so plain CG with a warm
//     start gives the approximate solves the analysis tolerates. A CG
//     step is the inexact solve the robustness claim is about, and a few
//     of them (fewer than k, so not exact) are what the tests run.
//   - No sample splitting: the analyses draw fresh samples for each step,
//     which practice (and this code) does not; every step uses all of Ω.
//   - The init is a dense SVD of the m×n matrix P_Ω(M)/p̂ (accel's), fine
//     at the lab's sizes; the paper's nearly linear time would need a
//     sparse power method there.
//   - Clipping scales long rows down to 2μ√(k/m) rather than zeroing
//     entries (JNS13 zeroes large entries); Mu = 0 turns it off.
//   - A column or row seen fewer than k times gives a singular normal
//     matrix; the exact solver then adds a ridge of 1e-12·trace/k, CG
//     needs none.
func Complete(ctx context.Context, obs *Observed, cfg Config) (*Result, error) {
	obs.check("mcomplete.Complete")
	cfg, err := cfg.withDefaults(obs)
	if err != nil {
		return nil, err
	}
	if cfg.Truth != nil {
		if r, c := cfg.Truth.Dims(); r != obs.M || c != obs.N {
			panic(peft.ShapeError{Op: "mcomplete.Complete", Got: "Truth " + peft.ShapeOf(r, c), Want: peft.ShapeOf(obs.M, obs.N) + ", the observed matrix's shape"})
		}
	}
	m, n, k := obs.M, obs.N, cfg.K
	rows, cols := index(obs)

	// init: top-k left singular vectors of P_Ω(M)/p̂, clipped, orthonormalized
	u0, err := topK(ctx, obs.Dense(obs.Rate()), k, uint64(cfg.Seed))
	if err != nil {
		return nil, fmt.Errorf("mcomplete: initial SVD of P_Ω(M)/p̂ %s: %w", peft.ShapeOf(m, n), err)
	}
	if cfg.Mu > 0 {
		clipRows(u0, 2*cfg.Mu*math.Sqrt(float64(k)/float64(m)))
	}
	uh, err := orthonormalize(u0)
	if err != nil {
		return nil, fmt.Errorf("mcomplete: initial factor: %w", err)
	}

	res := &Result{}
	var pm float64 // ‖P_Ω(M)‖_F
	for _, v := range obs.Val {
		pm += v * v
	}
	pm = math.Sqrt(pm)
	var truthNorm float64
	if cfg.Truth != nil {
		truthNorm = mat.Norm(cfg.Truth, 2)
	}

	var vPrev *mat.Dense // V̂ of the step before (n×k), for warm starts
	for t := 1; t <= cfg.Iters; t++ {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("mcomplete: stopped before iteration %d: %w", t, err)
		}
		// V step: warm start V₀ = X_{t−1}ᵀ·Û_t = V̂_{t−1}·(U_{t−1}ᵀ·Û_t).
		var v0 *mat.Dense
		if vPrev != nil {
			var c mat.Dense
			c.Mul(res.U.T(), uh) // (k×k)
			v0 = mat.NewDense(n, k, nil)
			v0.Mul(vPrev, &c)
		}
		v := solveSide(cols, uh, v0, cfg)
		vh, err := orthonormalize(v)
		if err != nil {
			return res, fmt.Errorf("mcomplete: iteration %d, V step: %w", t, err)
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("mcomplete: stopped in iteration %d: %w", t, err)
		}
		// U step: warm start U₀ = X·V̂ = Û_t·(Vᵀ·V̂), X = Û_t·Vᵀ the V step's.
		var c mat.Dense
		c.Mul(v.T(), vh)
		uw := mat.NewDense(m, k, nil)
		uw.Mul(uh, &c)
		u := solveSide(rows, vh, uw, cfg)
		res.U, res.V = u, vh
		vPrev = vh

		res.Iters = t
		res.Residual = append(res.Residual, residual(obs, u, vh)/pm)
		if cfg.Truth != nil {
			res.Err = append(res.Err, frobDiff(u, vh, cfg.Truth)/truthNorm)
		}
		if last := res.Residual[len(res.Residual)-1]; math.IsNaN(last) || math.IsInf(last, 0) {
			return res, fmt.Errorf("mcomplete: iteration %d: the residual is %v", t, last)
		}
		if res.Residual[len(res.Residual)-1] < cfg.Tol {
			break
		}
		if uh, err = orthonormalize(u); err != nil {
			return res, fmt.Errorf("mcomplete: iteration %d, U step: %w", t, err)
		}
	}
	return res, nil
}

// Config configures Complete.
type Config struct {
	K     int     // rank k, 1 ≤ k ≤ min(m, n)
	Iters int     // most alternating iterations (a V and a U step each); 50 if 0
	Tol   float64 // stop once ‖P_Ω(X − M)‖_F/‖P_Ω(M)‖_F < Tol; 1e-13 if 0
	// Mu > 0 clips the initial factor's rows to length 2μ√(k/m), μ a bound
	// on M's incoherence (see Incoherence); 0 does not clip.
	Mu float64
	// Solver is "exact" (the default when empty) or "cg" (see Complete).
	Solver string
	// CGIters is the number of conjugate-gradient steps per system for
	// Solver "cg", ≥ 1; k if 0 (exact in exact arithmetic).
	CGIters int
	// Truth, if set (m×n), makes Complete record ‖X_t − Truth‖_F/‖Truth‖_F
	// in Result.Err at each iteration.
	Truth *mat.Dense
	Seed  int64 // seeds the randomized SVD of the init on large matrices
}

// withDefaults returns cfg with its defaults filled in, or an error naming
// the field and its value.
func (cfg Config) withDefaults(obs *Observed) (Config, error) {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("mcomplete: Config.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.K < 1 || cfg.K > min(obs.M, obs.N):
		return cfg, bad("K", cfg.K, fmt.Sprintf("1 ≤ k ≤ min(m, n) = %d for M %s", min(obs.M, obs.N), peft.ShapeOf(obs.M, obs.N)))
	case cfg.Iters < 0:
		return cfg, bad("Iters", cfg.Iters, "≥ 0 (0: 50)")
	case cfg.Tol < 0 || math.IsNaN(cfg.Tol):
		return cfg, bad("Tol", cfg.Tol, "≥ 0 (0: 1e-13)")
	case cfg.Mu < 0 || math.IsNaN(cfg.Mu) || math.IsInf(cfg.Mu, 0):
		return cfg, bad("Mu", cfg.Mu, "a finite μ ≥ 1, or 0 for no clipping")
	case cfg.Mu > 0 && cfg.Mu < 1:
		return cfg, bad("Mu", cfg.Mu, "μ ≥ 1 (the incoherence of any orthonormal factor is at least 1), or 0 for no clipping")
	case cfg.Solver != "" && cfg.Solver != "exact" && cfg.Solver != "cg":
		return cfg, bad("Solver", fmt.Sprintf("%q", cfg.Solver), `"exact" or "cg"`)
	case cfg.CGIters < 0:
		return cfg, bad("CGIters", cfg.CGIters, "≥ 1 (0: k)")
	case len(obs.Val) == 0:
		return cfg, fmt.Errorf("mcomplete: no observed entries of the %s matrix", peft.ShapeOf(obs.M, obs.N))
	}
	if cfg.Iters == 0 {
		cfg.Iters = 50
	}
	if cfg.Tol == 0 {
		cfg.Tol = 1e-13
	}
	if cfg.Solver == "" {
		cfg.Solver = "exact"
	}
	if cfg.CGIters == 0 {
		cfg.CGIters = cfg.K
	}
	return cfg, nil
}

// Result is what Complete found: X = U·Vᵀ.
type Result struct {
	U *mat.Dense // (m×k), the last U step's solution
	V *mat.Dense // (n×k), orthonormal
	// Residual[t−1] is ‖P_Ω(X_t − M)‖_F/‖P_Ω(M)‖_F after iteration t.
	Residual []float64
	// Err[t−1] is ‖X_t − Truth‖_F/‖Truth‖_F, if Config.Truth was set.
	Err   []float64
	Iters int // iterations run
}

// Matrix returns X = U·Vᵀ (m×n).
func (r *Result) Matrix() *mat.Dense {
	var x mat.Dense
	x.Mul(r.U, r.V.T())
	return &x
}

// ConvergenceRate returns the geometric rate ρ of a sequence of errors
// e_t ≈ C·ρᵗ, fitted by least squares to log e_t over the entries from
// the first below start down to the last above floor (the linear phase,
// before rounding takes over), and how many entries it used. It returns
// NaN if fewer than 3 fit.
func ConvergenceRate(errs []float64, start, floor float64) (rate float64, used int) {
	var xs, ys []float64
	for t, e := range errs {
		if e < start && e > floor {
			xs = append(xs, float64(t))
			ys = append(ys, math.Log(e))
		}
	}
	if len(xs) < 3 {
		return math.NaN(), len(xs)
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(xs))
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	return math.Exp(sxy / sxx), len(xs)
}

// entry is one observed entry seen from its row (other = column) or from
// its column (other = row).
type entry struct {
	other int
	val   float64
}

// index returns the observed entries of each row and of each column.
func index(o *Observed) (rows, cols [][]entry) {
	rows = make([][]entry, o.M)
	cols = make([][]entry, o.N)
	for t, v := range o.Val {
		rows[o.I[t]] = append(rows[o.I[t]], entry{o.J[t], v})
		cols[o.J[t]] = append(cols[o.J[t]], entry{o.I[t], v})
	}
	return rows, cols
}

// clipRows scales every row of u longer than c down to length c.
func clipRows(u *mat.Dense, c float64) {
	m, _ := u.Dims()
	for i := 0; i < m; i++ {
		row := u.RawRowView(i)
		if nr := norm(row); nr > c {
			for j := range row {
				row[j] *= c / nr
			}
		}
	}
}

// solveSide solves, for each line ℓ (a column when fixed is Û, a row when
// it is V̂), min_x Σ_{(o,v)∈lines[ℓ]} (fixed_o·x − v)² for x (k): the
// normal equations G·x = b, G = Σ f_o f_oᵀ, b = Σ v·f_o, with f_o row o of
// fixed. warm (len(lines)×k, or nil for zeros) starts CG. → (len(lines)×k).
func solveSide(lines [][]entry, fixed, warm *mat.Dense, cfg Config) *mat.Dense {
	_, k := fixed.Dims()
	out := mat.NewDense(len(lines), k, nil)
	g := mat.NewSymDense(k, nil)
	b := make([]float64, k)
	for l, es := range lines {
		x := out.RawRowView(l)
		for i := range b {
			b[i] = 0
		}
		for _, e := range es {
			f := fixed.RawRowView(e.other)
			for i := range b {
				b[i] += e.val * f[i]
			}
		}
		if cfg.Solver == "cg" {
			if warm != nil {
				copy(x, warm.RawRowView(l))
			}
			cg(es, fixed, b, x, cfg.CGIters)
			continue
		}
		g.Zero()
		for _, e := range es {
			f := fixed.RawRowView(e.other)
			for i := 0; i < k; i++ {
				for j := i; j < k; j++ {
					g.SetSym(i, j, g.At(i, j)+f[i]*f[j])
				}
			}
		}
		solveSPD(g, b, x)
	}
	return out
}

// solveSPD sets x to G⁻¹b by Cholesky, adding a ridge of 1e-12·trace/k to a
// G that is not positive definite (a line seen fewer than k times).
func solveSPD(g *mat.SymDense, b, x []float64) {
	k := g.SymmetricDim()
	var ch mat.Cholesky
	if !ch.Factorize(g) {
		var tr float64
		for i := 0; i < k; i++ {
			tr += g.At(i, i)
		}
		ridge := 1e-12*tr/float64(k) + 1e-300
		for i := 0; i < k; i++ {
			g.SetSym(i, i, g.At(i, i)+ridge)
		}
		if !ch.Factorize(g) {
			return // a line with no observation: x stays 0
		}
	}
	xv := mat.NewVecDense(k, x)
	if err := ch.SolveVecTo(xv, mat.NewVecDense(k, b)); err != nil && !errors.As(err, new(mat.Condition)) {
		for i := range x {
			x[i] = 0
		}
	}
}

// cg runs iters conjugate-gradient steps on G·x = b from x, with G·y =
// Σ_e f_e (f_eᵀ y) applied without forming G (f_e row e.other of fixed).
func cg(es []entry, fixed *mat.Dense, b, x []float64, iters int) {
	k := len(b)
	gv := func(dst, y []float64) {
		for i := range dst {
			dst[i] = 0
		}
		for _, e := range es {
			f := fixed.RawRowView(e.other)
			var d float64
			for i, fi := range f {
				d += fi * y[i]
			}
			for i, fi := range f {
				dst[i] += d * fi
			}
		}
	}
	r := make([]float64, k)
	p := make([]float64, k)
	q := make([]float64, k)
	gv(q, x)
	for i := range r {
		r[i] = b[i] - q[i] // r = b − G·x
	}
	copy(p, r)
	rr := dot(r, r)
	bb := dot(b, b)
	for it := 0; it < iters && rr > 1e-32*bb && rr > 0; it++ {
		gv(q, p)
		pq := dot(p, q)
		if pq <= 0 {
			return // G is singular along p: x is as good as CG gets
		}
		a := rr / pq
		for i := range x {
			x[i] += a * p[i]
			r[i] -= a * q[i]
		}
		rn := dot(r, r)
		for i := range p {
			p[i] = r[i] + rn/rr*p[i]
		}
		rr = rn
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// residual returns ‖P_Ω(U·Vᵀ − M)‖_F.
func residual(o *Observed, u, v *mat.Dense) float64 {
	var s float64
	for t, val := range o.Val {
		d := dot(u.RawRowView(o.I[t]), v.RawRowView(o.J[t])) - val
		s += d * d
	}
	return math.Sqrt(s)
}

// frobDiff returns ‖U·Vᵀ − x‖_F.
func frobDiff(u, v, x *mat.Dense) float64 {
	var d mat.Dense
	d.Mul(u, v.T())
	d.Sub(&d, x)
	return mat.Norm(&d, 2)
}
