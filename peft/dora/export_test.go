package dora

import "gonum.org/v1/gonum/mat"

// HoldNorm makes d's Forward use nrm (1×out) as ‖V‖_row, or compute it from
// A and B again if nrm is nil (see DoRA.heldNorm).
func HoldNorm(d *DoRA, nrm *mat.Dense) { d.heldNorm = nrm }
