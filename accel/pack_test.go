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
