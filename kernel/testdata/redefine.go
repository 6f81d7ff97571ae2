// A later cell redefines a func and a var; state persists.
func greet() string { return "hello" }
n := 1
//---
func greet() string { return "bonjour" }
n = n + 1
//---
var n = 10
fmt.Println(greet(), n)
// Output:
// bonjour 10
