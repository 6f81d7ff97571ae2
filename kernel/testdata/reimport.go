// Importing again (re-running an import cell) is harmless.
import "strings"
import "gonum.org/v1/gonum/floats"
//---
import (
	"strings"
	"gonum.org/v1/gonum/floats"
	"unicode"
)
fmt.Println(strings.ToUpper("lora"), floats.Sum([]float64{1, 2}), unicode.IsUpper('Q'))
// Output:
// LORA 3 true
