package accel

import (
	"os"
	"strconv"
	"strings"
)

// This file finds the sizes of the data caches and derives the GEMM's
// cache blocking (kc, mc, nc) from them, so that the blocking follows the
// machine rather than the one it was tuned on.
//
// Sizes come from, in order: CPUID (leaf 4 on Intel, leaf 0x8000001D on
// AMD and Hygon, the same "deterministic cache parameters" layout; amd64
// without the purego tag, cache_amd64.s), then Linux's
// /sys/devices/system/cpu/cpu0/cache/index*/, then defaultCaches. A level
// that a source does not report is taken from the next one.

// cacheInfo describes the data caches as one GEMM worker sees them.
type cacheInfo struct {
	L1d    int    // level-1 data cache of one core, bytes
	L2     int    // level-2 cache of one core, bytes
	L3     int    // share of the level-3 cache per logical CPU sharing it, bytes (0: none)
	Source string // where the sizes came from: "cpuid", "sysfs", "default", or a test's name
}

// defaultCaches is used for the levels no source reports: a common server
// core (32 KiB L1d, 1 MiB L2, 2 MiB of L3 per core).
var defaultCaches = cacheInfo{L1d: 32 << 10, L2: 1 << 20, L3: 2 << 20, Source: "default"}

// caches are this machine's caches, read once.
var caches = detectCaches()

// detectCaches reads the cache sizes from CPUID, then sysfs, then the
// defaults, level by level.
func detectCaches() cacheInfo {
	ci := cacheInfo{}
	var sources []string
	for _, src := range []struct {
		name string
		read func() (cacheInfo, bool)
	}{{"cpuid", cpuidCaches}, {"sysfs", sysfsCaches}, {"default", func() (cacheInfo, bool) { return defaultCaches, true }}} {
		got, ok := src.read()
		if !ok {
			continue
		}
		used := false
		if ci.L1d <= 0 && got.L1d > 0 {
			ci.L1d, used = got.L1d, true
		}
		if ci.L2 <= 0 && got.L2 > 0 {
			ci.L2, used = got.L2, true
		}
		if ci.L3 <= 0 && got.L3 > 0 {
			ci.L3, used = got.L3, true
		}
		if used {
			sources = append(sources, src.name)
		}
		if ci.L1d > 0 && ci.L2 > 0 && ci.L3 > 0 {
			break
		}
	}
	ci.Source = strings.Join(sources, "+")
	return ci
}

// cacheLevel is one cache as CPUID leaf 4 or sysfs describes it.
type cacheLevel struct {
	level  int
	data   bool // holds data (a data or unified cache)
	size   int  // bytes
	shared int  // logical CPUs sharing it (≥ 1)
}

// cachesFromLevels keeps the data caches of levels 1–3, the L3 divided
// among the logical CPUs that share it.
func cachesFromLevels(levels []cacheLevel) (cacheInfo, bool) {
	var ci cacheInfo
	for _, l := range levels {
		if !l.data || l.size <= 0 {
			continue
		}
		switch l.level {
		case 1:
			ci.L1d = l.size
		case 2:
			ci.L2 = l.size
		case 3:
			ci.L3 = l.size / max(1, l.shared)
		}
	}
	return ci, ci.L1d > 0 || ci.L2 > 0 || ci.L3 > 0
}

// parseCPUIDCache decodes one sub-leaf of CPUID leaf 4 (or 0x8000001D):
// EAX[4:0] type (0 none, 1 data, 2 instruction, 3 unified), EAX[7:5]
// level, EAX[25:14] logical CPUs sharing it − 1; EBX[31:22] ways − 1,
// EBX[21:12] partitions − 1, EBX[11:0] line size − 1; ECX sets − 1. The size
// is ways·partitions·line·sets. ok is false for the end of the list.
func parseCPUIDCache(eax, ebx, ecx uint32) (l cacheLevel, ok bool) {
	typ := eax & 31
	if typ == 0 {
		return cacheLevel{}, false
	}
	ways := int(ebx>>22) + 1
	parts := int(ebx>>12&1023) + 1
	line := int(ebx&4095) + 1
	sets := int(ecx) + 1
	return cacheLevel{
		level:  int(eax >> 5 & 7),
		data:   typ == 1 || typ == 3,
		size:   ways * parts * line * sets,
		shared: int(eax>>14&4095) + 1,
	}, true
}

// sysfsCacheDir is where Linux describes cpu0's caches (a variable for
// tests).
var sysfsCacheDir = "/sys/devices/system/cpu/cpu0/cache"

// sysfsCaches reads index*/{level,type,size,shared_cpu_list} under
// sysfsCacheDir.
func sysfsCaches() (cacheInfo, bool) {
	var levels []cacheLevel
	for i := 0; i < 16; i++ {
		dir := sysfsCacheDir + "/index" + strconv.Itoa(i) + "/"
		read := func(name string) string {
			b, err := os.ReadFile(dir + name)
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(b))
		}
		levelStr := read("level")
		if levelStr == "" {
			break
		}
		level, _ := strconv.Atoi(levelStr)
		typ := read("type")
		levels = append(levels, cacheLevel{
			level:  level,
			data:   typ == "Data" || typ == "Unified",
			size:   parseCacheSize(read("size")),
			shared: max(1, countCPUList(read("shared_cpu_list"))),
		})
	}
	return cachesFromLevels(levels)
}

// parseCacheSize parses sysfs's "32K", "1024K", "32M" (0 if malformed).
func parseCacheSize(s string) int {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n * mult
}

// countCPUList counts the CPUs in a list such as "0-3,8,10-11" (0 if
// malformed).
func countCPUList(s string) int {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}

// gemmBlocking derives the cache blocks of a microkernel mr×nr on elements
// of size bytes from the caches ci, after the analytical model of Goto and
// van de Geijn (2008) and of Low et al. ("Analytical modeling is enough for
// high-performance BLIS", ACM TOMS 43(2), 2016), corrected where
// measurement disagreed:
//
//   - kc: twice what puts the B micro-panel (kc×nr) in L1d, kc =
//     2·L1d / (nr·size), a multiple of 16, within [128, 512]. Each kernel
//     call loads and stores its C tile once per depth block, so a deeper
//     kc makes fewer passes over C; the A and B micro-panels stream from
//     L2, the kernels prefetching them 8 steps ahead (and the C tile at
//     entry). Measured on an AMD EPYC (Zen 4, 32 KiB L1d), float64 1024²,
//     best of 3 interleaved rounds over several sweeps: 42–43 GFLOP/s with
//     kc = 128, 46–50 with kc = 256, 47–53 with kc = 512 (medians 50.4–51.0
//     at kc = 512); kc = 768–1024 gained nothing more.
//   - mc: the A block (mc×kc, reused by every B micro-panel) fills half of
//     L2, leaving the other half to the B micro-panels and C tiles passing
//     through: mc = L2 / (2·kc·size), a multiple of mr, within [mr, 32·mr].
//   - nc: the B block (kc×nc, reused by every A block) fills half of the L3
//     share of one logical CPU (each worker packs its own B block):
//     nc = L3 / (2·kc·size), a multiple of nr, within [1024, 4096] (4096
//     without an L3). The floor matters more than the fit: a B block that
//     spills from L3 is read from memory once per A block, at 2·mc flops
//     per 8 bytes (31 flop/byte for mc = 126, about 1.6 GB/s at 50
//     GFLOP/s), while a narrow one makes A be packed again n/nc times. With
//     the old floor of 8·nr, an L3 share of 1.5 MiB gave nc = 192 and the
//     cache sweep fell to 0.83 of the best configuration.
//
// For example, 32 KiB L1d, 1 MiB L2, 2 MiB of L3 per core and the AVX-512
// float64 kernel (14×16, 8 bytes) give kc = 65536/128 = 512, mc = 2^20/8192
// = 128 → 126, nc = 2^21/8192 = 256 → 1024.
func gemmBlocking(ci cacheInfo, mr, nr, size int) (kc, mc, nc int) {
	kc = min(512, max(128, 2*ci.L1d/(nr*size)&^15))
	mc = min(32*mr, max(mr, ci.L2/(2*kc*size)/mr*mr))
	nc = 4096
	if ci.L3 > 0 {
		nc = min(4096, max(1024/nr*nr, ci.L3/(2*kc*size)/nr*nr))
	}
	return kc, mc, nc
}

// withBlocking returns ks with its cache blocks derived from ci.
func withBlocking[T float32 | float64](ks kernelSet[T], ci cacheInfo) kernelSet[T] {
	ks.kc, ks.mc, ks.nc = gemmBlocking(ci, ks.mr, ks.nr, elemSize[T]())
	return ks
}
