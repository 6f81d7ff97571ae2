package quant_test

import (
	"fmt"

	"github.com/gopeft/gopeft/peft/quant"
	"gonum.org/v1/gonum/mat"
)

// Example quantizes a small matrix to NF4 and back.
func Example() {
	w := mat.NewDense(2, 4, []float64{0.9, -0.35, 0.02, 0.5, -1.2, 0.7, 0.1, 0})
	q, err := quant.NF4{BlockSize: 4}.Quantize(w)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d codes in %d bytes, %.1f bits per entry\n", q.Len(), len(q.Codes), q.Bits())
	fmt.Printf("%.4f\n", mat.Formatted(q.Dequantize()))
	// Output:
	// 8 codes in 4 bytes, 12.0 bits per entry
	// ⎡ 0.9000  -0.3554   0.0000   0.5064⎤
	// ⎣-1.2000   0.6751   0.0955   0.0000⎦
}
