package snella

// Share is share, for the tests.
func Share(b int, scores []float64, caps []int) []int { return share(b, scores, caps) }
