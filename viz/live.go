package viz

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopeft/gopeft/nb"
	"github.com/gopeft/gopeft/peft"
)

// Live is a loss chart that a training loop updates while it runs. Its
// Callback has the signature of peft.TrainConfig.Callback: at the first call
// it shows the chart and a progress line in the running cell
// (nb.DisplayWithID); at later calls it replaces both in place
// (nb.Update, Jupyter's update_display_data), so the cell shows one chart
// that moves, not a new image per update.
//
//	live := viz.NewLive("LoRA r=8", 500, 25)
//	cfg := peft.TrainConfig{Steps: 500, Every: 5, Callback: live.Callback}
//
// The progress line (step, loss, steps per second, time left) is updated
// at every call; the chart is redrawn when at least Every steps have passed
// since it was last drawn, and at the last step. The progress line is shown
// once, as text under the chart, never in the chart's image or its text.
// Drawing never stops training: a history that cannot be drawn (a NaN
// loss) shows its error in the progress line, and Err returns it; until a
// chart is drawn, an empty text holds its place above the progress line.
type Live struct {
	// Options draw the chart (title, log y, smoothing, …).
	Options LossOptions
	// Every is the number of steps between redraws of the chart (≤ 1: at
	// every call).
	Every int
	// TotalSteps is the run's length, for the time left (0: unknown).
	TotalSteps int
	// Compare holds finished runs drawn with the live one (a baseline).
	Compare []*peft.History

	mu        sync.Mutex
	id        string
	shown     bool
	drawnStep int
	first     time.Time
	firstStep int
	chart     *Chart
	line      string
	err       error
	now       func() time.Time // for tests
}

var liveCount atomic.Int64

// NewLive returns a live chart titled title for a run of totalSteps steps
// (0 if unknown) that redraws every every steps, smoothing the training
// loss with an EMA of factor 0.9 under the raw curve.
func NewLive(title string, totalSteps, every int) *Live {
	return &Live{
		Options:    LossOptions{Title: title, Smooth: 0.9},
		Every:      every,
		TotalSteps: totalSteps,
		id:         fmt.Sprintf("gopeft-live-%d-%d", time.Now().UnixNano(), liveCount.Add(1)),
		drawnStep:  -1,
		now:        time.Now,
	}
}

// ID returns the display id under which the chart is shown; the progress
// line is shown under ID()+"-progress".
func (l *Live) ID() string { return l.id }

// Callback records progress at step and redraws as Live describes. It is
// safe to call from the training goroutine; it never panics.
func (l *Live) Callback(step int, h *peft.History) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			l.err = fmt.Errorf("viz: Live: %v", r)
		}
	}()
	now := l.now()
	if l.first.IsZero() {
		l.first, l.firstStep = now, step
	}
	redraw := l.chart == nil || l.Every <= 1 || step-l.drawnStep >= l.Every || (l.TotalSteps > 0 && step >= l.TotalSteps)
	if redraw && h != nil {
		runs := append(append([]*peft.History(nil), l.Compare...), h)
		c, err := LossChart(l.Options, runs...)
		if err != nil {
			l.err = err
			redraw = false
		} else {
			l.err = nil
			// A new chart each time: one already shown never changes. It
			// has no footer: the progress line is shown under it as text
			// (and would be older in the image than under it).
			l.chart, l.drawnStep = c, step
		}
	} else {
		redraw = false
	}
	l.line = l.progress(step, h, now)
	line := textLine(l.line)
	if !l.shown {
		// Both outputs are created once, the chart's first (a placeholder
		// when it cannot be drawn yet), and only updated afterwards: a
		// second DisplayWithID under the same id would add an output that
		// every later update also fills, showing the line twice.
		var chart any = textLine("")
		if l.chart != nil {
			chart = l.chart
		}
		nb.DisplayWithID(l.id, chart)
		nb.DisplayWithID(l.id+"-progress", line)
		l.shown = true
		return
	}
	if redraw && l.chart != nil {
		nb.Update(l.id, l.chart)
	}
	nb.Update(l.id+"-progress", line)
}

// Done draws the final chart and progress line of h, whatever Every says.
func (l *Live) Done(step int, h *peft.History) {
	l.mu.Lock()
	l.drawnStep = -1 << 30
	l.mu.Unlock()
	l.Callback(step, h)
}

// Chart returns the chart last drawn (nil before the first draw).
func (l *Live) Chart() *Chart {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chart
}

// Progress returns the progress line last shown.
func (l *Live) Progress() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.line
}

// Err returns why the chart could not be drawn at the last call, or nil.
func (l *Live) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// progress formats "step 120/500 · loss 2.3456 · eval 2.5100 · 12.3 steps/s
// · ETA 31s". The rate is the mean over the last 50 of the history's step
// times (History.StepTime) or, for a history without them, measured on the
// wall clock since the first call.
func (l *Live) progress(step int, h *peft.History, now time.Time) string {
	var b strings.Builder
	if l.TotalSteps > 0 {
		fmt.Fprintf(&b, "step %d/%d", step, l.TotalSteps)
	} else {
		fmt.Fprintf(&b, "step %d", step)
	}
	if h != nil {
		if n := len(h.Loss); n > 0 {
			fmt.Fprintf(&b, " · loss %.4f", h.Loss[n-1])
		}
		if n := len(h.EvalLoss); n > 0 {
			fmt.Fprintf(&b, " · eval %.4f", h.EvalLoss[n-1])
		}
	}
	rate := 0.0
	if h != nil && len(h.StepTime) > 0 {
		var sum float64
		k := max(0, len(h.StepTime)-50)
		for _, t := range h.StepTime[k:] {
			sum += t
		}
		if sum > 0 {
			rate = float64(len(h.StepTime)-k) / sum
		}
	} else if elapsed := now.Sub(l.first).Seconds(); step > l.firstStep && elapsed > 0 {
		rate = float64(step-l.firstStep) / elapsed
	}
	if rate > 0 {
		fmt.Fprintf(&b, " · %.3g steps/s", rate)
	}
	if l.TotalSteps > 0 && rate > 0 {
		if left := l.TotalSteps - step; left > 0 {
			fmt.Fprintf(&b, " · ETA %s", roundDur(float64(left)/rate))
		} else {
			b.WriteString(" · done")
		}
	}
	if l.err != nil {
		fmt.Fprintf(&b, " · chart: %v", l.err)
	}
	return b.String()
}

func roundDur(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// textLine is a line of text the front-end shows as text/plain.
type textLine string

// Text returns the line.
func (t textLine) Text() string { return string(t) }
