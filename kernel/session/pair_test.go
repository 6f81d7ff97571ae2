package session

import (
	"strings"
	"testing"
)

// TestValueErrorFinalExpression: a final expression of type (T, error)
// shows T alone (richly) when the error is nil, and fails the cell with
// the error otherwise; other tuples show as tuples.
func TestValueErrorFinalExpression(t *testing.T) {
	s := newSession(t)
	res, _ := runOK(t, s, "viz.SpectrumValues(viz.SpectrumOptions{}, nil, []float64{3, 2, 1})")
	if _, ok := res.Data["image/png"]; !ok {
		t.Errorf("(chart, nil) shows %v, want the chart's image", keys(res.Data))
	}
	if md, _ := res.Metadata["image/png"].(map[string]any); md["width"] == nil {
		t.Errorf("chart metadata %v", res.Metadata)
	}
	res, _ = runOK(t, s, `strconv.Atoi("12")`)
	if got := text(res); got != "12" {
		t.Errorf("(12, nil) shows %s, want 12", got)
	}
	res = s.Execute(t.Context(), `strconv.Atoi("twelve")`, 1, &recorder{})
	if res.Error == nil || !strings.Contains(res.Error.Value, `parsing "twelve"`) || res.Error.Name != "NumError" {
		t.Errorf("(0, err) gives %+v, want the cell to fail with the error", res)
	}
	res = s.Execute(t.Context(), "viz.SpectrumValues(viz.SpectrumOptions{}, nil, []float64{})", 1, &recorder{})
	if res.Error == nil || res.Data != nil {
		t.Errorf("(nil chart, err) gives %+v, want an error", res)
	}
	// Not a (value, error) pair: a tuple as before.
	res, _ = runOK(t, s, "func two() (int, string) { return 1, \"a\" }\ntwo()")
	if got := text(res); got != `(1, "a")` {
		t.Errorf("two() shows %s", got)
	}
}

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// TestHelpDocumentsLimits: %help explains (value, error) results and the
// interpreter's limits users run into, with workarounds.
func TestHelpDocumentsLimits(t *testing.T) {
	s := newSession(t)
	_, rec := runOK(t, s, "%help")
	out := rec.stdout()
	for _, want := range []string{"(value, error)", "Unsupported", "constant definition", "kerneltest/README.md", "nb.HTML(v.HTML())", "%who", "%%time", "%reset"} {
		if !strings.Contains(out, want) {
			t.Errorf("%%help does not mention %q", want)
		}
	}
}
