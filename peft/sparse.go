package peft

import "fmt"

// This file holds the sparse support of a weight, the layout shared by the
// sparse-plus-low-rank methods (peft/dsee, peft/sltrain): a fixed support Ω
// of N entries in a (d×k) matrix, kept as N flat row-major indices,
// Ω[t] = i·k + j for the entry (i, j), strictly increasing (the layout of
// SLTrain's sparse_index), and the op that scatters N trained values onto Ω.

// CheckSupport returns an error unless omega is a support in a (d×k) matrix:
// at least one flat row-major index, each in [0, d·k), strictly increasing.
// The error names the offending entry Ω[t] and the shape (d×k).
func CheckSupport(omega []int, d, k int) error {
	if len(omega) == 0 {
		return fmt.Errorf("an empty support Ω")
	}
	for t, f := range omega {
		if f < 0 || f >= d*k {
			return fmt.Errorf("Ω[%d] = %d outside [0, d·k) = [0, %d) for W %s", t, f, d*k, ShapeOf(d, k))
		}
		if t > 0 && f <= omega[t-1] {
			return fmt.Errorf("Ω[%d] = %d after Ω[%d] = %d: want strictly increasing flat indices", t, f, t-1, omega[t-1])
		}
	}
	return nil
}

// Scatter returns S (rows×cols) with S[idx[t]] = values[t] and 0 elsewhere,
// for values (1×N), one row, and idx a support of N entries in (rows×cols)
// (flat row-major indices idx[t] = i·cols + j, strictly increasing, see
// CheckSupport; copied). The gradient of values is the upstream gradient
// gathered at idx: dvalues[t] += dS[idx[t]]. Its cost is O(rows·cols) for the
// zeros and O(N) for the rest. values of another shape panics with a
// ShapeError, an idx that is not a support with an ArgError.
func Scatter(values *Tensor, idx []int, rows, cols int) *Tensor {
	if r, c := values.Dims(); r != 1 || c != len(idx) {
		panic(ShapeError{Op: "Scatter", Got: "values " + ShapeOf(r, c), Want: fmt.Sprintf("values (1×%d), one per index of idx into %s", len(idx), ShapeOf(rows, cols))})
	}
	if err := CheckSupport(idx, rows, cols); err != nil {
		panic(ArgError{Op: "Scatter", Msg: "idx: " + err.Error()})
	}
	vd := vals(values.Value)
	out, od := newDense(rows, cols)
	for t, f := range idx {
		od[f] = vd[t]
	}
	idx = append([]int(nil), idx...)
	return newOp(out, func(o *Tensor) {
		dS, dV := gdata(o), gdata(values)
		for t, f := range idx {
			dV[t] += dS[f]
		}
	}, values)
}
