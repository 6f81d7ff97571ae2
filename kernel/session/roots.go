package session

import (
	"reflect"
	"unsafe"

	"github.com/traefik/yaegi/interp"
)

// dropRoots forgets the AST roots yaegi v0.16.1 keeps of every compiled
// source (Interpreter.roots, used only by its debugger, which the kernel
// does not use). Without this each executed cell keeps its whole node tree
// alive and the kernel's memory grows with the number of cells. Names the
// cells declared stay reachable through the interpreter's scopes.
func dropRoots(it *interp.Interpreter) {
	f := reflect.ValueOf(it).Elem().FieldByName("roots")
	if !f.IsValid() || f.Kind() != reflect.Slice {
		return // another yaegi version: nothing to do
	}
	f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
	f.Set(reflect.Zero(f.Type()))
}
