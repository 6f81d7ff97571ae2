package peft

import (
	"fmt"
	"reflect"
	"runtime/debug"
)

// ShapeError is the panic value of an operation called with matrices whose
// shapes do not fit: a programmer error, named with the operation and both
// shapes. Maybe turns it back into an error.
type ShapeError struct {
	Op   string // the operation, e.g. "MatMul" or "LoRA.Forward"
	Got  string // the shape(s) given, e.g. "(3×4)·(5×2)"
	Want string // what would have fit
}

func (e ShapeError) Error() string {
	return fmt.Sprintf("peft: %s: shape mismatch: got %s, want %s", e.Op, e.Got, e.Want)
}

// ArgError is the panic value of an argument out of its allowed range (a rank
// r ≤ 0, a negative dropout, an unknown module, …).
type ArgError struct {
	Op  string // where, e.g. "LoRA" or "AttachLoRA(blocks.0.attn.q)"
	Msg string // what is wrong and the allowed range
}

func (e ArgError) Error() string { return "peft: " + e.Op + ": " + e.Msg }

// ShapeOf returns "(r×c)", the way errors write a matrix shape.
func ShapeOf(r, c int) string { return fmt.Sprintf("(%d×%d)", r, c) }

// Maybe calls fn and returns, as an error, a panic of this package (a
// ShapeError, an ArgError, or any other error value) that fn raises, with the
// stack where it was raised. Other panics are re-raised.
func Maybe(fn func()) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// An interpreter (yaegi, in the gopeft kernel) hands a panic of
		// compiled code on through interpreted frames as its reflect.Value.
		if rv, ok := r.(reflect.Value); ok && rv.IsValid() && rv.CanInterface() {
			r = rv.Interface()
		}
		e, ok := r.(error)
		if !ok {
			panic(r)
		}
		err = &PanicError{Err: e, Stack: debug.Stack()}
	}()
	fn()
	return nil
}

// PanicError is an error recovered by Maybe, with the stack of the panic.
type PanicError struct {
	Err   error
	Stack []byte
}

func (e *PanicError) Error() string { return e.Err.Error() }

// Unwrap returns the recovered error.
func (e *PanicError) Unwrap() error { return e.Err }
