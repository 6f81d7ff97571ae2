// Only a final expression is shown; statements, declarations, print calls
// and void calls show nothing.
a := 3
a = 4
//---
if a > 3 {
	a = 5
}
//---
func nothing() {}
nothing()
//---
fmt.Println("printed")
//---
func pair() (int, string) { return a, "five" }
pair()
//---
a
// Output:
// printed
// (5, "five")
// 5
