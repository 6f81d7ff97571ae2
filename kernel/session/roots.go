package session

import (
	"go/token"
	"reflect"
	"unsafe"

	"github.com/traefik/yaegi/interp"
)

// What yaegi v0.16.1 keeps of every compiled source and never reads again.
// Without the trimming below each executed cell costs about 800 bytes of
// live heap that is never freed (measured with TestMemoryGrowth: 10,000
// trivial cells grew the heap by 8.3 MB), and the kernel's memory grows
// with the number of cells run.
//
//   - Interpreter.roots: the AST root of every compiled source, used only by
//     its debugger, which the kernel does not use (dropRoots).
//   - scope.child: every block scope the compiler pushes is appended to its
//     parent's child list, which nothing reads; the scopes still in use are
//     reachable from their nodes (dropRoots).
//   - the token.FileSet: each Compile adds up to four files (a scan of the
//     first token, a build-constraint parse, the parse itself and possibly
//     a retry); only the last one is referenced by the compiled nodes
//     (trimFiles).
//
// What remains per cell is one global frame slot per temporary of the
// cell's top-level code (a reflect.Value and its type, about 60 bytes),
// whose indices are baked into the compiled code of later cells.

// dropRoots forgets the AST roots and the child lists of package-level
// scopes. Names the cells declared stay reachable through the
// interpreter's scopes.
func dropRoots(it *interp.Interpreter) {
	iv := reflect.ValueOf(it).Elem()
	if f := settable(iv.FieldByName("roots")); f.IsValid() && f.Kind() == reflect.Slice {
		f.Set(reflect.Zero(f.Type()))
	}
	clearChildren(settable(iv.FieldByName("universe")))
	if scopes := settable(iv.FieldByName("scopes")); scopes.IsValid() && scopes.Kind() == reflect.Map {
		for it := scopes.MapRange(); it.Next(); {
			clearChildren(it.Value())
		}
	}
}

// clearChildren empties the child list of a *scope.
func clearChildren(sc reflect.Value) {
	if !sc.IsValid() || sc.Kind() != reflect.Pointer || sc.IsNil() {
		return
	}
	f := settable(sc.Elem().FieldByName("child"))
	if f.IsValid() && f.Kind() == reflect.Slice {
		f.Set(reflect.Zero(f.Type()))
	}
}

// settable makes an unexported field of an addressable struct writable; it
// returns the zero Value when the field does not exist (another yaegi
// version: nothing to do).
func settable(f reflect.Value) reflect.Value {
	if !f.IsValid() || !f.CanAddr() {
		return reflect.Value{}
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// trimFiles removes from fset the files added since base, keeping the last
// one when keepLast is set (the file of the compiled code, whose positions
// name cell lines in panics).
func trimFiles(fset *token.FileSet, base int, keepLast bool) {
	var added []*token.File
	fset.Iterate(func(f *token.File) bool {
		if f.Base() >= base {
			added = append(added, f)
		}
		return true
	})
	if keepLast && len(added) > 0 {
		added = added[:len(added)-1]
	}
	for _, f := range added {
		fset.RemoveFile(f)
	}
}

// The global frame. Every compiled source gets slots in yaegi's global
// frame for the temporaries of its top-level code (Interpreter.frame.data,
// laid out by the types of the universe and main scopes), and the frame is
// copied into a new, longer slice whenever it grows: without reuse, each
// cell showing a value adds a slot for good and a copy of the whole frame
// (268 KB after 10,000 cells). The slots of a final expression are dead
// once it has been shown (nothing of it outlives it when it has no func
// literal), so they are handed back (releaseSlots) and the next source
// reuses them (fitSlots).

// globalSlots returns the number of slots of the global frame's layout, or
// -1 when the layout cannot be read (another yaegi version).
func globalSlots(it *interp.Interpreter) int {
	u := scopeTypes(reflect.ValueOf(it).Elem().FieldByName("universe"))
	if !u.IsValid() {
		return -1
	}
	return u.Len()
}

// scopeTypes returns the settable types field of a *scope value.
func scopeTypes(sc reflect.Value) reflect.Value {
	if !sc.IsValid() || sc.Kind() != reflect.Pointer || sc.IsNil() {
		return reflect.Value{}
	}
	f := settable(sc.Elem().FieldByName("types"))
	if !f.IsValid() || f.Kind() != reflect.Slice {
		return reflect.Value{}
	}
	return f
}

// frameData returns the settable data slice of the global frame.
func frameData(it *interp.Interpreter) reflect.Value {
	fr := reflect.ValueOf(it).Elem().FieldByName("frame")
	if !fr.IsValid() || fr.Kind() != reflect.Pointer || fr.IsNil() {
		return reflect.Value{}
	}
	d := settable(fr.Elem().FieldByName("data"))
	if !d.IsValid() || d.Kind() != reflect.Slice {
		return reflect.Value{}
	}
	return d
}

// releaseSlots shortens the global frame's layout back to n slots, when
// the universe and main scopes agree on it, and drops the values held in
// the slots beyond n (they would otherwise keep the last shown value
// alive). The frame itself keeps its length: fitSlots gives the slots the
// types of their next use.
func releaseSlots(it *interp.Interpreter, n int) {
	iv := reflect.ValueOf(it).Elem()
	u := scopeTypes(iv.FieldByName("universe"))
	scopes := iv.FieldByName("scopes")
	if n < 0 || !u.IsValid() || !scopes.IsValid() || scopes.Kind() != reflect.Map {
		return
	}
	m := scopeTypes(scopes.MapIndex(reflect.ValueOf("main")))
	if !m.IsValid() || m.Len() != u.Len() || u.Len() <= n {
		return
	}
	data := frameData(it)
	if !data.IsValid() {
		return
	}
	u.Set(u.Slice(0, n))
	m.Set(m.Slice(0, n))
	for i := n; i < data.Len(); i++ {
		if v := data.Index(i).Interface().(reflect.Value); v.IsValid() {
			data.Index(i).Set(reflect.ValueOf(reflect.New(v.Type()).Elem()))
		}
	}
}

// fitSlots makes every slot of the global frame from index `from` on whose
// type no longer matches the layout (a released slot reused by a later
// source) hold a zero value of its new type. It returns the first slot
// that may still need fitting before a later run: the first slot of the
// frame beyond the layout, which a later source may take (noFit: none).
func fitSlots(it *interp.Interpreter, from int) (next int) {
	u := scopeTypes(reflect.ValueOf(it).Elem().FieldByName("universe"))
	data := frameData(it)
	if !u.IsValid() || !data.IsValid() {
		return noFit
	}
	defer func() {
		if data.Len() <= u.Len() {
			next = noFit
		} else {
			next = u.Len()
		}
	}()
	for i := max(from, 0); i < u.Len() && i < data.Len(); i++ {
		t := u.Index(i).Interface().(reflect.Type)
		v := data.Index(i).Interface().(reflect.Value)
		if !v.IsValid() || v.Type() != t {
			data.Index(i).Set(reflect.ValueOf(reflect.New(t).Elem()))
		}
	}
	return next
}
