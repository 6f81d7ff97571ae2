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
// measurement disagreed. The driver (gemmSerial) runs, for one block of
// depth kc, every B micro-panel (kc×nr) against every A micro-panel (mr×kc)
// of an A block (mc×kc), and the kernel loads and stores its C tile once
// per call:
//
//   - mc: gemmRowsTarget rows (126 for mr = 14), so that each B micro-panel,
//     brought into L2 once per A block, serves 9 kernel calls.
//   - kc: as deep as keeps a kernel call's two micro-panels, (mr+nr)·kc
//     elements, in half of L2, and the A block (mc×kc, read again for every
//     B micro-panel) in half the L3 share of one logical CPU (in half of L2
//     without an L3); a multiple of 16 within [256, 2048]. Deeper blocks
//     make fewer passes over C, which in a large product comes from memory
//     each time: on an AMD EPYC (Zen 4; 1 MiB L2, 16 MiB L3 share), float64
//     4096², one thread, interleaved medians of 9, kc = 512 ran at 44.6–47.7
//     GFLOP/s, 1024 at 46.8–50.2, 2048 at 48.7–50.3 (mc = 126); with C kept
//     in cache kc = 512 gained 3.5%. The A block then lives in L3, not L2:
//     mc = 42…70 rather than 126 lost 3–10%.
//   - nc: the B block (kc×nc, reused by every A block) fills half of the L3
//     share, nc = L3 / (2·kc·size), a multiple of nr, within [2048, 4096]
//     (4096 without an L3). The floor matters more than the fit: a B block
//     that spills from L3 is read from memory once per A block, at 2·mc
//     flops per 8 bytes (31 flop/byte, about 1.6 GB/s at 50 GFLOP/s), while
//     a narrow one makes A be packed again n/nc times. Float64 4096², one
//     thread, on the EPYC (interleaved medians of 3): nc = 512 ran at 52.8
//     GFLOP/s, 1024 at 52.8–53.9, 2048 at 54.9–55.1, 4096 at 55.2; 2048²
//     gained 0.5% from nc = 2048, 4096² on two threads 0.8%.
//
// For example, 32 KiB L1d, 1 MiB L2, 16 MiB of L3 per logical CPU and the
// AVX-512 float64 kernel (14×16, 8 bytes) give mc = 126, kc = 2^20/(2·30·8)
// = 2184 → 2048 (the A block, 2 MiB, fits in 8 MiB), nc = 2^24/(2·2048·8)
// = 512 → 2048. The driver splits k into blocks of equal depth ≤ kc.
func gemmBlocking(ci cacheInfo, mr, nr, size int) (kc, mc, nc int) {
	mc = max(1, gemmRowsTarget/mr) * mr
	kc = ci.L2 / (2 * (mr + nr) * size)
	home := ci.L2 // where the A block lives
	if ci.L3 > 0 {
		home = ci.L3
	}
	kc = min(kc, home/(2*mc*size))
	kc = min(2048, max(256, kc&^15))
	nc = 4096
	if ci.L3 > 0 {
		nc = min(4096, max(2048/nr*nr, ci.L3/(2*kc*size)/nr*nr))
	}
	return kc, mc, nc
}

// gemmRowsTarget is the height of an A block that gemmBlocking aims at.
const gemmRowsTarget = 128

// withBlocking returns ks with its cache blocks derived from ci.
func withBlocking[T float32 | float64](ks kernelSet[T], ci cacheInfo) kernelSet[T] {
	ks.kc, ks.mc, ks.nc = gemmBlocking(ci, ks.mr, ks.nr, elemSize[T]())
	if ks.rate == nil {
		ks.rate = new(kernelRate)
	}
	return ks
}
