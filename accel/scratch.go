package accel

import "sync"

// scratch is accel's one pool of scratch buffers: the GEMM's packing buffers
// (a few MiB per goroutine of a product) and the SVD's vectors (labrd's
// matrix-vector products, 2048 calls for a 1024² bidiagonalization, would
// otherwise allocate ~50 MB). Buffers stay on free lists, one per element
// type, rather than in a sync.Pool, which drops them at every garbage
// collection; a list holds at most maxFreeScratch buffers, so what the pool
// keeps is bounded by what was in use at once.
var scratch struct {
	mu  sync.Mutex
	f64 []*[]float64
	f32 []*[]float32
}

const maxFreeScratch = 16

// scratchList returns the free list for element type T; scratch.mu must be
// held.
func scratchList[T float32 | float64]() *[]*[]T {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return any(&scratch.f32).(*[]*[]T)
	}
	return any(&scratch.f64).(*[]*[]T)
}

// getScratch returns a buffer of length n (contents undefined), to be given
// back with putScratch. It reuses the smallest free buffer that holds n
// elements and is not more than four times larger (a small request does
// not take a large buffer that a GEMM will want), or allocates one.
func getScratch[T float32 | float64](n int) *[]T {
	scratch.mu.Lock()
	list := scratchList[T]()
	best := -1
	for i, p := range *list {
		if c := cap(*p); c >= n && c/4 <= n && (best < 0 || c < cap(*(*list)[best])) {
			best = i
		}
	}
	if best >= 0 {
		p := (*list)[best]
		last := len(*list) - 1
		(*list)[best] = (*list)[last]
		(*list)[last] = nil
		*list = (*list)[:last]
		scratch.mu.Unlock()
		*p = (*p)[:n]
		return p
	}
	scratch.mu.Unlock()
	b := make([]T, n)
	return &b
}

// putScratch gives back a buffer from getScratch. When the free list is
// full, the smallest buffer (this one or a listed one) is dropped.
func putScratch[T float32 | float64](p *[]T) {
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	list := scratchList[T]()
	if len(*list) < maxFreeScratch {
		*list = append(*list, p)
		return
	}
	small := 0
	for i, q := range *list {
		if cap(*q) < cap(*(*list)[small]) {
			small = i
		}
	}
	if cap(*p) > cap(*(*list)[small]) {
		(*list)[small] = p
	}
}
