// os.Exit in a cell does not end the kernel.
import "os"
before := "kept"
os.Exit(1)
// Error:
// Exit: os.Exit(1) called: the kernel keeps running and keeps its state (use return or panic to stop a cell)
// cell line 4: os.Exit(1)
