package dylora

// SetTrainingRank sets the rank a uses while training, as the controller's
// draw does.
func SetTrainingRank(a *Layer, b int) { a.train = b }
