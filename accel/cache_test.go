package accel

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// cacheConfigs are plausible cache configurations (L1d 32 or 48 KiB, L2 1
// or 2 MiB, L3 1.5 or 4 MiB per core) whose blockings every test and the
// sweep benchmark run, plus this machine's.
func cacheConfigs() []cacheInfo {
	var cfgs []cacheInfo
	for _, l1 := range []int{32 << 10, 48 << 10} {
		for _, l2 := range []int{1 << 20, 2 << 20} {
			for _, l3 := range []int{3 << 19, 4 << 20} {
				cfgs = append(cfgs, cacheInfo{L1d: l1, L2: l2, L3: l3,
					Source: fmt.Sprintf("L1d=%dK,L2=%dK,L3=%dK", l1>>10, l2>>10, l3>>10)})
			}
		}
	}
	return append(cfgs, cacheInfo{L1d: caches.L1d, L2: caches.L2, L3: caches.L3, Source: "detected"})
}

func TestDetectCaches(t *testing.T) {
	t.Logf("detected: %+v", caches)
	if caches.L1d < 4<<10 || caches.L2 < caches.L1d || caches.L3 < 0 {
		t.Fatalf("implausible caches %+v", caches)
	}
	cp, cpOK := cpuidCaches()
	sf, sfOK := sysfsCaches()
	t.Logf("cpuid: %+v (%t); sysfs: %+v (%t)", cp, cpOK, sf, sfOK)
	if cpOK && sfOK && (cp.L1d != sf.L1d || cp.L2 != sf.L2) {
		t.Errorf("cpuid and sysfs disagree on L1d/L2: %+v against %+v", cp, sf)
	}
}

func TestSysfsCaches(t *testing.T) {
	dir := t.TempDir()
	write := func(idx int, level, typ, size, shared string) {
		d := filepath.Join(dir, fmt.Sprintf("index%d", idx))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]string{"level": level, "type": typ, "size": size, "shared_cpu_list": shared} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, "1", "Data", "48K", "0,8")
	write(1, "1", "Instruction", "32K", "0,8")
	write(2, "2", "Unified", "2048K", "0,8")
	write(3, "3", "Unified", "32M", "0-7,16-23")
	setDuringTest(t, &sysfsCacheDir, dir)
	got, ok := sysfsCaches()
	want := cacheInfo{L1d: 48 << 10, L2: 2 << 20, L3: 2 << 20}
	if !ok || got != want {
		t.Fatalf("sysfsCaches() = %+v, %t; want %+v", got, ok, want)
	}
	setDuringTest(t, &sysfsCacheDir, filepath.Join(dir, "missing"))
	if got, ok := sysfsCaches(); ok {
		t.Fatalf("sysfsCaches() with no directory = %+v, want !ok", got)
	}
	for s, want := range map[string]int{"32K": 32 << 10, "1024K": 1 << 20, "32M": 32 << 20, "512": 512, "x": 0, "": 0} {
		if got := parseCacheSize(s); got != want {
			t.Errorf("parseCacheSize(%q) = %d, want %d", s, got, want)
		}
	}
	for s, want := range map[string]int{"0": 1, "0-1": 2, "0-7,16-23": 16, "0,8": 2, "3-1": 0, "": 0} {
		if got := countCPUList(s); got != want {
			t.Errorf("countCPUList(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestParseCPUIDCache(t *testing.T) {
	// An L2 of 16 ways, 1 partition, 64-byte lines, 1024 sets (1 MiB)
	// shared by 2 logical CPUs: type 3, level 2.
	eax := uint32(3 | 2<<5 | 1<<14)
	ebx := uint32(15<<22 | 0<<12 | 63)
	l, ok := parseCPUIDCache(eax, ebx, 1023)
	if want := (cacheLevel{level: 2, data: true, size: 1 << 20, shared: 2}); !ok || l != want {
		t.Fatalf("parseCPUIDCache = %+v, %t; want %+v", l, ok, want)
	}
	if _, ok := parseCPUIDCache(0, ebx, 1023); ok {
		t.Fatal("type 0 must end the list")
	}
	ci, _ := cachesFromLevels([]cacheLevel{{1, true, 32 << 10, 2}, {1, false, 32 << 10, 2}, {2, true, 1 << 20, 2}, {3, true, 32 << 20, 16}})
	if want := (cacheInfo{L1d: 32 << 10, L2: 1 << 20, L3: 2 << 20}); ci != want {
		t.Fatalf("cachesFromLevels = %+v, want %+v", ci, want)
	}
}

func TestGemmBlocking(t *testing.T) {
	for _, tc := range []struct {
		ci           cacheInfo
		mr, nr, size int
		kc, mc, nc   int
	}{
		// The doc comment's example: AVX-512 float64, mc = 126, kc =
		// 2^20/(2·30·8) = 2184 → 2048, nc = 2^24/(2·2048·8) = 512 → the floor 2048.
		{cacheInfo{L1d: 32 << 10, L2: 1 << 20, L3: 16 << 20}, 14, 16, 8, 2048, 126, 2048},
		// 2 MiB of L3 per core: the A block (126×kc) in half of it, kc =
		// 2^21/(2·126·8) = 1040.
		{cacheInfo{L1d: 32 << 10, L2: 1 << 20, L3: 2 << 20}, 14, 16, 8, 1040, 126, 2048},
		// 1.5 MiB of L3: kc = 1572864/2016 = 780 → 768.
		{cacheInfo{L1d: 48 << 10, L2: 2 << 20, L3: 3 << 19}, 14, 16, 8, 768, 126, 2048},
		// AVX-512 float32: kc = 2^20/(2·46·4) = 2849 → 2048, nc = 2^22/(2·2048·4) = 256 → 2048.
		{cacheInfo{L1d: 32 << 10, L2: 1 << 20, L3: 4 << 20}, 14, 32, 4, 2048, 126, 2048},
		// A 512 KiB L2: the micro-panels bound kc = 2^19/(2·30·8) = 1092 → 1088.
		{cacheInfo{L1d: 32 << 10, L2: 512 << 10, L3: 16 << 20}, 14, 16, 8, 1088, 126, 2048},
		// 64 MiB of L3 per core: nc = 2^26/(2·2048·8) = 2048, and with
		// 128 MiB the cap, 4096.
		{cacheInfo{L1d: 32 << 10, L2: 1 << 20, L3: 128 << 20}, 14, 16, 8, 2048, 126, 4096},
		// AVX2 float64 without an L3: the A block in half of L2, kc =
		// 2^20/(2·126·8) = 520 → 512; nc = 4096.
		{cacheInfo{L1d: 32 << 10, L2: 1 << 20}, 6, 8, 8, 512, 126, 4096},
		// Tiny caches: the lower bounds (kc 256, nc 2048).
		{cacheInfo{L1d: 4 << 10, L2: 64 << 10, L3: 64 << 10}, 14, 16, 8, 256, 126, 2048},
	} {
		kc, mc, nc := gemmBlocking(tc.ci, tc.mr, tc.nr, tc.size)
		if kc != tc.kc || mc != tc.mc || nc != tc.nc {
			t.Errorf("gemmBlocking(%+v, %d×%d, %d bytes) = %d, %d, %d; want %d, %d, %d",
				tc.ci, tc.mr, tc.nr, tc.size, kc, mc, nc, tc.kc, tc.mc, tc.nc)
		}
	}
}

// TestGemmCacheConfigs checks every path against the reference under the
// blocking of every configuration of cacheConfigs, with products that cross
// that blocking's kc, mc and nc.
func TestGemmCacheConfigs(t *testing.T) {
	dsets, ssets := gemmKernelSets()
	rng := rand.New(rand.NewPCG(21, 22))
	cases := func(mr, nr, kc, mc, nc int) []gemmCase {
		var cs []gemmCase
		for tr := 0; tr < 4; tr++ {
			ab := alphaBetas[tr]
			cs = append(cs,
				gemmCase{tA: tr&1 != 0, tB: tr&2 != 0, m: 2*mc + mr + 1, n: 3*nr + 5, k: kc + 9, alpha: ab[0], beta: ab[1], extra: [3]int{1, 0, 2}},
				gemmCase{tA: tr&1 != 0, tB: tr&2 != 0, m: 3*mr + 1, n: nc + nr + 3, k: 33, alpha: ab[0], beta: ab[1], extra: [3]int{0, 1, 1}})
		}
		return cs
	}
	prev := SetThreads(1)
	defer SetThreads(prev)
	for _, ks := range dsets {
		seen := map[[3]int]bool{}
		for _, ci := range cacheConfigs() {
			cfg := withBlocking(*ks, ci)
			if key := [3]int{cfg.kc, cfg.mc, cfg.nc}; seen[key] {
				continue
			} else {
				seen[key] = true
			}
			t.Run(fmt.Sprintf("d/%s/%s/kc=%d,mc=%d,nc=%d", ks.name, ci.Source, cfg.kc, cfg.mc, cfg.nc), func(t *testing.T) {
				for _, tc := range cases(cfg.mr, cfg.nr, cfg.kc, cfg.mc, cfg.nc) {
					runGemmCase(t, rng, tc, func(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
						gemmBlocked(&cfg, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
					})
				}
			})
		}
	}
	for _, ks := range ssets {
		seen := map[[3]int]bool{}
		for _, ci := range cacheConfigs() {
			cfg := withBlocking(*ks, ci)
			if key := [3]int{cfg.kc, cfg.mc, cfg.nc}; seen[key] {
				continue
			} else {
				seen[key] = true
			}
			t.Run(fmt.Sprintf("s/%s/%s/kc=%d,mc=%d,nc=%d", ks.name, ci.Source, cfg.kc, cfg.mc, cfg.nc), func(t *testing.T) {
				for _, tc := range cases(cfg.mr, cfg.nr, cfg.kc, cfg.mc, cfg.nc) {
					runGemmCase(t, rng, tc, func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
						gemmBlocked(&cfg, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
					})
				}
			})
		}
	}
}

// TestGemmBlockRows checks the row blocks: equal up to whole panels, no
// sliver, and never fewer rows in all than m.
func TestGemmBlockRows(t *testing.T) {
	for _, tc := range []struct{ m, mc, mr, want int }{
		{256, 126, 14, 140},  // 140 + 116, not 126 + 126 + 4
		{128, 126, 14, 128},  // one block
		{1024, 126, 14, 140}, // 7 × 140 + 44, not 8 × 126 + 16
		{4096, 126, 14, 126}, // 33 blocks: 4096/33 = 124.1 → 126
		{188, 126, 14, 188},  // below 1.5·mc: one block
		{189, 126, 14, 98},   // 98 + 91
		{5, 126, 14, 5},
	} {
		h := gemmBlockRows(tc.m, tc.mc, tc.mr)
		if h != tc.want {
			t.Errorf("gemmBlockRows(%d, %d, %d) = %d, want %d", tc.m, tc.mc, tc.mr, h, tc.want)
		}
		if last := tc.m - (tc.m-1)/h*h; h < tc.m && last < min(h, tc.mc)/4 {
			t.Errorf("m = %d: last block of %d rows after blocks of %d", tc.m, last, h)
		}
	}
}
