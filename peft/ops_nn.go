package peft

import (
	"fmt"
	"math"
	"math/rand"
)

// This file holds the neural-network ops: activations, softmax, layer norm,
// embedding lookup, cross-entropy, causal self-attention and dropout, each
// with one explicit backward (llm.c style). Letters: B = batch size, T =
// sequence length, C = channels, V = vocabulary size, H = heads, hd = C/H.

// unary applies f elementwise; df(x, y) is f′ at x given y = f(x).
func unary(a *Tensor, f func(x float64) float64, df func(x, y float64) float64) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(n, m)
	for i, x := range ad {
		od[i] = f(x)
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		for i, g := range dC {
			dA[i] += g * df(ad[i], od[i])
		}
	}, a)
}

// GELU returns x·Φ(x) elementwise, Φ the standard normal CDF (the exact
// form, PyTorch's nn.GELU() default).
func GELU(a *Tensor) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(n, m)
	cdf := make([]float64, n*m) // Φ(x), kept for backward
	for i, x := range ad {
		cdf[i] = 0.5 * (1 + math.Erf(x*(1/math.Sqrt2)))
		od[i] = x * cdf[i]
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		const invSqrt2Pi = 0.3989422804014327 // 1/√(2π)
		for i, g := range dC {
			x := ad[i]
			// d/dx x·Φ(x) = Φ(x) + x·φ(x)
			dA[i] += g * (cdf[i] + x*invSqrt2Pi*math.Exp(-0.5*x*x))
		}
	}, a)
}

// ReLU returns max(x, 0) elementwise (gradient 0 at x = 0).
func ReLU(a *Tensor) *Tensor {
	return unary(a,
		func(x float64) float64 { return math.Max(x, 0) },
		func(x, _ float64) float64 {
			if x > 0 {
				return 1
			}
			return 0
		})
}

// Tanh returns tanh(x) elementwise.
func Tanh(a *Tensor) *Tensor {
	return unary(a, math.Tanh, func(_, y float64) float64 { return 1 - y*y })
}

// Softmax returns the softmax of each row: (n×m) → (n×m), rows summing to 1.
func Softmax(a *Tensor) *Tensor {
	n, m := a.Dims()
	ad := vals(a.Value)
	out, od := newDense(n, m)
	for i := 0; i < n; i++ {
		softmaxRow(od[i*m:(i+1)*m], ad[i*m:(i+1)*m])
	}
	return newOp(out, func(o *Tensor) {
		dC, dA := gdata(o), gdata(a)
		for i := 0; i < n; i++ {
			y, dy := od[i*m:(i+1)*m], dC[i*m:(i+1)*m]
			// dx_j = y_j·(dy_j − Σ_l y_l·dy_l)
			var dot float64
			for j := range y {
				dot += y[j] * dy[j]
			}
			for j := range y {
				dA[i*m+j] += y[j] * (dy[j] - dot)
			}
		}
	}, a)
}

// softmaxRow writes softmax(x) into y, subtracting the maximum first.
func softmaxRow(y, x []float64) {
	mx := math.Inf(-1)
	for _, v := range x {
		if v > mx {
			mx = v
		}
	}
	var s float64
	for j, v := range x {
		y[j] = math.Exp(v - mx)
		s += y[j]
	}
	for j := range y {
		y[j] /= s
	}
}

// LayerNormEps is the ε added to the variance in LayerNorm.
const LayerNormEps = 1e-5

// LayerNorm normalizes each row of x (n×m) to mean 0 and variance 1, then
// scales by gain and shifts by bias, both (1×m) (nil gain = 1, nil bias = 0):
//
//	y_ij = (x_ij − μ_i)/√(σ²_i + ε) · g_j + b_j
func LayerNorm(x, gain, bias *Tensor) *Tensor {
	n, m := x.Dims()
	var gd, bd []float64
	if gain != nil {
		rowShape("LayerNorm gain", x, gain)
		gd = vals(gain.Value)
	}
	if bias != nil {
		rowShape("LayerNorm bias", x, bias)
		bd = vals(bias.Value)
	}
	xd := vals(x.Value)
	out, od := newDense(n, m)
	xhat := make([]float64, n*m) // (n×m), kept for backward
	rstd := make([]float64, n)   // (n), 1/√(σ²+ε), kept for backward
	for i := 0; i < n; i++ {
		row := xd[i*m : (i+1)*m]
		var mu float64
		for _, v := range row {
			mu += v
		}
		mu /= float64(m)
		var vr float64
		for _, v := range row {
			vr += (v - mu) * (v - mu)
		}
		vr /= float64(m)
		rstd[i] = 1 / math.Sqrt(vr+LayerNormEps)
		for j, v := range row {
			h := (v - mu) * rstd[i]
			xhat[i*m+j] = h
			y := h
			if gd != nil {
				y *= gd[j]
			}
			if bd != nil {
				y += bd[j]
			}
			od[i*m+j] = y
		}
	}
	return newOp(out, func(o *Tensor) {
		dY := gdata(o)
		if gain != nil && gain.NeedsGrad() {
			dG := gdata(gain)
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dG[j] += dY[i*m+j] * xhat[i*m+j]
				}
			}
		}
		if bias != nil && bias.NeedsGrad() {
			dB := gdata(bias)
			for i := 0; i < n; i++ {
				for j := 0; j < m; j++ {
					dB[j] += dY[i*m+j]
				}
			}
		}
		if !x.NeedsGrad() {
			return
		}
		dX := gdata(x)
		dh := make([]float64, m)
		for i := 0; i < n; i++ {
			// dh = dy·g; dx = rstd·(dh − mean(dh) − x̂·mean(dh⊙x̂))
			var mdh, mdhx float64
			for j := 0; j < m; j++ {
				dh[j] = dY[i*m+j]
				if gd != nil {
					dh[j] *= gd[j]
				}
				mdh += dh[j]
				mdhx += dh[j] * xhat[i*m+j]
			}
			mdh /= float64(m)
			mdhx /= float64(m)
			for j := 0; j < m; j++ {
				dX[i*m+j] += rstd[i] * (dh[j] - mdh - xhat[i*m+j]*mdhx)
			}
		}
	}, x, gain, bias)
}

// Embedding returns the rows of table (V×d) at ids: → (len(ids)×d). An id out
// of [0, V) panics with an ArgError.
func Embedding(table *Tensor, ids []int) *Tensor {
	V, d := table.Dims()
	if len(ids) == 0 {
		panic(ArgError{Op: "Embedding", Msg: "no ids"})
	}
	for i, id := range ids {
		if id < 0 || id >= V {
			panic(ArgError{Op: "Embedding", Msg: fmt.Sprintf("ids[%d] = %d outside the table's [0, %d)", i, id, V)})
		}
	}
	td := vals(table.Value)
	out, od := newDense(len(ids), d)
	for i, id := range ids {
		copy(od[i*d:(i+1)*d], td[id*d:(id+1)*d])
	}
	ids = append([]int(nil), ids...)
	return newOp(out, func(o *Tensor) {
		dC, dT := gdata(o), gdata(table)
		for i, id := range ids {
			for j := 0; j < d; j++ {
				dT[id*d+j] += dC[i*d+j]
			}
		}
	}, table)
}

// CrossEntropy returns the mean over rows of −log softmax(logits_i)[t_i]:
// logits (n×V), targets (n) in [0, V) → (1×1).
func CrossEntropy(logits *Tensor, targets []int) *Tensor {
	n, V := logits.Dims()
	if len(targets) != n {
		panic(ShapeError{Op: "CrossEntropy", Got: fmt.Sprintf("logits %s, %d targets", ShapeOf(n, V), len(targets)), Want: fmt.Sprintf("%d targets, one per row", n)})
	}
	for i, t := range targets {
		if t < 0 || t >= V {
			panic(ArgError{Op: "CrossEntropy", Msg: fmt.Sprintf("targets[%d] = %d outside [0, %d)", i, t, V)})
		}
	}
	ld := vals(logits.Value)
	probs := make([]float64, n*V) // (n×V), kept for backward
	var loss float64
	for i := 0; i < n; i++ {
		p := probs[i*V : (i+1)*V]
		softmaxRow(p, ld[i*V:(i+1)*V])
		loss -= math.Log(p[targets[i]])
	}
	loss /= float64(n)
	targets = append([]int(nil), targets...)
	return newOp(newScalar(loss), func(o *Tensor) {
		g := gdata(o)[0] / float64(n)
		dL := gdata(logits)
		for i := 0; i < n; i++ {
			// d loss_i/d logit_ij = p_ij − [j = t_i]
			for j := 0; j < V; j++ {
				dL[i*V+j] += g * probs[i*V+j]
			}
			dL[i*V+targets[i]] -= g
		}
	}, logits)
}

// CausalSelfAttention returns multi-head causal self-attention of q, k, v,
// each (B·T×C) with the T rows of each of the B sequences consecutive and
// head h owning columns [h·hd, (h+1)·hd), hd = C/heads:
//
//	out_bh = softmax(mask(Q_bh·K_bhᵀ/√hd))·V_bh   (T×hd) per sequence b, head h
//
// where mask lets position t attend to positions ≤ t only. → (B·T×C).
func CausalSelfAttention(q, k, v *Tensor, batch, heads int) *Tensor {
	N, C := q.Dims()
	kr, kc := k.Dims()
	vr, vc := v.Dims()
	if kr != N || kc != C || vr != N || vc != C {
		panic(ShapeError{Op: "CausalSelfAttention", Got: "q " + ShapeOf(N, C) + ", k " + ShapeOf(kr, kc) + ", v " + ShapeOf(vr, vc), Want: "q, k, v of one shape (B·T×C)"})
	}
	if batch <= 0 || N%batch != 0 || heads <= 0 || C%heads != 0 {
		panic(ShapeError{Op: "CausalSelfAttention", Got: fmt.Sprintf("%s with batch %d, heads %d", ShapeOf(N, C), batch, heads), Want: "rows divisible by batch and columns by heads"})
	}
	T, hd := N/batch, C/heads
	scale := 1 / math.Sqrt(float64(hd))
	qd, kd, vd := vals(q.Value), vals(k.Value), vals(v.Value)
	out, od := newDense(N, C)
	att := make([]float64, batch*heads*T*T) // (B, H, T, T) softmax weights, kept for backward
	for b := 0; b < batch; b++ {
		for h := 0; h < heads; h++ {
			off := b*T*C + h*hd // Q_bh starts here, row stride C
			P := att[(b*heads+h)*T*T : (b*heads+h+1)*T*T]
			// S = Q·Kᵀ/√hd (T×T)
			gemm(false, true, T, T, hd, scale, qd[off:], C, kd[off:], C, 0, P, T)
			for t := 0; t < T; t++ {
				row := P[t*T : (t+1)*T]
				softmaxRow(row[:t+1], row[:t+1])
				for j := t + 1; j < T; j++ {
					row[j] = 0 // masked: t attends to ≤ t only
				}
			}
			// O = P·V (T×hd)
			gemm(false, false, T, hd, T, 1, P, T, vd[off:], C, 0, od[off:], C)
		}
	}
	return newOp(out, func(o *Tensor) {
		dO := gdata(o)
		var dq, dk, dv []float64
		if q.NeedsGrad() {
			dq = gdata(q)
		}
		if k.NeedsGrad() {
			dk = gdata(k)
		}
		if v.NeedsGrad() {
			dv = gdata(v)
		}
		dP := make([]float64, T*T) // (T×T) scratch: dP, then dS in place
		for b := 0; b < batch; b++ {
			for h := 0; h < heads; h++ {
				off := b*T*C + h*hd
				P := att[(b*heads+h)*T*T : (b*heads+h+1)*T*T]
				if dv != nil {
					gemm(true, false, T, hd, T, 1, P, T, dO[off:], C, 1, dv[off:], C) // dV += Pᵀ·dO
				}
				if dq == nil && dk == nil {
					continue
				}
				gemm(false, true, T, T, hd, 1, dO[off:], C, vd[off:], C, 0, dP, T) // dP = dO·Vᵀ
				for t := 0; t < T; t++ {
					// dS_tj = P_tj·(dP_tj − Σ_l P_tl·dP_tl); masked entries have P = 0
					p, dp := P[t*T:(t+1)*T], dP[t*T:(t+1)*T]
					var dot float64
					for j := 0; j <= t; j++ {
						dot += p[j] * dp[j]
					}
					for j := 0; j < T; j++ {
						dp[j] = p[j] * (dp[j] - dot)
					}
				}
				if dq != nil {
					gemm(false, false, T, hd, T, scale, dP, T, kd[off:], C, 1, dq[off:], C) // dQ += dS·K/√hd
				}
				if dk != nil {
					gemm(true, false, T, hd, T, scale, dP, T, qd[off:], C, 1, dk[off:], C) // dK += dSᵀ·Q/√hd
				}
			}
		}
	}, q, k, v)
}

// Dropout zeroes each element of x with probability p and scales the rest by
// 1/(1−p), drawing from rng, when train is true; otherwise (or when p = 0) it
// returns x itself. p must be in [0, 1).
func Dropout(x *Tensor, p float64, rng *rand.Rand, train bool) *Tensor {
	if p < 0 || p >= 1 || math.IsNaN(p) {
		panic(ArgError{Op: "Dropout", Msg: fmt.Sprintf("p = %v outside [0, 1)", p)})
	}
	if !train || p == 0 {
		return x
	}
	n, m := x.Dims()
	xd := vals(x.Value)
	mask := make([]float64, n*m) // 0 or 1/(1−p), kept for backward
	out, od := newDense(n, m)
	keep := 1 / (1 - p)
	for i := range mask {
		if rng.Float64() >= p {
			mask[i] = keep
		}
		od[i] = xd[i] * mask[i]
	}
	return newOp(out, func(o *Tensor) {
		dC, dX := gdata(o), gdata(x)
		for i, g := range dC {
			dX[i] += g * mask[i]
		}
	}, x)
}
