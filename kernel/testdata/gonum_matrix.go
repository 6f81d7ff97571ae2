// gonum is preloaded and runs on accel.
a := mat.NewDense(2, 2, []float64{1, 2, 3, 4})
var c mat.Dense
c.Mul(a, a)
fmt.Println(mat.Formatted(&c))
import "gonum.org/v1/gonum/stat"
stat.Mean([]float64{1, 2, 3, 6}, nil)
// Output:
// ⎡ 7  10⎤
// ⎣15  22⎦
// 3
