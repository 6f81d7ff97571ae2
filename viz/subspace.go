package viz

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// SubspaceOptions labels subspace-similarity charts.
type SubspaceOptions struct {
	Title string
	// A and B name the two matrices compared ("A r=8", "A r=64"); they
	// label the heat map's axes. Defaults "A" and "B".
	A, B          string
	Width, Height int // CSS pixels (0: 520×460 heat map, 960×420 both)
}

// SimilarityHeatmap draws φ(i, j) = ‖U_iᵀ V_j‖²_F / min(i, j), the
// normalized subspace similarity of Hu et al. (2021, §7.2, Fig. 3) as
// peft.SubspaceSimilarity computes it: row i (top-i directions of A, i = 1
// at the top) against column j (top-j of B), 0 (orthogonal) to 1
// (contained) on a fixed colour scale.
//
// It returns an error for an empty φ or a value that is NaN, ±Inf or
// outside [0, 1] (beyond round-off), naming the entry.
func SimilarityHeatmap(opt SubspaceOptions, phi mat.Matrix) (*Chart, error) {
	p, cb, err := similarityPlots("SimilarityHeatmap", opt, phi)
	if err != nil {
		return nil, err
	}
	return &Chart{Title: opt.Title, Width: orDefault(opt.Width, 520), Height: orDefault(opt.Height, 460),
		rows: [][]cell{{{p: p, weight: 0.84}, {p: cb, weight: 0.16}}}}, nil
}

// AnglesChart draws principal angles (radians, as peft.PrincipalAngles
// returns them) in degrees against their index, one line per series, from
// 0° (a shared direction) to 90° (orthogonal). names label the series and
// must be as many as the series, or nil: unnamed series are "angles 1",
// "angles 2", … in the legend, and a single unnamed series has no legend.
//
// It returns an error naming the series for none given, a count of names
// that is not the count of series, an empty series, or an angle that is
// NaN, ±Inf or outside [0, π/2].
func AnglesChart(opt SubspaceOptions, names []string, angles ...[]float64) (*Chart, error) {
	p, err := anglesPlot("AnglesChart", names, angles)
	if err != nil {
		return nil, err
	}
	return &Chart{Title: opt.Title, Width: orDefault(opt.Width, defaultWidth), Height: orDefault(opt.Height, defaultHeight),
		rows: [][]cell{{{p: p, weight: 1}}}}, nil
}

// SubspaceChart draws the similarity heat map of phi and, beside it, the
// principal angles of the same two subspaces (SimilarityHeatmap and
// AnglesChart in one figure).
func SubspaceChart(opt SubspaceOptions, phi mat.Matrix, angles []float64) (*Chart, error) {
	p, cb, err := similarityPlots("SubspaceChart", opt, phi)
	if err != nil {
		return nil, err
	}
	ap, err := anglesPlot("SubspaceChart", nil, [][]float64{angles}) // titled "principal angles": no legend needed
	if err != nil {
		return nil, err
	}
	return &Chart{Title: opt.Title, Width: orDefault(opt.Width, 960), Height: orDefault(opt.Height, 420),
		rows: [][]cell{{{p: p, weight: 0.45}, {p: cb, weight: 0.10}, {p: ap, weight: 0.45}}}}, nil
}

func similarityPlots(chart string, opt SubspaceOptions, phi mat.Matrix) (*panel, *panel, error) {
	if phi == nil {
		return nil, nil, fmt.Errorf("viz: %s: nil φ matrix", chart)
	}
	r, c := phi.Dims()
	if r == 0 || c == 0 {
		return nil, nil, fmt.Errorf("viz: %s: φ is empty (%d×%d)", chart, r, c)
	}
	z := make([][]float64, r)
	for i := range z {
		z[i] = make([]float64, c)
		for j := range z[i] {
			v := phi.At(i, j)
			if math.IsNaN(v) || math.IsInf(v, 0) || v < -1e-9 || v > 1+1e-9 {
				return nil, nil, fmt.Errorf("viz: %s: φ(%d, %d) = %v is outside [0, 1]", chart, i+1, j+1, v)
			}
			z[i][j] = v
		}
	}
	a, b := opt.A, opt.B
	if a == "" {
		a = "A"
	}
	if b == "" {
		b = "B"
	}
	p := newPlot("subspace similarity φ(i, j)", "j: top-j directions of "+b, "i: top-i directions of "+a)
	pal := viridis(64)
	p.Add(&cellGrid{z: z, min: 0, max: 1, pal: pal})
	p.X.Tick.Marker = indexTicks{labels: oneBased(c), maxTicks: 8}
	p.Y.Tick.Marker = indexTicks{labels: oneBased(r), maxTicks: 8, reversed: true}
	p.X.Min, p.X.Max = -0.5, float64(c)-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(r)-0.5
	p.X.Padding, p.Y.Padding = 0, 0
	return p, colorBar("φ", 0, 1, pal, false), nil
}

func oneBased(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = strconv.Itoa(i + 1)
	}
	return s
}

func anglesPlot(chart string, names []string, angles [][]float64) (*panel, error) {
	if len(angles) == 0 {
		return nil, fmt.Errorf("viz: %s: no angle series given", chart)
	}
	if names != nil && len(names) != len(angles) {
		return nil, fmt.Errorf("viz: %s: %d names for %d angle series", chart, len(names), len(angles))
	}
	p := newPlot("principal angles", "index", "angle (degrees)")
	p.X.Tick.Marker = linearTicks{integer: true}
	p.Y.Min, p.Y.Max = 0, 90
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 30, Label: "30"}, {Value: 45, Label: "45"}, {Value: 60, Label: "60"}, {Value: 90, Label: "90"}})
	colors := seriesColors(len(angles))
	for s, th := range angles {
		name := ""
		if names != nil {
			name = names[s]
		}
		label := legendName(name, "angles", s, len(angles))
		name = seriesName(name, s) // for errors
		if len(th) == 0 {
			return nil, fmt.Errorf("viz: %s: series %q is empty", chart, name)
		}
		if err := checkFinite(chart, name, th); err != nil {
			return nil, err
		}
		xy := make(plotter.XYs, len(th))
		for k, v := range th {
			if v < -1e-12 || v > math.Pi/2+1e-12 {
				return nil, fmt.Errorf("viz: %s: series %q: angle %d is %v rad, outside [0, π/2]", chart, name, k, v)
			}
			xy[k] = plotter.XY{X: float64(k + 1), Y: v * 180 / math.Pi}
		}
		if err := addLine(p, xy, colors[s], 1.6, nil, label); err != nil {
			return nil, err
		}
		if len(th) <= 64 {
			if err := addPoints(p, xy, colors[s], draw.CircleGlyph{}, 2, ""); err != nil {
				return nil, err
			}
		}
	}
	p.key.place = legendBottomRight
	return p, nil
}
