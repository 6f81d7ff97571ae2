package viz

import (
	"fmt"

	"github.com/gopeft/gopeft/nb"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file lets a notebook plot plain slices and gonum matrices in one
// line. Every number still comes from peft: these helpers only wrap the
// data in peft's types (the SVDs run in accel, cancelled with the cell).

// SpectrumValues draws SpectrumChart for plain singular values, one slice
// per series, labelled with names (nil for unnamed series: "spectrum 1", …
// in the legend; otherwise as many names as series). Each slice is sorted descending; an empty slice, NaN,
// ±Inf or a negative value is an error naming the series.
func SpectrumValues(opt SpectrumOptions, names []string, values ...[]float64) (*Chart, error) {
	if names != nil && len(names) != len(values) {
		return nil, fmt.Errorf("viz: SpectrumValues: %d names for %d series", len(names), len(values))
	}
	spectra := make([]*peft.Spectrum, len(values))
	for i, v := range values {
		name := ""
		if names != nil {
			name = names[i]
		}
		s, err := peft.SpectrumOf(v)
		if err != nil {
			return nil, fmt.Errorf("viz: SpectrumValues: series %q: %w", seriesName(name, i), err)
		}
		s.Name = name
		spectra[i] = s
	}
	return SpectrumChart(opt, spectra...)
}

// SpectrumMatrices draws SpectrumChart for the singular values of matrices
// (weights, updates, gradients), labelled with names as SpectrumValues does.
func SpectrumMatrices(opt SpectrumOptions, names []string, ms ...mat.Matrix) (*Chart, error) {
	if names != nil && len(names) != len(ms) {
		return nil, fmt.Errorf("viz: SpectrumMatrices: %d names for %d matrices", len(names), len(ms))
	}
	spectra := make([]*peft.Spectrum, len(ms))
	for i, m := range ms {
		name := ""
		if names != nil {
			name = names[i]
		}
		if m == nil {
			return nil, fmt.Errorf("viz: SpectrumMatrices: matrix %q is nil", seriesName(name, i))
		}
		s, err := peft.NewSpectrum(nb.Context(), m)
		if err != nil {
			return nil, fmt.Errorf("viz: SpectrumMatrices: matrix %q: %w", seriesName(name, i), err)
		}
		s.Name = name
		spectra[i] = s
	}
	return SpectrumChart(opt, spectra...)
}

// ESDMatrix draws ESDChart for the weight w, titled with name.
func ESDMatrix(opt ESDOptions, name string, w mat.Matrix) (*Chart, error) {
	if w == nil {
		return nil, fmt.Errorf("viz: ESDMatrix: matrix %q is nil", name)
	}
	e, err := peft.NewESD(nb.Context(), w)
	if err != nil {
		return nil, fmt.Errorf("viz: ESDMatrix: matrix %q: %w", name, err)
	}
	e.Name = name
	return ESDChart(opt, e)
}

// LossValues draws LossChart for plain training-loss curves, one slice per
// run against steps 1, 2, …, labelled with names (nil for unnamed runs:
// "run 1", … in the legend, or "train loss" for a single run; otherwise as
// many names as runs).
func LossValues(opt LossOptions, names []string, losses ...[]float64) (*Chart, error) {
	if names != nil && len(names) != len(losses) {
		return nil, fmt.Errorf("viz: LossValues: %d names for %d runs", len(names), len(losses))
	}
	runs := make([]*peft.History, len(losses))
	for i, l := range losses {
		name := ""
		if names != nil {
			name = names[i]
		}
		runs[i] = &peft.History{Name: name, Loss: l}
	}
	return LossChart(opt, runs...)
}

// RankValues draws RankHeatmap for plain data: ranks[i][j] is the rank of
// modules[i] at steps[j].
func RankValues(opt RankOptions, modules []string, steps []int, ranks [][]int) (*Chart, error) {
	return RankHeatmap(opt, &peft.RankTrace{Modules: modules, Steps: steps, Ranks: ranks})
}

// SubspaceMatrices draws SubspaceChart for two matrices: the similarity
// φ(i, j) of their top-i and top-j singular directions on side (i ≤ maxI,
// j ≤ maxJ) and the min(maxI, maxJ) principal angles between their top
// subspaces, all computed by peft (SubspaceSimilarity, PrincipalAngles).
func SubspaceMatrices(opt SubspaceOptions, a, b mat.Matrix, side peft.Side, maxI, maxJ int) (*Chart, error) {
	if a == nil || b == nil {
		return nil, fmt.Errorf("viz: SubspaceMatrices: nil matrix")
	}
	ctx := nb.Context()
	phi, err := peft.SubspaceSimilarity(ctx, a, b, side, maxI, maxJ)
	if err != nil {
		return nil, fmt.Errorf("viz: SubspaceMatrices: %w", err)
	}
	th, err := peft.PrincipalAngles(ctx, a, b, side, min(maxI, maxJ))
	if err != nil {
		return nil, fmt.Errorf("viz: SubspaceMatrices: %w", err)
	}
	return SubspaceChart(opt, phi, th)
}
