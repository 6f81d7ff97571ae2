package ckpt

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/peft"
)

// column is one column of a report: its CSV name, its header in text and
// Markdown, and how a row shows in each.
type column[T any] struct {
	key, head string
	text      func(T) string  // for text and Markdown
	value     func(T) float64 // for CSV and Values; nil for a text column
	str       func(T) string  // for CSV when value is nil
}

func num(v float64, format string) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf(format, v)
}

var layerColumns = []column[LayerStats]{
	{key: "name", head: "tensor", text: func(s LayerStats) string { return s.Name }, str: func(s LayerStats) string { return s.Name }},
	{key: "dtype", head: "dtype", text: func(s LayerStats) string { return s.DType }, str: func(s LayerStats) string { return s.DType }},
	{key: "rows", head: "shape", text: func(s LayerStats) string { return fmt.Sprintf("%d×%d", s.Rows, s.Cols) }, value: func(s LayerStats) float64 { return float64(s.Rows) }},
	{key: "cols", value: func(s LayerStats) float64 { return float64(s.Cols) }},
	{key: "frobenius", head: "‖W‖_F", text: func(s LayerStats) string { return num(s.Frobenius, "%.4g") }, value: func(s LayerStats) float64 { return s.Frobenius }},
	{key: "spectral", head: "‖W‖₂", text: func(s LayerStats) string { return num(s.Spectral, "%.4g") }, value: func(s LayerStats) float64 { return s.Spectral }},
	{key: "effective_rank", head: "erank", text: func(s LayerStats) string { return num(s.EffectiveRank, "%.1f") }, value: func(s LayerStats) float64 { return s.EffectiveRank }},
	{key: "stable_rank", head: "srank", text: func(s LayerStats) string { return num(s.StableRank, "%.2f") }, value: func(s LayerStats) float64 { return s.StableRank }},
	{key: "numerical_rank", head: "rank", text: func(s LayerStats) string { return fmt.Sprint(s.NumericalRank) }, value: func(s LayerStats) float64 { return float64(s.NumericalRank) }},
	{key: "alpha", head: "α", text: func(s LayerStats) string { return num(s.Alpha, "%.2f") }, value: func(s LayerStats) float64 { return s.Alpha }},
	{key: "alpha_sigma", head: "±", text: func(s LayerStats) string { return num(s.AlphaSigma, "%.2f") }, value: func(s LayerStats) float64 { return s.AlphaSigma }},
	{key: "n_tail", head: "tail", text: func(s LayerStats) string { return fmt.Sprint(s.NTail) }, value: func(s LayerStats) float64 { return float64(s.NTail) }},
	{key: "mp_edge", head: "λ+", text: func(s LayerStats) string { return num(s.MPEdge, "%.3g") }, value: func(s LayerStats) float64 { return s.MPEdge }},
	{key: "mp_outliers", head: "MP out", text: func(s LayerStats) string { return fmt.Sprint(s.MPOutliers) }, value: func(s LayerStats) float64 { return float64(s.MPOutliers) }},
	{key: "error", head: "error", text: func(s LayerStats) string { return s.Err }, str: func(s LayerStats) string { return s.Err }},
}

var updateColumns = []column[UpdateStats]{
	{key: "name", head: "tensor", text: func(s UpdateStats) string { return s.Name }, str: func(s UpdateStats) string { return s.Name }},
	{key: "dtype", head: "dtype", text: func(s UpdateStats) string { return s.DType }, str: func(s UpdateStats) string { return s.DType }},
	{key: "rows", head: "shape", text: func(s UpdateStats) string { return fmt.Sprintf("%d×%d", s.Rows, s.Cols) }, value: func(s UpdateStats) float64 { return float64(s.Rows) }},
	{key: "cols", value: func(s UpdateStats) float64 { return float64(s.Cols) }},
	{key: "norm_w1", head: "‖W₁‖_F", text: func(s UpdateStats) string { return num(s.NormW1, "%.4g") }, value: func(s UpdateStats) float64 { return s.NormW1 }},
	{key: "norm_delta", head: "‖ΔW‖_F", text: func(s UpdateStats) string { return num(s.NormDelta, "%.4g") }, value: func(s UpdateStats) float64 { return s.NormDelta }},
	{key: "rel_delta", head: "rel", text: func(s UpdateStats) string { return num(s.RelDelta, "%.3g") }, value: func(s UpdateStats) float64 { return s.RelDelta }},
	{key: "sparsity", head: "sparsity", text: func(s UpdateStats) string { return num(100*s.Sparsity, "%.2f%%") }, value: func(s UpdateStats) float64 { return s.Sparsity }},
	{key: "sparsity_tol", head: "sparsity(tol)", text: func(s UpdateStats) string { return num(100*s.SparsityTol, "%.2f%%") }, value: func(s UpdateStats) float64 { return s.SparsityTol }},
	{key: "rank", head: "rank ΔW", text: func(s UpdateStats) string { return fmt.Sprint(s.Rank) }, value: func(s UpdateStats) float64 { return float64(s.Rank) }},
	{key: "rank_frac", head: "rank/min", text: func(s UpdateStats) string { return num(s.RankFrac, "%.3f") }, value: func(s UpdateStats) float64 { return s.RankFrac }},
	{key: "effective_rank", head: "erank ΔW", text: func(s UpdateStats) string { return num(s.EffectiveRank, "%.1f") }, value: func(s UpdateStats) float64 { return s.EffectiveRank }},
	{key: "stable_rank", head: "srank ΔW", text: func(s UpdateStats) string { return num(s.StableRank, "%.2f") }, value: func(s UpdateStats) float64 { return s.StableRank }},
	{key: "k", head: "k", text: func(s UpdateStats) string { return fmt.Sprint(s.K) }, value: func(s UpdateStats) float64 { return float64(s.K) }},
	{key: "sim_left", head: "φ_k left", text: func(s UpdateStats) string { return num(s.SimLeft, "%.4f") }, value: func(s UpdateStats) float64 { return s.SimLeft }},
	{key: "sim_right", head: "φ_k right", text: func(s UpdateStats) string { return num(s.SimRight, "%.4f") }, value: func(s UpdateStats) float64 { return s.SimRight }},
	{key: "error", head: "error", text: func(s UpdateStats) string { return s.Err }, str: func(s UpdateStats) string { return s.Err }},
}

// cells returns the header and the rows of a text or Markdown table; the
// error column only when some row has an error.
func cells[T any](cols []column[T], rows []T) ([]string, [][]string) {
	hasErr := false
	for _, r := range rows {
		if cols[len(cols)-1].text(r) != "" {
			hasErr = true
		}
	}
	var head []string
	var use []column[T]
	for i, c := range cols {
		if c.head == "" || (i == len(cols)-1 && !hasErr) {
			continue
		}
		head = append(head, c.head)
		use = append(use, c)
	}
	out := make([][]string, len(rows))
	for i, r := range rows {
		for _, c := range use {
			out[i] = append(out[i], c.text(r))
		}
	}
	return head, out
}

// textTable aligns the cells in columns, text left and numbers right.
func textTable(head []string, rows [][]string) string {
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(r []string) {
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i <= 1 { // name and dtype
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		b.WriteString("\n")
	}
	line(head)
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

func markdownTable(head []string, rows [][]string) string {
	var b strings.Builder
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	b.WriteString("|")
	for _, h := range head {
		b.WriteString(" " + esc(h) + " |")
	}
	b.WriteString("\n|")
	for i := range head {
		if i <= 1 {
			b.WriteString(" --- |")
		} else {
			b.WriteString(" ---: |")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("|")
		for _, c := range r {
			b.WriteString(" " + esc(c) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func writeCSV[T any](w io.Writer, cols []column[T], rows []T) error {
	cw := csv.NewWriter(w)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = c.key
	}
	cw.Write(head)
	rec := make([]string, len(cols))
	for _, r := range rows {
		for i, c := range cols {
			if c.value != nil {
				rec[i] = strconv.FormatFloat(c.value(r), 'g', -1, 64)
			} else {
				rec[i] = c.str(r)
			}
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

func values[T any](cols []column[T], rows []T, name func(T) string, metric string) ([]string, []float64, error) {
	var keys []string
	for _, c := range cols {
		if c.value == nil {
			continue
		}
		keys = append(keys, c.key)
		if c.key == metric {
			names, v := make([]string, len(rows)), make([]float64, len(rows))
			for i, r := range rows {
				names[i], v[i] = name(r), c.value(r)
			}
			return names, v, nil
		}
	}
	return nil, nil, fmt.Errorf("ckpt: no metric %q (have %s)", metric, strings.Join(keys, ", "))
}

func skippedText(sk []Skipped) string {
	if len(sk) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "skipped %d tensors:", len(sk))
	for i, s := range sk {
		if i == 8 {
			fmt.Fprintf(&b, " … (%d more)", len(sk)-i)
			break
		}
		fmt.Fprintf(&b, " %s (%s);", s.Name, s.Reason)
	}
	return strings.TrimSuffix(b.String(), ";") + "\n"
}

func (r *Report) summary() string {
	return fmt.Sprintf("%s: %d weights analysed, %.1f MB read in %.1f s\n", r.Path, len(r.Layers), float64(r.Bytes)/1e6, r.Elapsed.Seconds())
}

// Text returns the report as an aligned text table, with a summary line
// and the skipped tensors.
func (r *Report) Text() string {
	h, rows := cells(layerColumns, r.Layers)
	return r.summary() + textTable(h, rows) + skippedText(r.Skipped)
}

// Markdown returns the report as a Markdown table (a notebook shows it).
func (r *Report) Markdown() string {
	h, rows := cells(layerColumns, r.Layers)
	return r.summary() + "\n" + markdownTable(h, rows) + "\n" + skippedText(r.Skipped)
}

// WriteCSV writes one row per weight, with a header row of the metric names
// Values accepts (plus name, dtype and error); numbers are full precision,
// NaN where a metric is undefined.
func (r *Report) WriteCSV(w io.Writer) error { return writeCSV(w, layerColumns, r.Layers) }

// Values returns one metric for every weight, with the weights' names, for
// a chart: metric is a CSV column name ("alpha", "effective_rank",
// "stable_rank", "mp_outliers", …).
func (r *Report) Values(metric string) ([]string, []float64, error) {
	return values(layerColumns, r.Layers, func(s LayerStats) string { return s.Name }, metric)
}

// RankTrace returns an integer metric ("numerical_rank", "mp_outliers",
// "n_tail", or a rank rounded: "effective_rank", "stable_rank") as a
// one-step peft.RankTrace, one module per weight, which viz.FinalRanks
// draws as one bar per layer.
func (r *Report) RankTrace(metric string) (*peft.RankTrace, error) {
	names, v, err := r.Values(metric)
	if err != nil {
		return nil, err
	}
	return rankTrace(names, v, metric)
}

func rankTrace(names []string, v []float64, metric string) (*peft.RankTrace, error) {
	tr := &peft.RankTrace{Modules: names, Steps: []int{0}, Ranks: make([][]int, len(v))}
	for i, x := range v {
		if math.IsNaN(x) || x < 0 || x > math.MaxInt32 {
			return nil, fmt.Errorf("ckpt: RankTrace(%q): %s has %v, not a count", metric, names[i], x)
		}
		tr.Ranks[i] = []int{int(math.Round(x))}
	}
	return tr, nil
}

func (r *UpdateReport) summary() string {
	sp, spt := r.Overall()
	return fmt.Sprintf("%s → %s: %d weights compared, %.1f MB read in %.1f s; overall update sparsity %.2f%% exact, %.2f%% with |ΔW| ≤ %g + %g·|W₁|; φ_k with k = %d\n",
		r.Path1, r.Path2, len(r.Layers), float64(r.Bytes)/1e6, r.Elapsed.Seconds(), 100*sp, 100*spt, r.Atol, r.Rtol, r.TopK)
}

// Text returns the report as an aligned text table.
func (r *UpdateReport) Text() string {
	h, rows := cells(updateColumns, r.Layers)
	return r.summary() + textTable(h, rows) + skippedText(r.Skipped)
}

// Markdown returns the report as a Markdown table.
func (r *UpdateReport) Markdown() string {
	h, rows := cells(updateColumns, r.Layers)
	return r.summary() + "\n" + markdownTable(h, rows) + "\n" + skippedText(r.Skipped)
}

// WriteCSV writes one row per weight (see Report.WriteCSV).
func (r *UpdateReport) WriteCSV(w io.Writer) error { return writeCSV(w, updateColumns, r.Layers) }

// Values returns one metric for every weight ("sparsity", "rank_frac",
// "sim_left", …; the CSV column names).
func (r *UpdateReport) Values(metric string) ([]string, []float64, error) {
	return values(updateColumns, r.Layers, func(s UpdateStats) string { return s.Name }, metric)
}

// RankTrace returns an integer metric ("rank", "effective_rank" rounded,
// …) as a one-step peft.RankTrace for viz.FinalRanks.
func (r *UpdateReport) RankTrace(metric string) (*peft.RankTrace, error) {
	names, v, err := r.Values(metric)
	if err != nil {
		return nil, err
	}
	return rankTrace(names, v, metric)
}
