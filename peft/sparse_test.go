package peft

import (
	"errors"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestScatterGradient checks Scatter's backward against central differences,
// on a support that leaves whole rows and columns empty and one that fills
// the matrix.
func TestScatterGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, c := range []struct {
		name       string
		rows, cols int
		idx        []int
	}{
		{"sparse", 4, 5, []int{0, 3, 7, 8, 19}},
		{"one", 3, 2, []int{4}},
		{"full", 2, 3, []int{0, 1, 2, 3, 4, 5}},
	} {
		v := randParam(rng, "v", 1, len(c.idx), -1, 1)
		t.Run(c.name, func(t *testing.T) {
			checkGrad(t, []*Tensor{v}, func() *Tensor { return Scatter(v, c.idx, c.rows, c.cols) }, 1e-5)
		})
	}
	// Through a product, as the sparse-plus-low-rank methods use it.
	x := randParam(rng, "x", 3, 5, -1, 1)
	v := randParam(rng, "v", 1, 4, -1, 1)
	checkGrad(t, []*Tensor{x, v}, func() *Tensor { return MatMulT(x, Scatter(v, []int{1, 6, 12, 18}, 4, 5)) }, 1e-5)
}

// TestScatterKnownAnswer checks Scatter's value on a hand-computed case, that
// it copies idx, and that a frozen input gets no gradient.
func TestScatterKnownAnswer(t *testing.T) {
	v := NewParam("v", mat.NewDense(1, 3, []float64{1.5, -2, 4}))
	idx := []int{1, 5, 6}
	s := Scatter(v, idx, 3, 3)
	want := mat.NewDense(3, 3, []float64{
		0, 1.5, 0,
		0, 0, -2,
		4, 0, 0,
	})
	if !mat.Equal(s.Value, want) {
		t.Fatalf("Scatter = %v, want %v", mat.Formatted(s.Value), mat.Formatted(want))
	}
	idx[0] = 0 // Scatter kept its own copy
	w := NewParam("w", mat.NewDense(3, 3, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}))
	SumAll(Mul(s, w)).Backward()
	if got, want := vals(v.Grad), []float64{2, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("dv = %v, want %v (w at idx)", got, want)
	}
	// A value of a frozen tensor: no graph, no gradient.
	c := Scatter(NewConst(mat.NewDense(1, 1, []float64{3})), []int{2}, 1, 4)
	if c.NeedsGrad() || !mat.Equal(c.Value, mat.NewDense(1, 4, []float64{0, 0, 3, 0})) {
		t.Errorf("Scatter of a constant: needs grad %v, value %v", c.NeedsGrad(), mat.Formatted(c.Value))
	}
}

// TestScatterErrors checks that Scatter names the shapes and the index a
// programmer error is about, and CheckSupport's errors.
func TestScatterErrors(t *testing.T) {
	v3 := NewParam("v", mat.NewDense(1, 3, nil))
	for _, c := range []struct {
		name  string
		f     func()
		shape bool // a ShapeError, else an ArgError
		want  []string
	}{
		{"column", func() { Scatter(NewParam("v", mat.NewDense(3, 1, nil)), []int{0, 1, 2}, 2, 2) }, true, []string{"Scatter", "(3×1)", "(1×3)"}},
		{"length", func() { Scatter(v3, []int{0, 1}, 2, 2) }, true, []string{"Scatter", "(1×3)", "(1×2)", "(2×2)"}},
		{"empty", func() { Scatter(NewParam("v", mat.NewDense(1, 1, nil)), nil, 2, 2) }, true, []string{"Scatter", "(1×1)", "(1×0)"}},
		{"outside", func() { Scatter(v3, []int{0, 1, 4}, 2, 2) }, false, []string{"Scatter", "Ω[2] = 4", "(2×2)"}},
		{"negative", func() { Scatter(v3, []int{-1, 1, 2}, 2, 2) }, false, []string{"Scatter", "Ω[0] = -1"}},
		{"repeated", func() { Scatter(v3, []int{0, 1, 1}, 2, 2) }, false, []string{"Scatter", "Ω[2] = 1", "increasing"}},
		{"unsorted", func() { Scatter(v3, []int{0, 2, 1}, 2, 2) }, false, []string{"Scatter", "Ω[2] = 1", "increasing"}},
	} {
		err := Maybe(c.f)
		var se ShapeError
		var ae ArgError
		if c.shape && !errors.As(err, &se) || !c.shape && !errors.As(err, &ae) {
			t.Errorf("%s: got %v, want a ShapeError %v", c.name, err, c.shape)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", c.name, err, w)
			}
		}
	}
	if err := CheckSupport(nil, 2, 2); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("CheckSupport(nil) = %v, want an empty support", err)
	}
	if err := CheckSupport([]int{0, 3}, 2, 2); err != nil {
		t.Errorf("CheckSupport([0 3], 2, 2) = %v", err)
	}
}
