package viz

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// Every numeric axis of every chart is marked by linearTicks or logTicks
// (or, for rows and columns of a heat map, indexTicks), never by
// gonum/plot's default marker. Their labels always carry the digits of the
// step between ticks, no fewer (adjacent labels always differ) and no more,
// and are exact: each label is the tick's value, printed.

// linearTicks marks a linear axis: major ticks, labelled, at the multiples
// of a round step (1, 2 or 5 × 10^k, at least 1 for an integer axis) that
// gives 3 to 7 of them, and unlabelled minor ticks halfway between.
type linearTicks struct {
	// integer keeps ticks on integers (an index, a step, a rank).
	integer bool
	// most is the most major ticks wanted (0: 7); drawRow lowers it when
	// the labels would touch.
	most int
}

// Ticks implements plot.Ticker.
func (t linearTicks) Ticks(lo, hi float64) []plot.Tick {
	if !finite(lo) || !finite(hi) || !(hi > lo) {
		return nil
	}
	step, k := linearStep(lo, hi, t.integer, t.most)
	sci := useScientific(lo, hi)
	first, last := math.Ceil(lo/step-1e-9), math.Floor(hi/step+1e-9)
	if last-first > 1000 { // cannot happen for finite lo < hi; a guard against loops
		return nil
	}
	// Where no round step gives between 2 and most ticks (3.6…9.2 has one
	// multiple of 5, three of 2), every stride-th is labelled (4, 8), from
	// the first.
	stride := 1.0
	if n := last - first + 1; t.most > 0 && n > float64(t.most) {
		stride = math.Ceil(n / float64(t.most))
	}
	var ts []plot.Tick
	minor := !(t.integer && step == 1)
	if minor && first-0.5 >= lo/step-1e-9 {
		ts = append(ts, plot.Tick{Value: (first - 0.5) * step})
	}
	for i := first; i <= last; i++ {
		v := i * step
		if math.Mod(i-first, stride) != 0 {
			ts = append(ts, plot.Tick{Value: v})
		} else {
			ts = append(ts, plot.Tick{Value: v, Label: stepLabel(v, k, sci)})
		}
		if minor && i+0.5 <= hi/step+1e-9 {
			ts = append(ts, plot.Tick{Value: (i + 0.5) * step})
		}
	}
	return ts
}

// linearStep returns the step between major ticks on [lo, hi], m·10^k with
// m in {1, 2, 5}, and k: the smallest such step that gives at most most
// ticks (0: 7; the next smaller step if that leaves fewer than 3), at
// least 1 on an integer axis.
func linearStep(lo, hi float64, integer bool, most int) (step float64, k int) {
	if most <= 0 {
		most = 7
	}
	count := func(s float64) int { return int(math.Floor(hi/s+1e-9) - math.Ceil(lo/s-1e-9) + 1) }
	ms := []float64{1, 2, 5}
	k = int(math.Floor(math.Log10((hi - lo) / float64(most))))
	mi := 0
	step = pow10(k)
	for count(step) > most {
		mi++
		if mi == len(ms) {
			mi, k = 0, k+1
		}
		step = ms[mi] * pow10(k)
	}
	if count(step) < min(3, most) {
		mi--
		if mi < 0 {
			mi, k = len(ms)-1, k-1
		}
		step = ms[mi] * pow10(k)
	}
	if integer && step < 1 {
		return 1, 0
	}
	return step, k
}

// fitTicks lowers the number of labels on p's numeric axes until they do
// not touch on a data area of size (w, h): on the x axis, labels at least
// 6 pt apart; on the y axis, 2 pt.
func fitTicks(p *plot.Plot, w, h vg.Length) {
	p.X.Tick.Marker = fitAxis(&p.X, w, false)
	p.Y.Tick.Marker = fitAxis(&p.Y, h, true)
}

func fitAxis(a *plot.Axis, length vg.Length, vertical bool) plot.Ticker {
	m := a.Tick.Marker
	for most := 7; ; most-- {
		switch mk := m.(type) {
		case linearTicks:
			mk.most = most
			m = mk
		case logTicks:
			mk.most = most
			m = mk
		default:
			return m
		}
		if most == 2 || labelsFit(a, m.Ticks(a.Min, a.Max), length, vertical) {
			return m
		}
	}
}

// labelsFit reports whether the labels of ts, on axis a of the given
// length, leave room between each other.
func labelsFit(a *plot.Axis, ts []plot.Tick, length vg.Length, vertical bool) bool {
	gap := vg.Points(6)
	if vertical {
		gap = vg.Points(2)
	}
	end := vg.Length(math.Inf(-1))
	for _, t := range ts {
		if t.Label == "" {
			continue
		}
		size := a.Tick.Label.Width(t.Label)
		if vertical {
			size = a.Tick.Label.Height(t.Label)
		}
		pos := vg.Length(a.Scale.Normalize(a.Min, a.Max, t.Value)) * length
		if pos-size/2 < end+gap {
			return false
		}
		end = pos + size/2
	}
	return true
}

// useScientific reports whether labels on [lo, hi] are written m·e^k: when
// the axis reaches a million or stays under a thousandth.
func useScientific(lo, hi float64) bool {
	m := max(math.Abs(lo), math.Abs(hi))
	return m >= 1e6 || m < 1e-3
}

// stepLabel formats v, a multiple of a step whose last digit is at 10^k,
// with its digits down to 10^k: "2.105" for k = −3, "1.40e6" for k = 4 in
// scientific notation (where zero is "0").
func stepLabel(v float64, k int, sci bool) string {
	if math.Abs(v) < pow10(k)/2 {
		v = 0 // not "-0.0"
	}
	if !sci {
		return strconv.FormatFloat(v, 'f', max(0, -k), 64)
	}
	if v == 0 {
		return "0"
	}
	e := int(math.Floor(math.Log10(math.Abs(v))))
	for range 3 {
		s := strconv.FormatFloat(v, 'e', max(0, e-k), 64)
		mant, exp, _ := strings.Cut(s, "e")
		ee, _ := strconv.Atoi(exp)
		if ee == e {
			return mant + "e" + strconv.Itoa(ee)
		}
		e = ee // log10 or rounding was off by one: 1e15 is not 9.99…e14
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// logTicks marks a logarithmic axis: every power of ten, labelled (every
// 2nd, 5th, 10th … decade when the axis spans more than ten); when the axis
// spans under three decades, also 2× and 5×, labelled, and the other
// multiples as minor ticks (up to eight decades). An
// axis shorter than a decade that linearTicks labels more often (a loss
// between 1.2 and 4, or between 2.109 and 2.11) is marked as a linear one.
type logTicks struct {
	// most is the most labels wanted (0: no limit but the rules above);
	// fewer are had by labelling 1× and 3× only, then powers of ten only,
	// then every 2nd, 3rd, 4th, 5th, 10th … power.
	most int
}

// Ticks implements plot.Ticker.
func (t logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) || !finite(lo) || !finite(hi) {
		return nil
	}
	a, b := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	decades := math.Log10(hi / lo)
	mults := []int{1}
	if b-a <= 3 {
		mults = []int{1, 2, 5}
	}
	everies := []int{1, 2, 3, 4, 5, 10, 15, 20, 25, 50, 100, 200}
	ei := 0
	for b-a > 10 && everies[ei]*8 < b-a {
		ei++
	}
	var ts []plot.Tick
	for {
		ts = logTickSet(lo, hi, a, b, mults, everies[ei])
		if t.most <= 0 || labels(ts) <= t.most || ei == len(everies)-1 {
			break
		}
		switch {
		case len(mults) == 3:
			mults = []int{1, 3}
		case len(mults) == 2:
			mults = []int{1}
		default:
			ei++
		}
	}
	if decades < 1 {
		if lin := (linearTicks{most: t.most}).Ticks(lo, hi); labels(lin) > labels(ts) {
			return lin
		}
	}
	return ts
}

// logTickSet returns the ticks m·10^e in [lo, hi] for e in a…b: labelled
// for m in mults where e is a multiple of every (m = 1) or every = 1 (the
// others), unlabelled for the other m (up to eight decades).
func logTickSet(lo, hi float64, a, b int, mults []int, every int) []plot.Tick {
	var ts []plot.Tick
	for e := a; e <= b; e++ {
		for m := 1; m < 10; m++ {
			if m > 1 && b-a > 8 {
				break // no minor ticks between decades on a long axis
			}
			v := decimal(m, e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if (m == 1 && mod(e, every) == 0) || (m > 1 && every == 1 && slices.Contains(mults, m)) {
				t.Label = logLabel(m, e)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// labels counts the labelled ticks.
func labels(ts []plot.Tick) int {
	n := 0
	for _, t := range ts {
		if t.Label != "" {
			n++
		}
	}
	return n
}

// decimal returns m·10^e, the float nearest to it (math.Pow(10, e)·m is
// not always).
func decimal(m, e int) float64 {
	v, _ := strconv.ParseFloat(strconv.Itoa(m)+"e"+strconv.Itoa(e), 64)
	return v
}

// logLabel writes m·10^e: "0.0002", "500", "2e-5", "1e6".
func logLabel(m, e int) string {
	switch {
	case e >= 0 && e <= 5:
		return strconv.Itoa(m) + strings.Repeat("0", e)
	case e < 0 && e >= -4:
		return "0." + strings.Repeat("0", -e-1) + strconv.Itoa(m)
	default:
		return strconv.Itoa(m) + "e" + strconv.Itoa(e)
	}
}

func pow10(k int) float64 { return decimal(1, k) }

func mod(a, b int) int { return ((a % b) + b) % b }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// niceStep returns the smallest of 1, 2, 5, 10, 20, 50, … ≥ x (≥ 1).
func niceStep(x float64) float64 {
	if x <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}
