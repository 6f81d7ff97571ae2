package viz

import "fmt"

// Grid lays out charts as small multiples, cols per row, left to right and
// top to bottom (one chart per layer, say), under a shared title. Each cell
// draws the whole chart given, panels and title included. The grid's size
// defaults to cells as wide as a notebook's output area allows (960 px in
// all, at most 480 px a cell) with the first chart's aspect ratio, and at
// least 260 px tall.
//
// It returns an error for no charts, a nil chart (naming its position) or
// cols < 1.
func Grid(title string, cols int, charts ...*Chart) (*Chart, error) {
	if len(charts) == 0 {
		return nil, fmt.Errorf("viz: Grid %q: no charts given", title)
	}
	if cols < 1 {
		return nil, fmt.Errorf("viz: Grid %q: %d columns, want ≥ 1", title, cols)
	}
	for i, c := range charts {
		if c == nil {
			return nil, fmt.Errorf("viz: Grid %q: chart %d is nil", title, i+1)
		}
	}
	cols = min(cols, len(charts))
	nrows := (len(charts) + cols - 1) / cols
	cw := min(480, maxDefaultWidth/cols)
	ch := max(cw*max(charts[0].Height, 1)/max(charts[0].Width, 1), 260)
	g := &Chart{Title: title, Width: cw * cols, Height: ch*nrows + 30}
	for r := 0; r < nrows; r++ {
		row := make([]cell, cols)
		for c := range row {
			row[c].weight = 1
			if k := r*cols + c; k < len(charts) {
				row[c].sub = charts[k]
			} else {
				row[c].sub = &Chart{} // empty cell
			}
		}
		g.rows = append(g.rows, row)
	}
	return g, nil
}
