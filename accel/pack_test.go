package accel

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPackBPanels checks packBPanels (assembly on amd64, with 64- and
// 128-byte panel rows) against the definition, element by element, and
// that it writes nothing past the panels.
func TestPackBPanels(t *testing.T) {
	testPackBPanels[float64](t, []int{8, 16, 6})
	testPackBPanels[float32](t, []int{16, 32, 6})
}

func testPackBPanels[T float32 | float64](t *testing.T, nrs []int) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, nr := range nrs {
		for _, kc := range []int{0, 1, 7, 64} {
			for _, panels := range []int{0, 1, 3, 4} {
				ldb := panels*nr + rng.IntN(5)
				name := fmt.Sprintf("%T/nr=%d/kc=%d/panels=%d/ldb=%d", T(0), nr, kc, panels, ldb)
				src := randSlice[T](rng, max(kc*ldb, 1))
				const canary = 12345
				dst := make([]T, panels*kc*nr+3)
				for i := range dst {
					dst[i] = canary
				}
				packBPanels(dst, src, ldb, kc, nr, panels)
				for q := 0; q < panels; q++ {
					for p := 0; p < kc; p++ {
						for j := 0; j < nr; j++ {
							if got, want := dst[q*kc*nr+p*nr+j], src[p*ldb+q*nr+j]; got != want {
								t.Fatalf("%s: panel %d row %d column %d = %v, want %v", name, q, p, j, got, want)
							}
						}
					}
				}
				for i := panels * kc * nr; i < len(dst); i++ {
					if dst[i] != canary {
						t.Fatalf("%s: wrote dst[%d] past the panels", name, i)
					}
				}
				// The generic twin agrees.
				ref := make([]T, len(dst))
				for i := range ref {
					ref[i] = canary
				}
				packBPanelsGeneric(ref, src, ldb, kc, nr, panels)
				for i := range ref {
					if ref[i] != dst[i] {
						t.Fatalf("%s: generic twin differs at %d: %v, %v", name, i, ref[i], dst[i])
					}
				}
			}
		}
	}
}

// TestPackA4 checks packA4 (assembly on amd64) against the definition and
// its generic twin, for every remainder of kc by the 4-step blocks, and that
// it writes only its four columns of the panel.
func TestPackA4(t *testing.T) {
	testPackA4[float64](t)
	testPackA4[float32](t)
}

func testPackA4[T float32 | float64](t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, kc := range []int{0, 1, 2, 3, 4, 5, 7, 8, 33, 256} {
		for _, h := range []int{4, 6, 11, 14} {
			lda := kc + rng.IntN(9)
			name := fmt.Sprintf("%T/kc=%d/h=%d/lda=%d", T(0), kc, h, lda)
			src := randSlice[T](rng, 4*lda+1)
			const canary = 12345
			for _, impl := range []struct {
				name string
				f    func(dst, src []T, lda, kc, h int)
			}{{"packA4", packA4[T]}, {"generic", packA4Generic[T]}} {
				dst := make([]T, kc*h+h)
				for i := range dst {
					dst[i] = canary
				}
				// Columns off…off+3 of the panel, as for rows 1–4 of a
				// panel taller than 4.
				off := min(1, h-4)
				impl.f(dst[off:], src, lda, kc, h)
				for p := 0; p < kc; p++ {
					for j := 0; j < h; j++ {
						got, want := dst[p*h+j], T(canary)
						if j >= off && j < off+4 {
							want = src[(j-off)*lda+p]
						}
						if got != want {
							t.Fatalf("%s %s: panel[%d][%d] = %v, want %v", impl.name, name, p, j, got, want)
						}
					}
				}
				for i := kc * h; i < len(dst); i++ {
					if dst[i] != canary {
						t.Fatalf("%s %s: wrote dst[%d] past the panel", impl.name, name, i)
					}
				}
			}
		}
	}
}
