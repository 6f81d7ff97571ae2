//go:build !purego

package accel

// cpuid executes the CPUID instruction with EAX = eaxArg, ECX = ecxArg
// (cache_amd64.s).
//
//go:noescape
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// cpuidCaches reads the cache sizes from CPUID: leaf 4 on Intel, leaf
// 0x8000001D on AMD and Hygon (same layout, present when CPUID
// 0x80000001 ECX bit 22, TopologyExtensions, is set). ok is false when the
// CPU has neither.
func cpuidCaches() (cacheInfo, bool) {
	maxLeaf, b, c, d := cpuid(0, 0)
	vendor := string([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24),
		byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24),
		byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)})
	var leaf uint32
	switch vendor {
	case "GenuineIntel":
		if maxLeaf < 4 {
			return cacheInfo{}, false
		}
		leaf = 4
	case "AuthenticAMD", "HygonGenuine":
		maxExt, _, _, _ := cpuid(0x80000000, 0)
		if maxExt < 0x8000001D {
			return cacheInfo{}, false
		}
		if _, _, ecx, _ := cpuid(0x80000001, 0); ecx&(1<<22) == 0 {
			return cacheInfo{}, false
		}
		leaf = 0x8000001D
	default:
		return cacheInfo{}, false
	}
	var levels []cacheLevel
	for sub := uint32(0); sub < 16; sub++ {
		eax, ebx, ecx, _ := cpuid(leaf, sub)
		l, ok := parseCPUIDCache(eax, ebx, ecx)
		if !ok {
			break
		}
		levels = append(levels, l)
	}
	return cachesFromLevels(levels)
}
