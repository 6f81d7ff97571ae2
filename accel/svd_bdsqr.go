package accel

import (
	"context"
	"math"

	"gonum.org/v1/gonum/lapack/gonum"
)

// This file holds the SVD of an upper bidiagonal matrix with vectors: the
// implicit-shift bidiagonal QR iteration of Demmel & Kahan (1990, "Accurate
// singular values of bidiagonal matrices", the algorithm of LAPACK dbdsqr),
// restructured so that the plane rotations are not applied to the vectors as
// they are generated. The iteration on the bidiagonal (d, e) costs O(n) per
// sweep; it records each sweep's rotations in a rotLog, and the log is applied
// to the vectors in batches, one column chunk at a time. A chunk (all n rows,
// a few dozen columns) stays in cache while every rotation of the batch
// passes over it, and chunks are processed in parallel, so the O(n³) vector
// work runs at arithmetic speed rather than memory speed (Van Zee, van de
// Geijn & Quintana-Ortí 2011, "Restructuring the tridiagonal and bidiagonal
// QR algorithms for performance", use the same idea).

// rotRun is a sequence of count plane rotations on adjacent rows: rotation k
// acts on rows lo+k and lo+k+1 with (c, s) = (cs[off+2k], cs[off+2k+1]):
//
//	x, y := row(lo+k), row(lo+k+1)
//	row(lo+k), row(lo+k+1) = c·x + s·y, c·y − s·x
//
// applied for k = 0…count−1, or count−1…0 when backward.
type rotRun struct {
	lo, count, off int
	backward       bool
}

// rotLog is a batch of rotation sequences waiting to be applied.
type rotLog struct {
	seqs []rotRun
	cs   []float64
}

func (l *rotLog) add(lo int, backward bool, cs []float64) {
	l.seqs = append(l.seqs, rotRun{lo: lo, count: len(cs) / 2, off: len(l.cs), backward: backward})
	l.cs = append(l.cs, cs...)
}

func (l *rotLog) reset() { l.seqs, l.cs = l.seqs[:0], l.cs[:0] }

// rotChunk is the column width of the chunks a rotLog is applied to.
const rotChunk = rotStrip

// panels is an n×cols matrix stored as column panels of rotChunk columns,
// each panel contiguous (n rows of stride rotChunk, the last one padded with
// zero columns). Rows of a row-major matrix with a stride that is a multiple
// of 4 KiB map onto a few cache sets, so a chunk of a 1024×1024 matrix would
// not stay in cache; a panel does.
//
// low[p] is a row index above which panel p is known to be zero: rows
// 0…low[p]−1 hold zeros in its columns. Started from the identity (low[p] =
// p·rotChunk), a rotation on rows k, k+1 < low[p] does nothing there and is
// skipped; the QR sweeps fill the upper rows one by one, so this saves about
// a fifth of the rotation work.
type panels struct {
	n, cols int
	data    []float64
	low     []int
}

func newPanels(n, cols int) panels {
	np := (cols + rotChunk - 1) / rotChunk
	return panels{n: n, cols: cols, data: make([]float64, np*n*rotChunk), low: make([]int, np)}
}

// panel returns panel p (n×rotChunk, row stride rotChunk).
func (x panels) panel(p int) []float64 {
	sz := x.n * rotChunk
	return x.data[p*sz : (p+1)*sz]
}

// setIdentity sets x to the identity (n = cols).
func (x panels) setIdentity() {
	clear(x.data)
	for p := range x.low {
		x.low[p] = p * rotChunk
	}
	for i := 0; i < x.n; i++ {
		x.data[(i/rotChunk)*x.n*rotChunk+i*rotChunk+i%rotChunk] = 1
	}
}

// toRowMajor copies x into the row-major dst (row stride ld).
func (x panels) toRowMajor(dst []float64, ld int) {
	for p := 0; p*rotChunk < x.cols; p++ {
		c0 := p * rotChunk
		w := min(rotChunk, x.cols-c0)
		pp := x.panel(p)
		for i := 0; i < x.n; i++ {
			copy(dst[i*ld+c0:i*ld+c0+w], pp[i*rotChunk:i*rotChunk+w])
		}
	}
}

// startLogs starts applying the sequences logged in lv to the rows of xv
// and those in lu to xu, panel by panel, as the tasks of one team step (see
// team.start; with a nil team, join runs them all), and returns the step.
// The tasks are xv's panels then xu's, so with two workers the caller (once
// it joins) starts on V and the helper on U, and each takes over the other's
// when it runs out. The logs and panels must not change until the step is
// joined. Each task checks ctx first and does nothing once it is cancelled.
func startLogs(ctx context.Context, tm *team, lv *rotLog, xv panels, lu *rotLog, xu panels) teamStep {
	npv := (xv.cols + rotChunk - 1) / rotChunk
	npu := (xu.cols + rotChunk - 1) / rotChunk
	if len(lv.seqs) == 0 {
		npv = 0
	}
	if len(lu.seqs) == 0 {
		npu = 0
	}
	return tm.start(npv+npu, nil, func(_, k int) {
		if ctx.Err() != nil {
			return
		}
		if k < npv {
			lv.applyPanel(xv.panel(k), &xv.low[k])
		} else {
			k -= npv
			lu.applyPanel(xu.panel(k), &xu.low[k])
		}
	})
}

// applyPanel applies every logged sequence to one panel whose rows above
// *low are zero (see panels), skipping the rotations that act on zero rows
// only, and updates *low. Two consecutive forward sequences on the same rows
// (the common case: QR sweeps repeat on a block until its last entry
// deflates) go through rotSeq2Fwd, which passes over the rows once for both.
func (l *rotLog) applyPanel(x []float64, low *int) {
	for j := 0; j < len(l.seqs); j++ {
		q := l.seqs[j]
		if q.backward {
			// From the bottom up, every rotation meets a non-zero row once
			// the first does.
			if q.lo+q.count >= *low {
				rotSeq(x[q.lo*rotChunk:], rotChunk, rotChunk, l.cs[q.off:q.off+2*q.count], true)
				*low = min(*low, q.lo)
			}
			continue
		}
		if j+1 < len(l.seqs) {
			r := l.seqs[j+1]
			if !r.backward && r.lo == q.lo && r.count > 0 && (r.count == q.count || r.count == q.count-1) {
				// The pair starts where B's first non-trivial rotation is; A's
				// rotations above its own start act on zero rows, harmlessly.
				sA := max(q.lo, *low-1)
				lowA := *low
				if sA < q.lo+q.count {
					lowA = min(*low, sA)
				}
				st := max(q.lo, lowA-1)
				skip := st - q.lo
				if skip < r.count {
					rotSeq2Fwd(x[st*rotChunk:], rotChunk, rotChunk, l.cs[q.off+2*skip:q.off+2*q.count], l.cs[r.off+2*skip:r.off+2*r.count])
					*low = min(*low, st)
				} else if skip < q.count {
					rotSeq(x[st*rotChunk:], rotChunk, rotChunk, l.cs[q.off+2*skip:q.off+2*q.count], false)
					*low = min(*low, st)
				}
				j++
				continue
			}
		}
		st := max(q.lo, *low-1)
		if skip := st - q.lo; skip < q.count {
			rotSeq(x[st*rotChunk:], rotChunk, rotChunk, l.cs[q.off+2*skip:q.off+2*q.count], false)
			*low = min(*low, st)
		}
	}
}

// bdsqrMaxSweeps bounds the QR iteration at bdsqrMaxSweeps·n² inner steps
// (LAPACK's MAXITR); a variable so that tests can force non-convergence.
var bdsqrMaxSweeps = 6

// bdsqrVectors computes the SVD B = Q·diag(σ)·Pᵀ of the n×n upper bidiagonal
// B with diagonal d and superdiagonal e (length n−1), overwriting d with σ
// (non-negative, descending), destroying e, and overwriting vt (n×n, row
// stride ldvt) with Pᵀ = VTᵦ and ut (n×n, row stride ldut) with Qᵀ = Uᵦᵀ.
// It returns ErrNoConvergence (unwrapped) if the iteration does not converge
// within 6n² inner steps, or ctx.Err() when ctx is cancelled.
func bdsqrVectors(ctx context.Context, n int, d, e []float64, vt []float64, ldvt int, ut []float64, ldut int) error {
	return bdsqrVectorsOn(ctx, Threads(), n, d, e, vt, ldvt, ut, ldut)
}

// bdsqrVectorsOn is bdsqrVectors with the rotations applied by at most
// workers goroutines (the caller included): the divide-and-conquer solver
// runs its small subproblems with workers = 1, several at once.
func bdsqrVectorsOn(ctx context.Context, workers, n int, d, e []float64, vt []float64, ldvt int, ut []float64, ldut int) error {
	if n == 0 {
		return nil
	}
	var impl gonum.Implementation
	const (
		eps  = 0x1p-53   // relative machine precision (LAPACK's dlamch('E'))
		unfl = 0x1p-1022 // smallest normal number
	)
	maxitr := float64(bdsqrMaxSweeps)
	// Relative accuracy tolerance, as in LAPACK: tol = max(10, min(100, ε^(-1/8)))·ε.
	tol := math.Max(10, math.Min(100, math.Pow(eps, -0.125))) * eps

	// thresh is the absolute threshold below which an off-diagonal entry is
	// set to zero: tol times an estimate of the smallest singular value.
	sminoa := math.Abs(d[0])
	if sminoa != 0 {
		mu := sminoa
		for i := 1; i < n; i++ {
			mu = math.Abs(d[i]) * (mu / (mu + math.Abs(e[i-1])))
			sminoa = math.Min(sminoa, mu)
			if sminoa == 0 {
				break
			}
		}
	}
	sminoa /= math.Sqrt(float64(n))
	thresh := math.Max(tol*sminoa, maxitr*float64(n)*float64(n)*unfl)

	// Two pairs of logs: while the helpers apply one batch (startLogs), the
	// caller records the next; at the next flush it joins the first batch's
	// remaining panels, then starts the new one.
	var logs [2][2]rotLog
	cur := 0 // the pair being recorded
	vlog, ulog := &logs[0][0], &logs[0][1]
	flushAt := max(256*n, 1<<14) // rotations per batch
	vp, up := newPanels(n, n), newPanels(n, n)
	vp.setIdentity()
	up.setIdentity()
	tm := newTeam(min(workers, 2*len(vp.low)))
	defer tm.close()
	var pending teamStep
	var pendingLogs *[2]rotLog
	join := func() {
		pending.join()
		pending = teamStep{}
		if pendingLogs != nil {
			pendingLogs[0].reset()
			pendingLogs[1].reset()
			pendingLogs = nil
		}
	}
	defer join() // on an early return, no helper may still be running
	// flush waits for the batch in flight, starts the one recorded, and
	// switches recording to the other pair of logs; with final it also
	// waits for that batch.
	flush := func(final bool) error {
		join()
		if err := ctx.Err(); err != nil {
			return err
		}
		pending = startLogs(ctx, tm, vlog, vp, ulog, up)
		pendingLogs = &logs[cur]
		if final {
			join()
			return ctx.Err()
		}
		cur ^= 1
		vlog, ulog = &logs[cur][0], &logs[cur][1]
		return nil
	}
	csU := make([]float64, 2*n)
	csV := make([]float64, 2*n)

	maxit := bdsqrMaxSweeps * n * n
	iter := 0
	sinceCheck := 0
	oldll, oldm := -1, -1
	idir := 0
	m := n - 1
outer:
	for m > 0 {
		if iter > maxit {
			return ErrNoConvergence
		}
		if sinceCheck > 4*n || len(ulog.cs)+len(vlog.cs) > 4*flushAt {
			sinceCheck = 0
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(ulog.cs)+len(vlog.cs) > 4*flushAt {
				if err := flush(false); err != nil {
					return err
				}
			}
		}
		sinceCheck++

		// Find the bottom unreduced block [ll, m]: e[ll..m−1] all non-negligible.
		smax := math.Abs(d[m])
		ll := -1
		for l := m - 1; l >= 0; l-- {
			abss, abse := math.Abs(d[l]), math.Abs(e[l])
			if abse <= thresh {
				e[l] = 0
				ll = l
				break
			}
			smax = math.Max(smax, math.Max(abss, abse))
		}
		if ll == m-1 {
			// d[m] is a converged singular value.
			m--
			continue
		}
		ll++

		if ll == m-1 {
			// 2×2 block: solve it directly.
			ssmin, ssmax, snr, csr, snl, csl := impl.Dlasv2(d[m-1], e[m-1], d[m])
			d[m-1], e[m-1], d[m] = ssmax, 0, ssmin
			vlog.add(m-1, false, []float64{csr, snr})
			ulog.add(m-1, false, []float64{csl, snl})
			m -= 2
			continue
		}

		// On a new block, chase the bulge from the larger end towards the smaller.
		if ll > oldm || m < oldll {
			if math.Abs(d[ll]) >= math.Abs(d[m]) {
				idir = 1
			} else {
				idir = 2
			}
		}

		// Convergence tests (relative accuracy criterion of Demmel & Kahan).
		var smin float64
		if idir == 1 {
			if math.Abs(e[m-1]) <= tol*math.Abs(d[m]) {
				e[m-1] = 0
				continue
			}
			mu := math.Abs(d[ll])
			smin = mu
			for l := ll; l < m; l++ {
				if math.Abs(e[l]) <= tol*mu {
					e[l] = 0
					continue outer
				}
				mu = math.Abs(d[l+1]) * (mu / (mu + math.Abs(e[l])))
				smin = math.Min(smin, mu)
			}
		} else {
			if math.Abs(e[ll]) <= tol*math.Abs(d[ll]) {
				e[ll] = 0
				continue
			}
			mu := math.Abs(d[m])
			smin = mu
			for l := m - 1; l >= ll; l-- {
				if math.Abs(e[l]) <= tol*mu {
					e[l] = 0
					continue outer
				}
				mu = math.Abs(d[l]) * (mu / (mu + math.Abs(e[l])))
				smin = math.Min(smin, mu)
			}
		}
		oldll, oldm = ll, m

		// Shift: zero if shifting would spoil relative accuracy, else the
		// smaller singular value of the trailing (or leading) 2×2.
		shift := 0.0
		if float64(n)*tol*(smin/smax) > math.Max(eps, 0.01*tol) {
			var sll float64
			if idir == 1 {
				sll = math.Abs(d[ll])
				shift, _ = impl.Dlas2(d[m-1], e[m-1], d[m])
			} else {
				sll = math.Abs(d[m])
				shift, _ = impl.Dlas2(d[ll], e[ll], d[ll+1])
			}
			if sll > 0 && (shift/sll)*(shift/sll) < eps {
				shift = 0
			}
		}
		iter += m - ll
		cnt := m - ll
		cu, cv := csU[:2*cnt], csV[:2*cnt]

		switch {
		case shift == 0 && idir == 1:
			// Zero-shift QR sweep, top to bottom.
			cs, oldcs := 1.0, 1.0
			var sn, oldsn, r float64
			for i := ll; i < m; i++ {
				cs, sn, r = impl.Dlartg(d[i]*cs, e[i])
				if i > ll {
					e[i-1] = oldsn * r
				}
				oldcs, oldsn, d[i] = impl.Dlartg(oldcs*r, d[i+1]*sn)
				k := i - ll
				cv[2*k], cv[2*k+1] = cs, sn
				cu[2*k], cu[2*k+1] = oldcs, oldsn
			}
			h := d[m] * cs
			d[m] = h * oldcs
			e[m-1] = h * oldsn
			vlog.add(ll, false, cv)
			ulog.add(ll, false, cu)
			if math.Abs(e[m-1]) <= thresh {
				e[m-1] = 0
			}
		case shift == 0:
			// Zero-shift QR sweep, bottom to top.
			cs, oldcs := 1.0, 1.0
			var sn, oldsn, r float64
			for i := m; i > ll; i-- {
				cs, sn, r = impl.Dlartg(d[i]*cs, e[i-1])
				if i < m {
					e[i] = oldsn * r
				}
				oldcs, oldsn, d[i] = impl.Dlartg(oldcs*r, d[i-1]*sn)
				k := i - 1 - ll
				cu[2*k], cu[2*k+1] = cs, -sn
				cv[2*k], cv[2*k+1] = oldcs, -oldsn
			}
			h := d[ll] * cs
			d[ll] = h * oldcs
			e[ll] = h * oldsn
			vlog.add(ll, true, cv)
			ulog.add(ll, true, cu)
			if math.Abs(e[ll]) <= thresh {
				e[ll] = 0
			}
		case idir == 1:
			// Shifted QR sweep, top to bottom.
			f := (math.Abs(d[ll]) - shift) * (math.Copysign(1, d[ll]) + shift/d[ll])
			g := e[ll]
			for i := ll; i < m; i++ {
				cosr, sinr, r := impl.Dlartg(f, g)
				if i > ll {
					e[i-1] = r
				}
				f = cosr*d[i] + sinr*e[i]
				e[i] = cosr*e[i] - sinr*d[i]
				g = sinr * d[i+1]
				d[i+1] *= cosr
				cosl, sinl, r := impl.Dlartg(f, g)
				d[i] = r
				f = cosl*e[i] + sinl*d[i+1]
				d[i+1] = cosl*d[i+1] - sinl*e[i]
				if i < m-1 {
					g = sinl * e[i+1]
					e[i+1] *= cosl
				}
				k := i - ll
				cv[2*k], cv[2*k+1] = cosr, sinr
				cu[2*k], cu[2*k+1] = cosl, sinl
			}
			e[m-1] = f
			vlog.add(ll, false, cv)
			ulog.add(ll, false, cu)
			if math.Abs(e[m-1]) <= thresh {
				e[m-1] = 0
			}
		default:
			// Shifted QR sweep, bottom to top.
			f := (math.Abs(d[m]) - shift) * (math.Copysign(1, d[m]) + shift/d[m])
			g := e[m-1]
			for i := m; i > ll; i-- {
				cosr, sinr, r := impl.Dlartg(f, g)
				if i < m {
					e[i] = r
				}
				f = cosr*d[i] + sinr*e[i-1]
				e[i-1] = cosr*e[i-1] - sinr*d[i]
				g = sinr * d[i-1]
				d[i-1] *= cosr
				cosl, sinl, r := impl.Dlartg(f, g)
				d[i] = r
				f = cosl*e[i-1] + sinl*d[i-1]
				d[i-1] = cosl*d[i-1] - sinl*e[i-1]
				if i > ll+1 {
					g = sinl * e[i-2]
					e[i-2] *= cosl
				}
				k := i - 1 - ll
				cu[2*k], cu[2*k+1] = cosr, -sinr
				cv[2*k], cv[2*k+1] = cosl, -sinl
			}
			e[ll] = f
			vlog.add(ll, true, cv)
			ulog.add(ll, true, cu)
			if math.Abs(e[ll]) <= thresh {
				e[ll] = 0
			}
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	vp.toRowMajor(vt, ldvt)
	up.toRowMajor(ut, ldut)

	// Make the singular values non-negative (negating the rows of vt) and
	// sort them descending (permuting the rows of vt and ut alike).
	for i := 0; i < n; i++ {
		if d[i] < 0 {
			d[i] = -d[i]
			row := vt[i*ldvt : i*ldvt+n]
			for j := range row {
				row[j] = -row[j]
			}
		}
	}
	for i := 0; i < n-1; i++ {
		big := i
		for j := i + 1; j < n; j++ {
			if d[j] > d[big] {
				big = j
			}
		}
		if big != i {
			d[i], d[big] = d[big], d[i]
			swapRows(vt, ldvt, n, i, big)
			swapRows(ut, ldut, n, i, big)
		}
	}
	return nil
}

// swapRows exchanges rows i and j (each of w entries) of x.
func swapRows(x []float64, ldx, w, i, j int) {
	a := x[i*ldx : i*ldx+w]
	b := x[j*ldx : j*ldx+w]
	for k := range a {
		a[k], b[k] = b[k], a[k]
	}
}
