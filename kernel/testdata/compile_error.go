// A compile error names the cell line and stops the cell.
fmt.Println("not reached")
z := 1
z = "text"
// Error:
// CompileError: 4:5: cannot convert "text" to int
// cell line 4: z = "text"
