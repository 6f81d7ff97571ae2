// Package engine owns the contract between the gopeft dispatcher
// (kernel/dispatch) and whatever runs the cells (kernel/session in the real
// kernel): the Publisher a running cell sends its output to, and the Result,
// with its ExecError, that a cell ends with. It holds only these types and
// imports nothing, so that the protocol side can name them without
// depending on the interpreter.
package engine

// Publisher receives what a running cell produces; the dispatcher implements
// it by sending IOPub messages with the execute_request as parent (and the
// stdin channel for Input). The session calls it from several goroutines but
// never concurrently.
type Publisher interface {
	Stream(name, text string) // "stdout" | "stderr"
	Display(data, metadata map[string]any, displayID string, update bool)
	ClearOutput(wait bool)
	Input(prompt string, password bool) (string, error)
}

// ExecError is a failed cell: ename, evalue and the traceback of Jupyter's
// error message.
type ExecError struct {
	Name, Value string
	Traceback   []string // never nil; names the cell line
}

// Result is what Execute returns once the cell is done.
type Result struct {
	Data     map[string]any // execute_result MIME bundle (text/plain always present); nil: nothing to show
	Metadata map[string]any
	Error    *ExecError       // nil on success
	Payload  []map[string]any // e.g. {"source":"page","data":{"text/plain":…},"start":0} for `name?`
}
