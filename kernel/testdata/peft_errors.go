// Programmer errors of compiled code panic with typed errors; peft.Maybe
// turns them into values. A panic in the cell names its line.
err := peft.Maybe(func() { mat.NewDense(0, 0, nil) })
fmt.Println(err)
panic(peft.ArgError{Op: "Demo", Msg: "rank must be positive"})
// Output:
// mat: zero length in matrix dimension
// Error:
// peft.ArgError: peft: Demo: rank must be positive
// cell line 5
