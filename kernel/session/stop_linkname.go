package session

import (
	_ "unsafe" // go:linkname

	"github.com/traefik/yaegi/interp"
)

// interpStop is yaegi's (*Interpreter).stop: it bumps the run id, which every
// interpreted step checks, and releases blocked channel operations.
//
//go:linkname interpStop github.com/traefik/yaegi/interp.(*Interpreter).stop
func interpStop(it *interp.Interpreter)
