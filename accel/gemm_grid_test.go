package accel

import "testing"

// TestGemmGrid checks the parallel split: skinny products use few workers
// along their long side, squares split both ways, small ones stay serial,
// and no grid has more blocks than tiles or workers.
func TestGemmGrid(t *testing.T) {
	for _, tc := range []struct {
		nt, m, n, k int
		pr, pc      int
	}{
		{2, 1024, 1024, 1024, 1, 2}, // 74 row tiles split 37·14 = 518 rows against 512 columns
		{4, 1024, 1024, 1024, 2, 2},
		{16, 4096, 4096, 4096, 4, 4},
		{16, 4096, 16, 1024, 3, 1}, // bandwidth-bound: I ≈ 15.7, 3 workers
		{16, 16, 4096, 1024, 1, 3},
		{2, 4096, 16, 1024, 2, 1},
		{2, 16, 4096, 1024, 1, 2},
		{16, 256, 1024, 1024, 1, 16}, // 256×64 blocks: 19 row tiles do not split evenly
		{2, 64, 64, 64, 1, 1},
		{8, 100, 100, 100, 1, 1},
		{3, 14, 16, 100000, 1, 1}, // one tile: nothing to split
		{2, 512, 512, 512, 1, 2},  // float64 n = 512: 4.6 ms, worth the 1 ms wake-up
		{2, 320, 320, 320, 1, 1},  // 1.1 ms: not
	} {
		pr, pc := gemmGrid(tc.nt, 14, 16, tc.m, tc.n, tc.k, 8, zen4Rate, false)
		if pr != tc.pr || pc != tc.pc {
			t.Errorf("gemmGrid(%d, 14×16, %d×%d·%d) = %d×%d, want %d×%d", tc.nt, tc.m, tc.k, tc.n, pr, pc, tc.pr, tc.pc)
		}
	}
	for nt := 1; nt <= 16; nt++ {
		for _, m := range []int{1, 13, 14, 15, 100, 1000} {
			for _, n := range []int{1, 16, 17, 100, 1000} {
				pr, pc := gemmGrid(nt, 14, 16, m, n, 500, 8, zen4Rate, false)
				if pr < 1 || pc < 1 || pr*pc > nt || pr > (m+13)/14 || pc > (n+15)/16 {
					t.Fatalf("gemmGrid(%d, 14×16, %d×500·%d) = %d×%d", nt, m, n, pr, pc)
				}
			}
		}
	}
}

// TestGemmGridFloat32: float32 multiply-adds take half the time, so the
// fixed costs weigh twice as much: n = 256 stays on one goroutine unless
// the helpers are hot, 1024² splits. With hot helpers, float64 256³ and
// float32 192³ split too.
func TestGemmGridFloat32(t *testing.T) {
	if pr, pc := gemmGrid(2, 14, 32, 256, 256, 256, 4, 2*zen4Rate, false); pr*pc != 1 {
		t.Errorf("gemmGrid(2, 14×32, 256³, float32) = %d×%d, want 1×1", pr, pc)
	}
	if pr, pc := gemmGrid(2, 14, 32, 1024, 1024, 1024, 4, 2*zen4Rate, false); pr*pc != 2 {
		t.Errorf("gemmGrid(2, 14×32, 1024³, float32) = %d×%d, want 2 workers", pr, pc)
	}
	// With the helpers still spinning from the last product, no wake-up to pay.
	if pr, pc := gemmGrid(2, 14, 32, 192, 192, 192, 4, 2*zen4Rate, true); pr*pc != 2 {
		t.Errorf("gemmGrid(2, 14×32, 192³, float32, hot) = %d×%d, want 2 workers", pr, pc)
	}
	if pr, pc := gemmGrid(2, 14, 16, 256, 256, 256, 8, zen4Rate, true); pr*pc != 2 {
		t.Errorf("gemmGrid(2, 14×16, 256³, float64, hot) = %d×%d, want 2 workers", pr, pc)
	}
}

// zen4Rate is the development machine's float64 kernel speed, 29
// multiply-adds per ns (8 per cycle at about 3.6 GHz).
const zen4Rate = 29

// TestKernelRate checks the measured kernel speed the parallel split is
// based on against the peak it cannot exceed: 32 float64 (64 float32)
// multiply-adds per cycle, the most any x86 core does, at 6 GHz.
func TestKernelRate(t *testing.T) {
	dsets, ssets := gemmKernelSets()
	for _, ks := range dsets {
		if r := ks.madds(); !(r > 0 && r < 32*6) {
			t.Errorf("%s float64 kernel: %.3g multiply-adds per ns", ks.name, r)
		}
	}
	for _, ks := range ssets {
		if r := ks.madds(); !(r > 0 && r < 64*6) {
			t.Errorf("%s float32 kernel: %.3g multiply-adds per ns", ks.name, r)
		}
	}
}
