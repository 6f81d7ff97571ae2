package accel

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the GEMM driver shared by every path: cache blocking,
// packing and the split across goroutines. Only the microkernel, which
// multiplies one packed panel of A by one packed panel of B into a tile of C,
// differs between the assembly paths and the generic one.
//
// The blocking follows Goto and van de Geijn ("Anatomy of high-performance
// matrix multiplication", ACM TOMS 34(3), 2008):
//
//	for jc in steps of nc over the columns of C:
//		for pc in steps of kc over k:
//			pack op(B)[pc:pc+kc, jc:jc+nc] into panels nr columns wide   (L3/L2)
//			for ic in steps of mc over the rows of C:
//				pack op(A)[ic:ic+mc, pc:pc+kc] into panels ≤ mr rows high (L2)
//				for each B panel jr:                                      (L1)
//					for each A panel ir:
//						C[ir, jr] = alpha · Ap[ir] · Bp[jr] + β · C[ir, jr]
//
// where β is the caller's beta for the first depth block (pc = 0) and 1
// after, so C is never scaled in a separate pass and, when beta == 0, never
// read. Packing reads A and B through their transposes and strides once per
// block, so the kernel sees one layout: an A panel of height h stores op(A)
// column by column (h values per step of p), a B panel stores op(B) row by
// row (nr values per step of p), zero-padded at the right edge of B. Row
// panels of one block have balanced heights (16 rows become 8+8, not 14+2),
// and the kernels exist for every height up to mr, so only the right edge of
// C, when n is not a multiple of nr, goes through a scratch tile (or a
// half-width kernel).
//
// A panel that would serve only a couple of tiles is not packed: the kernels
// read A by rows or B by rows in place (see gemmSerial), which is what the
// tall-skinny and short-wide LoRA products need.
//
// Large products are split across goroutines in two dimensions, a grid of
// blocks of C whose shape follows the shape of C (gemmGrid); each worker
// packs its own panels.

// kernelSet is one microkernel with its blocking parameters.
type kernelSet[T float32 | float64] struct {
	name       string
	mr, nr     int // largest panel height, panel width
	kc, mc, nc int // cache block sizes: depth, rows of A, columns of B
	// tile computes C[0:h, 0:nr] = alpha·A·B + beta·C for A(i, p) =
	// a[i*rsa+p*csa] (h×kc, h ≤ mr, rsa == 1 or csa == 1) and B(p, j) =
	// b[p*sb+j] (kc×nr), kc ≥ 1; c holds at least (h-1)·ldc+nr. C is not
	// read when beta == 0.
	tile func(h, kc int, a []T, rsa, csa int, b []T, sb int, c []T, ldc int, alpha, beta T)
	// half, if not nil, is tile for C[0:h, 0:nr/2], used at the right edge
	// of C when at most nr/2 columns remain.
	half func(h, kc int, a []T, rsa, csa int, b []T, sb int, c []T, ldc int, alpha, beta T)
	// rate is the kernel's measured speed (madds), shared by copies of
	// the set.
	rate *kernelRate
}

// elemSize is the size in bytes of T.
func elemSize[T float32 | float64]() int {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return 4
	}
	return 8
}

// minParallelFlops is the size m·n·k below which products stay on one
// goroutine without further thought: smaller ones finish in well under
// 100 µs. Above it, gemmGrid decides.
const minParallelFlops = 96 * 96 * 96

// lastGemm is when the last product that could be split ended (an
// epochNs mark; 0: none yet).
var lastGemm atomic.Int64

// parallelBusy is set while a product is running on several goroutines; a
// product that starts meanwhile runs on its caller's goroutine alone.
var parallelBusy atomic.Bool

// gemmBlocked computes C = alpha·op(A)·op(B) + beta·C with kernel set ks,
// splitting large products across goroutines. Arguments are checked,
// m, n, k > 0 and alpha ≠ 0.
//
// A parallel product cuts C into a grid of pr×pc blocks (gemmGrid), rows in
// multiples of mr and columns in multiples of nr, and each worker runs the
// serial driver on its block with its own packing buffers: it packs its
// rows of op(A) and its columns of op(B) itself. Nothing is shared while
// the workers run (no barrier, no shared counter), so a worker that the OS
// deschedules delays only its own block, and one that has not started when
// the caller is done with its own is taken over by the caller.
func gemmBlocked[T float32 | float64](ks *kernelSet[T], tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if nt := Threads(); nt > 1 && m*n*k >= minParallelFlops {
		// In a sequence of products the helpers stay hot once a first
		// product has woken them: decide as if hot when the last product
		// that could split ended moments ago, paying the wake-up once.
		hot := poolHot() || sinceMark(lastGemm.Load()) < teamSpin/2
		defer func() { lastGemm.Store(epochNs()) }()
		rate := ks.madds()
		pr, pc := gemmGrid(nt, ks.mr, ks.nr, m, n, k, elemSize[T](), rate, hot)
		if w := pr * pc; w > 1 && parallelBusy.CompareAndSwap(false, true) {
			defer parallelBusy.Store(false)
			rowTiles, colTiles := (m+ks.mr-1)/ks.mr, (n+ks.nr-1)/ks.nr
			// A short product gives each worker its block as two tasks,
			// halves of the block along its longer side: a helper that
			// starts late or runs slow (a woken vCPU can run at half speed
			// for milliseconds) then leaves its second half to the caller,
			// rather than making the caller wait for all of it.
			halve := gemmHalve(pr, pc, rowTiles, colTiles, ks.mr, ks.nr, m, n, k, rate)
			tasks := w
			if halve != 0 {
				tasks = 2 * w
			}
			parallelOn(w, tasks, nil, func(t int) {
				r, q, rows, cols := t/pc, t%pc, pr, pc
				if halve != 0 {
					r, q = t/2/pc, t/2%pc // the block of worker t/2
					if halve == 'r' {
						r, rows = 2*r+t%2, 2*pr
					} else {
						q, cols = 2*q+t%2, 2*pc
					}
				}
				// Block (r, q) of a rows×cols grid: tiles [r·rowTiles/rows,
				// (r+1)·rowTiles/rows) of the rows and likewise of the
				// columns, so the blocks differ by at most one tile each way
				// (and the halves of a block tile it exactly).
				i0, i1 := r*rowTiles/rows*ks.mr, min(m, (r+1)*rowTiles/rows*ks.mr)
				j0, j1 := q*colTiles/cols*ks.nr, min(n, (q+1)*colTiles/cols*ks.nr)
				offA := i0 * lda // first row of op(A): a row of A, or a column when tA
				if tA {
					offA = i0
				}
				offB := j0 // first column of op(B): a column of B, or a row when tB
				if tB {
					offB = j0 * ldb
				}
				gemmSerial(ks, tA, tB, i1-i0, j1-j0, k, alpha, a[offA:], lda, b[offB:], ldb, beta, c[i0*ldc+j0:], ldc)
			})
			return
		}
	}
	if m*n*k < minParallelFlops {
		gemmSerial(ks, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	t0 := time.Now()
	gemmSerial(ks, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	ks.observe(float64(m) * float64(n) * float64(k) / float64(max(time.Since(t0), 1)))
}

// Costs of the parallel split, as times. The product itself is timed by
// the kernel set's measured speed (kernelSet.madds), so the model holds on
// cores with one AVX-512 multiply-add pipe (Zen 4: 8 float64 multiply-adds
// per cycle) and with two (Intel server cores: 16) alike.
const (
	// gemmPackNsPerByte is the time to pack, or stream from memory, one
	// byte of A or B: 0.5 ns per float64 element. The development machine
	// packs a 1024² float64 A at 0.43 ns per element from L3 and B at
	// 1.1 ns from memory.
	gemmPackNsPerByte = 1.0 / 16
	// gemmWakeNs is what waking parked helpers costs a product: on the
	// 2-vCPU development VM a helper starts 80–125 µs after the step is
	// posted (a futex wake-up and a halted vCPU's restart;
	// BenchmarkWorkerWake measures it), and then the two vCPUs often run
	// slow for a millisecond or more (their cores' caches and clocks are
	// cold, or the host runs them on one core for a while): a split product
	// that starts after 5 ms of idleness took 0.2–1.7 ms longer than half
	// its serial time. 1 ms is the middle of that: float64 384³ (2.2 ms)
	// split after 5 ms idle runs at 0.87 of one goroutine, while the LoRA
	// shapes (2–5 ms) split at 1.33–1.95 (BenchmarkGemmSequence "alone",
	// BenchmarkGemmThreads); with 2 ms they ran at 1.00 and 0.98–1.01. It
	// is paid once per product, the helpers waking side by side, and once
	// per sequence of products (gemmBlocked).
	gemmWakeNs = 1e6
	// gemmWorkerNs is the caller's cost of each helper: posting the step
	// and joining it.
	gemmWorkerNs = 5e3
	// gemmBandwidthIntensity: a product doing fewer than this many
	// multiply-adds per element of A, B and C per worker is bound by memory
	// bandwidth (see gemmGrid).
	gemmBandwidthIntensity = 4
)

// gemmGrid chooses how a product of op(A) m×k by op(B) k×n on elements of
// size bytes is cut into pr×pc blocks of C, one per worker, for at most nt
// workers, a kernel mr×nr running at rate multiply-adds per nanosecond. A
// worker's time is modelled as
//
//	mb·nb·k/rate + gemmPackNsPerByte·size·(mb + nb)·k
//
// for a block of mb×nb (whole tiles, the largest block), the product plus
// the packing (or streaming) of its rows of op(A) and columns of op(B); a
// split adds gemmWakeNs once (not when hot: the helpers ended a step
// moments ago and still spin, see poolHot) and gemmWorkerNs per helper.
// gemmGrid returns the grid of least time, fewest workers on ties:
// pr ≤ the row tiles, pc ≤ the column tiles, and pr·pc ≤ nt. For a given
// number of workers w the packing term is least when mb ≈ nb, so the grid
// follows the shape of C (1024×1024 on 4 workers: 2×2; 4096×16: w×1;
// 16×4096: 1×w). The wake-up keeps short products on one goroutine, where
// a second worker would start when the first is nearly done: at the
// development machine's 29 float64 multiply-adds per ns, float64 320³
// (1.1 ms) stays serial when it runs alone and splits in a sequence of
// products (hot); 512³ (4.6 ms) splits.
//
// Products with little reuse are bound by memory bandwidth, not by the
// cores: with intensity I = m·n·k / (m·k + k·n + m·n) multiply-adds per
// element, a core at full speed (16 multiply-adds per cycle) would read
// 128/I bytes per cycle, 24 GB/s at 3 GHz for the LoRA shapes' I ≈ 16, and
// a socket's memory feeds only a few such cores. So the workers are also
// capped at max(2, I/gemmBandwidthIntensity): 3 for 4096×1024·1024×16 or
// 16×1024·1024×4096, 85 for 1024³.
func gemmGrid(nt, mr, nr, m, n, k, size int, rate float64, hot bool) (pr, pc int) {
	rowTiles, colTiles := (m+mr-1)/mr, (n+nr-1)/nr
	intensity := float64(m) * float64(n) * float64(k) / (float64(m)*float64(k) + float64(k)*float64(n) + float64(m)*float64(n))
	nt = min(nt, max(2, int(intensity/gemmBandwidthIntensity)), rowTiles*colTiles)
	cost := func(pr, pc int) float64 {
		mb := min(float64((rowTiles+pr-1)/pr*mr), float64(m))
		nb := min(float64((colTiles+pc-1)/pc*nr), float64(n))
		c := mb*nb*float64(k)/rate + gemmPackNsPerByte*float64(size)*(mb+nb)*float64(k)
		if w := pr * pc; w > 1 {
			c += gemmWorkerNs * float64(w-1)
			if !hot {
				c += gemmWakeNs
			}
		}
		return c
	}
	pr, pc = 1, 1
	best := cost(1, 1)
	for r := 1; r <= min(nt, rowTiles); r++ {
		for q := 1; q <= min(nt/r, colTiles); q++ {
			if c := cost(r, q); c < best {
				pr, pc, best = r, q, c
			}
		}
	}
	return pr, pc
}

// gemmShortNs is the time per worker below which gemmBlocked gives each
// worker its block as two tasks (gemmHalve): the extra packing (each half
// packs its own panels) is small next to a slow helper's cost.
const gemmShortNs = 2e6

// gemmHalve reports how gemmBlocked halves the blocks of a pr×pc grid into
// two tasks each: 'r' by rows, 'c' by columns (along the longer side of the
// largest block), or 0 not at all, when a worker's block takes longer than
// gemmShortNs at rate multiply-adds per ns or has a single tile each way.
func gemmHalve(pr, pc, rowTiles, colTiles, mr, nr, m, n, k int, rate float64) byte {
	tr, tc := (rowTiles+pr-1)/pr, (colTiles+pc-1)/pc // tiles of the largest block
	mb, nb := min(tr*mr, m), min(tc*nr, n)
	if float64(mb)*float64(nb)*float64(k)/rate > gemmShortNs {
		return 0
	}
	switch {
	case mb >= nb && rowTiles >= 2*pr:
		return 'r'
	case colTiles >= 2*pc:
		return 'c'
	case rowTiles >= 2*pr:
		return 'r'
	}
	return 0
}

// kernelRate is a kernel set's speed, measured the first time a product
// could be split and raised by what serial products then achieve
// (kernelSet.madds).
type kernelRate struct {
	once sync.Once
	bits atomic.Uint64 // multiply-adds per nanosecond, a float64
}

// madds returns the kernel's speed in multiply-adds per nanosecond: at
// first use, the best of five runs of 8 calls of an mr×nr×128 tile on
// panels in L1 (about 50 µs in all); afterwards, the highest of that and
// of the speeds serial products have run at (observe), since a first
// measurement taken while the core is still clocking up reads low (half,
// once, on the development machine).
func (ks *kernelSet[T]) madds() float64 {
	ks.rate.once.Do(func() {
		const kc, calls = 128, 8
		a, b, c := make([]T, ks.mr*kc), make([]T, ks.nr*kc), make([]T, ks.mr*ks.nr)
		for i := range a {
			a[i] = T(i%7) - 3
		}
		for i := range b {
			b[i] = T(i%5) - 2
		}
		best := time.Duration(1<<63 - 1)
		for r := 0; r < 6; r++ { // the first run warms the caches
			t0 := time.Now()
			for i := 0; i < calls; i++ {
				ks.tile(ks.mr, kc, a, 1, ks.mr, b, ks.nr, c, ks.nr, 1, 0)
			}
			if d := time.Since(t0); r > 0 && d < best {
				best = d
			}
		}
		ks.observe(float64(ks.mr*ks.nr*kc*calls) / float64(max(best, 1)))
	})
	return math.Float64frombits(ks.rate.bits.Load())
}

// observe raises the kernel's recorded speed to r multiply-adds per ns if
// r is higher.
func (ks *kernelSet[T]) observe(r float64) {
	for {
		old := ks.rate.bits.Load()
		if r <= math.Float64frombits(old) || ks.rate.bits.CompareAndSwap(old, math.Float64bits(r)) {
			return
		}
	}
}

// gemmBuf holds one goroutine's packing buffers, three parts of one slice
// from the scratch pool (mem).
type gemmBuf[T float32 | float64] struct {
	ap, bp, tmp []T
	mem         *[]T
}

// getBuf takes packing buffers for kernel set ks from the scratch pool, for
// row blocks of mc rows, depth blocks of kc and n columns;
// putBuf gives them back.
func getBuf[T float32 | float64](ks *kernelSet[T], mc, n, kc int) gemmBuf[T] {
	// Each part starts on a 64-byte boundary (16 elements are at least 64 bytes).
	round := func(n int) int { return (n + 15) &^ 15 }
	na := round(mc * kc)
	nb := round(kc * ((min(ks.nc, n) + ks.nr - 1) / ks.nr * ks.nr))
	nt := ks.mr * ks.nr
	mem := getScratch[T](na + nb + nt)
	s := *mem
	return gemmBuf[T]{ap: s[:na:na], bp: s[na : na+nb : na+nb], tmp: s[na+nb:], mem: mem}
}

// gemmBlockRows is the height of the row blocks of an m-row product for a
// target of mc rows and panels of mr: m cut into round(m/mc) blocks (at
// least one) of equal height, rounded up to whole panels, so that every
// block but the last is made of full mr-row tiles.
func gemmBlockRows(m, mc, mr int) int {
	blocks := max(1, (m+mc/2)/mc)
	h := (m + blocks - 1) / blocks
	return min(m, (h+mr-1)/mr*mr)
}

func putBuf[T float32 | float64](buf *gemmBuf[T]) { putScratch(buf.mem) }

// smallDirectElems is the size (elements) up to which an operand is read in
// place rather than packed, and useSmallDirect turns the rule on; tests turn
// it off to cover the packing paths with small matrices too.
const smallDirectElems = 1 << 16

var useSmallDirect = true

// gemmSerial is gemmBlocked on the caller's goroutine alone, with packing
// buffers of its own from the scratch pool.
func gemmSerial[T float32 | float64](ks *kernelSet[T], tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	mr, nr := ks.mr, ks.nr
	// A packed panel of B serves every row tile of C; with only a couple of
	// them, the kernels read B in place (rows of B are contiguous unless tB).
	directB := !tB && m <= 2*mr
	kcMax := ks.kc
	if directB {
		// B read in place is scattered over many pages and lines: keep its
		// panel, and the packed A panels beside it, well inside L1.
		kcMax = min(ks.kc, 64)
	}
	// Blocks of equal depth: k = 2100 with kc = 2048 is two blocks of 1050,
	// not 2048 and 52, whose kernel calls would load and store C for little
	// work.
	kcMax = (k + (k+kcMax-1)/kcMax - 1) / ((k + kcMax - 1) / kcMax)
	// Likewise rows: m is cut into the nearest whole number of blocks of
	// about mc rows, so no block is a sliver (m = 256 with mc = 126 is
	// blocks of 140 and 116, not 126, 126 and 4, whose kernel calls would each
	// stream a whole B micro-panel from L3 for 4 rows). A block has fewer
	// than 1.5·mc + mr rows (gemmBlockRows).
	mcMax := gemmBlockRows(m, ks.mc, ks.mr)
	own := getBuf(ks, mcMax, n, kcMax)
	buf := &own
	defer putBuf(buf)
	// Small operands stay in cache, where reading them in place beats
	// packing them (1.3–1.8× faster at 64…256 on the development machine),
	// except when their rows are a multiple of 4 KiB apart, which puts the
	// rows a kernel reads in the same L1 set.
	size := elemSize[T]()
	if useSmallDirect && !tB && k*n <= smallDirectElems && ldb*size%4096 != 0 {
		directB = true
	}
	smallA := useSmallDirect && m*k <= smallDirectElems && lda*size%4096 != 0
	for jc := 0; jc < n; jc += ks.nc {
		nc := min(ks.nc, n-jc)
		// Likewise a packed panel of A serves every column tile of C: with a
		// couple of them, read A in place, by rows (R kernels) or, when tA,
		// by the contiguous columns of the stored Aᵀ.
		directA := nc <= 2*nr || smallA
		lastJ := (nc - 1) / nr * nr // first column of the last B panel
		for pc := 0; pc < k; pc += kcMax {
			kc := min(kcMax, k-pc)
			betaK := beta // the first block of k applies beta, later ones add
			if pc > 0 {
				betaK = 1
			}
			switch {
			case !directB:
				packB(buf.bp, tB, b, ldb, pc, jc, kc, nc, nr)
			case nc-lastJ < nr:
				// Only the partial panel at the right edge, which the
				// kernels cannot read in place, is packed.
				packB(buf.bp, tB, b, ldb, pc, jc+lastJ, kc, nc-lastJ, nr)
			}
			for ic := 0; ic < m; ic += mcMax {
				mc := min(mcMax, m-ic)
				// Balanced panel heights: tiles of ⌈mc/tiles⌉ or ⌊mc/tiles⌋ rows.
				tiles := (mc + mr - 1) / mr
				tall := mc % tiles // this many panels have hi rows, the rest hi-1
				hi := (mc + tiles - 1) / tiles
				if tall == 0 {
					tall = tiles
				}
				if !directA {
					packA(buf.ap, tA, a, lda, ic, pc, mc, kc, hi, tall)
				}
				for jr := 0; jr < nc; jr += nr {
					nj := min(nr, nc-jr)
					bp, sb := buf.bp[jr*kc:(jr+nr)*kc], nr
					if directB {
						if nj == nr {
							bp, sb = b[pc*ldb+jc+jr:], ldb
						} else {
							bp = buf.bp[:kc*nr]
						}
					}
					ir := 0
					for t := 0; t < tiles; t++ {
						h := hi
						if t >= tall {
							h = hi - 1
						}
						var ap []T
						var rsa, csa int
						switch {
						case !directA:
							ap, rsa, csa = buf.ap[ir*kc:(ir+h)*kc], 1, h
						case tA:
							ap, rsa, csa = a[pc*lda+ic+ir:], 1, lda
						default:
							ap, rsa, csa = a[(ic+ir)*lda+pc:], lda, 1
						}
						ci := (ic+ir)*ldc + jc + jr
						tile, w := ks.tile, nr
						if nj <= nr/2 && ks.half != nil {
							tile, w = ks.half, nr/2
						}
						if nj == w {
							tile(h, kc, ap, rsa, csa, bp, sb, c[ci:], ldc, alpha, betaK)
						} else {
							// Right edge: compute the tile into scratch, then the part inside C.
							tmp := buf.tmp[:h*w]
							tile(h, kc, ap, rsa, csa, bp, sb, tmp, w, alpha, 0)
							for i := 0; i < h; i++ {
								crow := c[ci+i*ldc : ci+i*ldc+nj]
								trow := tmp[i*w : i*w+nj]
								if betaK == 0 {
									copy(crow, trow)
									continue
								}
								for j, v := range trow {
									crow[j] = betaK*crow[j] + v
								}
							}
						}
						ir += h
					}
				}
			}
		}
	}
}

// packA packs op(A)[ic:ic+mc, pc:pc+kc] into ap as consecutive panels, the
// first tall of height hi and the rest of height hi-1. A panel of height h
// starting at row r0 of the block occupies ap[r0*kc : (r0+h)*kc] and holds
// op(A)[ic+r0+i, pc+p] at p*h+i.
func packA[T float32 | float64](ap []T, tA bool, a []T, lda, ic, pc, mc, kc, hi, tall int) {
	for r0, t := 0, 0; r0 < mc; t++ {
		h := hi
		if t >= tall {
			h = hi - 1
		}
		panel := ap[r0*kc : (r0+h)*kc]
		if tA {
			// op(A)[i, p] = a[p*lda+i]: done below, row by row of the stored Aᵀ.
		} else {
			// op(A)[i, p] = a[i*lda+p]: read four rows at a time, write four
			// adjacent values per step of p.
			i := 0
			for ; i+4 <= h; i += 4 {
				src := (ic+r0+i)*lda + pc
				packA4(panel[i:], a[src:], lda, kc, h)
			}
			for ; i < h; i++ {
				src := (ic+r0+i)*lda + pc
				for p, v := range a[src : src+kc] {
					panel[p*h+i] = v
				}
			}
		}
		r0 += h
	}
	if tA {
		// Walk the stored Aᵀ row by row (sequential reads) and deal each
		// row's mc values out to the panels, h at a time.
		for p := 0; p < kc; p++ {
			row := a[(pc+p)*lda+ic : (pc+p)*lda+ic+mc]
			for r0, t := 0, 0; r0 < mc; t++ {
				h := hi
				if t >= tall {
					h = hi - 1
				}
				copy(ap[r0*kc+p*h:r0*kc+p*h+h], row[r0:r0+h])
				r0 += h
			}
		}
	}
}

// packA4Generic packs four rows of A, lda apart in src, into a panel of
// height h: dst[p*h+i] = src[i*lda+p] for p < kc, i < 4. packA4 is the same,
// in assembly where there is one.
func packA4Generic[T float32 | float64](dst, src []T, lda, kc, h int) {
	x0 := src[:kc]
	x1 := src[lda : lda+kc][:len(x0)]
	x2 := src[2*lda : 2*lda+kc][:len(x0)]
	x3 := src[3*lda : 3*lda+kc][:len(x0)]
	for p := range x0 {
		d := dst[p*h : p*h+4 : p*h+4]
		d[0], d[1], d[2], d[3] = x0[p], x1[p], x2[p], x3[p]
	}
}

// packB packs op(B)[pc:pc+kc, jc:jc+nc] into bp as panels nr columns wide:
// panel jr/nr occupies bp[jr*kc : (jr+nr)*kc] and holds op(B)[pc+p, jc+jr+j]
// at p*nr+j, with zeros past column nc.
func packB[T float32 | float64](bp []T, tB bool, b []T, ldb, pc, jc, kc, nc, nr int) {
	if !tB {
		// op(B)[p, j] = b[p*ldb+j]: walk B row by row, four panels at a
		// time, and deal each row's 4·nr values out to them. The rows are
		// read in runs of 4·nr values, which the hardware prefetches;
		// dealing whole rows of nc values would write to nc/nr panels
		// kc·nr elements apart, at kc = 1024 128 KiB, all in one L1 set.
		// 1024² float64: 0.82–0.92 ns per element that way, 0.48–0.56 in
		// groups of four.
		full := nc / nr * nr // columns in full panels
		const group = 4
		for g := 0; g < full; g += group * nr {
			ge := min(full, g+group*nr)
			packBPanels(bp[g*kc:], b[pc*ldb+jc+g:], ldb, kc, nr, (ge-g)/nr)
		}
		if full < nc {
			// The partial panel at the right edge, zero-padded.
			for p := 0; p < kc; p++ {
				dst := bp[full*kc+p*nr : full*kc+(p+1)*nr]
				copy(dst, b[(pc+p)*ldb+jc+full:(pc+p)*ldb+jc+nc])
				clear(dst[nc-full:])
			}
		}
		return
	}
	for jr := 0; jr < nc; jr += nr {
		nj := min(nr, nc-jr)
		panel := bp[jr*kc : (jr+nr)*kc]
		// op(B)[p, j] = b[j*ldb+p]: read eight (then four) stored rows at a
		// time, write as many adjacent values per step of p.
		j := 0
		for ; j+8 <= nj; j += 8 {
			src := (jc+jr+j)*ldb + pc
			x0 := b[src : src+kc]
			x1 := b[src+ldb : src+ldb+kc][:len(x0)]
			x2 := b[src+2*ldb : src+2*ldb+kc][:len(x0)]
			x3 := b[src+3*ldb : src+3*ldb+kc][:len(x0)]
			x4 := b[src+4*ldb : src+4*ldb+kc][:len(x0)]
			x5 := b[src+5*ldb : src+5*ldb+kc][:len(x0)]
			x6 := b[src+6*ldb : src+6*ldb+kc][:len(x0)]
			x7 := b[src+7*ldb : src+7*ldb+kc][:len(x0)]
			for p := range x0 {
				d := panel[p*nr+j : p*nr+j+8 : p*nr+j+8]
				d[0], d[1], d[2], d[3] = x0[p], x1[p], x2[p], x3[p]
				d[4], d[5], d[6], d[7] = x4[p], x5[p], x6[p], x7[p]
			}
		}
		for ; j+4 <= nj; j += 4 {
			src := (jc+jr+j)*ldb + pc
			x0 := b[src : src+kc]
			x1 := b[src+ldb : src+ldb+kc]
			x2 := b[src+2*ldb : src+2*ldb+kc]
			x3 := b[src+3*ldb : src+3*ldb+kc]
			x1, x2, x3 = x1[:len(x0)], x2[:len(x0)], x3[:len(x0)]
			for p := range x0 {
				d := panel[p*nr+j : p*nr+j+4 : p*nr+j+4]
				d[0], d[1], d[2], d[3] = x0[p], x1[p], x2[p], x3[p]
			}
		}
		for ; j < nj; j++ {
			src := (jc+jr+j)*ldb + pc
			for p, v := range b[src : src+kc] {
				panel[p*nr+j] = v
			}
		}
		if nj < nr {
			for p := 0; p < kc; p++ {
				clear(panel[p*nr+nj : p*nr+nr])
			}
		}
	}
}

// packBPanelsGeneric copies kc rows of panels·nr values of B, ldb apart in
// src, into that many packed panels of B:
//
//	dst[q*kc*nr + p*nr + j] = src[p*ldb + q*nr + j]
//
// for p < kc, q < panels, j < nr. packBPanels is the same, in assembly
// where there is one.
func packBPanelsGeneric[T float32 | float64](dst, src []T, ldb, kc, nr, panels int) {
	for p := 0; p < kc; p++ {
		row := src[p*ldb : p*ldb+panels*nr]
		for q := 0; q < panels; q++ {
			copy(dst[q*kc*nr+p*nr:q*kc*nr+(p+1)*nr], row[q*nr:(q+1)*nr])
		}
	}
}

// gemmKernelGeneric is the pure-Go microkernel:
//
//	for i := 0; i < h; i++ {
//		for j := 0; j < nr; j++ {
//			var s T
//			for p := 0; p < kc; p++ {
//				s += a[i*rsa+p*csa] * b[p*sb+j]
//			}
//			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j] // C not read if beta == 0
//		}
//	}
//
// with nr = 4 and h ≤ 4. The assembly kernels compute the same with wider
// tiles (see gemm_kernels_amd64.go).
func gemmKernelGeneric[T float32 | float64](h, kc int, a []T, rsa, csa int, b []T, sb int, c []T, ldc int, alpha, beta T) {
	const nr = 4
	if h == 4 {
		var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 T
		for p := 0; p < kc; p++ {
			ia, ib := p*csa, p*sb
			a0, a1, a2, a3 := a[ia], a[ia+rsa], a[ia+2*rsa], a[ia+3*rsa]
			bp := b[ib : ib+nr : ib+nr]
			b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
			c00 += a0 * b0
			c01 += a0 * b1
			c02 += a0 * b2
			c03 += a0 * b3
			c10 += a1 * b0
			c11 += a1 * b1
			c12 += a1 * b2
			c13 += a1 * b3
			c20 += a2 * b0
			c21 += a2 * b1
			c22 += a2 * b2
			c23 += a2 * b3
			c30 += a3 * b0
			c31 += a3 * b1
			c32 += a3 * b2
			c33 += a3 * b3
		}
		addRow4(c[0*ldc:], alpha, beta, c00, c01, c02, c03)
		addRow4(c[1*ldc:], alpha, beta, c10, c11, c12, c13)
		addRow4(c[2*ldc:], alpha, beta, c20, c21, c22, c23)
		addRow4(c[3*ldc:], alpha, beta, c30, c31, c32, c33)
		return
	}
	for i := 0; i < h; i++ {
		var s0, s1, s2, s3 T
		for p := 0; p < kc; p++ {
			ai := a[i*rsa+p*csa]
			bp := b[p*sb : p*sb+nr : p*sb+nr]
			s0 += ai * bp[0]
			s1 += ai * bp[1]
			s2 += ai * bp[2]
			s3 += ai * bp[3]
		}
		addRow4(c[i*ldc:], alpha, beta, s0, s1, s2, s3)
	}
}

// addRow4 sets c[0:4] = alpha·s + beta·c[0:4], not reading c if beta == 0.
func addRow4[T float32 | float64](c []T, alpha, beta, s0, s1, s2, s3 T) {
	c = c[:4:4]
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*s0, alpha*s1, alpha*s2, alpha*s3
		return
	}
	c[0] = alpha*s0 + beta*c[0]
	c[1] = alpha*s1 + beta*c[1]
	c[2] = alpha*s2 + beta*c[2]
	c[3] = alpha*s3 + beta*c[3]
}
