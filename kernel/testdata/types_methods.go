// Types, methods, interfaces, embedding, closures, defer/recover.
type shape interface{ area() float64 }
type rect struct{ w, h float64 }
func (r rect) area() float64 { return r.w * r.h }
type square struct{ rect }
func newSquare(s float64) square { return square{rect{s, s}} }
shapes := []shape{rect{2, 3}, newSquare(2)}
total := 0.0
for _, s := range shapes {
	total += s.area()
}
counter := func() func() int { n := 0; return func() int { n++; return n } }()
counter(); counter()
func safeDiv(a, b int) (q int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("recovered: %v", r)
		}
	}()
	return a / b, nil
}
_, err := safeDiv(1, 0)
fmt.Println(total, counter(), err)
// Output:
// 10 3 recovered: runtime error: integer divide by zero
