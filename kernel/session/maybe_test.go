package session

import (
	"strings"
	"testing"
)

// TestMaybeThroughInterpretedFrames: peft.Maybe returns the error of a
// panic raised in a cell's func, also when interpreted code raised or
// re-raised it (yaegi then panics with the value's reflect.Value, which
// Maybe used to panic again with: the cell failed instead of getting an
// error).
func TestMaybeThroughInterpretedFrames(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "a := peft.NewConst(mat.NewDense(2, 3, nil))\nb := peft.NewConst(mat.NewDense(2, 3, nil))")
	for _, c := range []struct{ code, want string }{
		{"peft.Maybe(func() { peft.MatMul(a, b) })", "MatMul: shape mismatch: got (2×3)·(2×3)"},
		{"peft.Maybe(func() { defer func() { if r := recover(); r != nil { panic(r) } }(); peft.MatMul(a, b) })",
			"MatMul: shape mismatch: got (2×3)·(2×3)"},
		{`peft.Maybe(func() { panic(errors.New("bad step")) })`, "bad step"},
		{`peft.Maybe(func() { panic(fmt.Errorf("file %s", "w.safetensors")) })`, "file w.safetensors"},
	} {
		res := s.Execute(t.Context(), "err := "+c.code+"\nerr.Error()", 1, &recorder{})
		if res.Error != nil {
			t.Errorf("%s: the cell failed: %s: %s", c.code, res.Error.Name, res.Error.Value)
			continue
		}
		if got := text(res); !strings.Contains(got, c.want) {
			t.Errorf("%s: error %s, want one containing %q", c.code, got, c.want)
		}
	}
	// A good product is no error.
	res, _ := runOK(t, s, "c := peft.NewConst(mat.NewDense(3, 2, nil))\npeft.Maybe(func() { peft.MatMul(a, c) }) == nil")
	if text(res) != "true" {
		t.Errorf("peft.Maybe of a good MatMul: %s", text(res))
	}
	// A panic with a value that is no error still panics.
	res = s.Execute(t.Context(), `peft.Maybe(func() { panic("not an error") })`, 1, &recorder{})
	if res.Error == nil || !strings.Contains(res.Error.Value, "not an error") {
		t.Errorf("a non-error panic: %+v", res)
	}
}
