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
// Products of at least 96³ multiply-adds run on up to [Threads] goroutines
// (default runtime.GOMAXPROCS, see [SetThreads]). A product that starts while
// another is running in parallel stays on its caller's goroutine, so callers
// that are already parallel do not oversubscribe the cores.
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
