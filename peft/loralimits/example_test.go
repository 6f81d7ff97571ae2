package loralimits_test

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/loralimits"
)

// ExampleDiagnose sweeps the input scale of the shipped tiny GPT's first
// block on a 64-character sequence and prints, per scale, whether the
// max-entry norms of X·W_Q and X·W_K are below the √ln L scale and the
// error of a degree-3 polynomial approximation of the attention scores'
// exp: negligible below the scale, order one above it.
func ExampleDiagnose() {
	g, err := peft.LoadTinyGPT()
	if err != nil {
		fmt.Println(err)
		return
	}
	toks := peft.CharVocab().Encode("Call me Ishmael. Some years ago, never mind how long precisely, h")[:64]
	rows, err := loralimits.Diagnose(g, toks, loralimits.Options{InputScales: []float64{0.0625, 0.25, 1}, Degree: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rows {
		if r.Block == 0 {
			fmt.Printf("X·%-6g ‖Q‖max %.2f vs √ln L %.2f, below: %-5v  exp error %.0e\n", r.InputScale, r.QMaxAdapted, r.Threshold, r.Below, r.ExpErr)
		}
	}
	// Output:
	// X·0.0625 ‖Q‖max 0.38 vs √ln L 2.04, below: true   exp error 2e-06
	// X·0.25   ‖Q‖max 1.51 vs √ln L 2.04, below: true   exp error 1e-01
	// X·1      ‖Q‖max 6.03 vs √ln L 2.04, below: false  exp error 1e+00
}
