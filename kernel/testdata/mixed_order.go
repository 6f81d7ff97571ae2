// A cell mixes statements, declarations and imports in any order.
x := 20
func double(v int) int { return 2 * v }
import "strings"
y := double(x) + 1
fmt.Println(strings.Repeat("=", 3), y)
y
// Output:
// === 41
// 41
