// A panic becomes an error whose traceback names the cell lines.
xs := []int{1, 2, 3}
func at(i int) int {
	return xs[i]
}
fmt.Println(at(1))
at(7)
// Output:
// 2
// Error:
// runtime error: index out of range
// cell line 7: at(7)
