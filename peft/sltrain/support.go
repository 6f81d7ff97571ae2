package sltrain

import (
	"math/rand"
	"sort"
)

// This file holds the draw of S's fixed random support Ω. Ω is kept as N
// flat indices into the row-major (d×k) weight, Ω[t] = i·k + j for the entry
// (i, j), strictly increasing, as SLTrain's sparse_index (peft.CheckSupport).
// S is then the vector s (1×N) with S[Ω[t]] = s[t], turned into a (d×k)
// matrix inside the autograd graph by peft.Scatter: only the N values are
// parameters, so an optimizer cannot move anything off Ω.

// randomSupport returns n flat indices drawn uniformly without
// replacement from [0, d·k) by rng, increasing: Floyd's sampling, which
// draws n numbers and needs memory for n, not d·k.
func randomSupport(rng *rand.Rand, d, k, n int) []int {
	total := d * k
	chosen := make(map[int]bool, n)
	for j := total - n; j < total; j++ {
		t := rng.Intn(j + 1)
		if chosen[t] {
			t = j
		}
		chosen[t] = true
	}
	out := make([]int, 0, n)
	for f := range chosen {
		out = append(out, f)
	}
	sort.Ints(out)
	return out
}
