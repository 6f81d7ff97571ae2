// Package accel provides fast dense linear algebra for gopeft in pure Go
// plus Go assembly, with no cgo: general matrix products (GEMM) for float64
// and float32, and singular value decompositions built on them.
//
// # GEMM
//
// [Dgemm] and [Sgemm] compute
//
//	C = alpha·op(A)·op(B) + beta·C
//
// for row-major matrices with row strides (leading dimensions), where op(X)
// is X or Xᵀ. op(A) is m×k, op(B) is k×n and C is m×n. On amd64 the inner
// loops are AVX-512 or AVX2/FMA microkernels chosen at run time from the CPU
// features (golang.org/x/sys/cpu); every other platform, and builds with the
// purego tag, use the pure-Go twin (gemmGeneric). Both share one driver that
// blocks the product for the caches, packs panels of A and B so that the
// microkernel always sees one layout whatever the transposes and strides,
// and splits large products across goroutines ([SetThreads]).
//
// # gonum
//
// [Implementation] is a gonum blas.Float64 whose Dgemm and Dgemv (the
// matrix-vector product behind half the work of gonum's bidiagonal and
// tridiagonal reductions) use accel; everything else is gonum's own BLAS.
// [Use] installs it with blas64.Use, after which mat.Dense.Mul and gonum's
// QR, eigen and SVD factorizations run on accel.
//
// # Threads
//
// Products of at least 96³ multiply-adds may run on up to [Threads]
// goroutines (default runtime.GOMAXPROCS, see [SetThreads]). How many is
// decided per product by a cost model (gemmGrid): C is cut into a grid of
// blocks whose shape follows C's (4096×16 by rows, 16×4096 by columns,
// 4096² on 16 workers 4×4), each worker packing its own panels, and a
// split must pay for the ~100 µs a parked helper takes to start, so small
// products stay on one goroutine and a skinny, memory-bound one uses few
// (at most max(2, I/4) for I multiply-adds per element moved). The helpers
// are persistent goroutines: a product creates none. A product that starts
// while another is running in parallel stays on its caller's goroutine, so
// callers that are already parallel do not oversubscribe the cores. The
// arithmetic of why this scales is in accel/README.md (Parallel GEMM).
//
// # Errors
//
// Bad arguments (negative sizes, a leading dimension smaller than a row,
// a slice too short for the matrix it holds) are programmer errors: the
// routines panic with an [ArgError] naming the routine, the argument and the
// values. NaN and Inf in the data propagate as IEEE 754 arithmetic says,
// except that, as in reference BLAS, beta == 0 overwrites C without reading
// it (NaN in C does not survive) and alpha == 0 leaves A and B unread.
package accel
