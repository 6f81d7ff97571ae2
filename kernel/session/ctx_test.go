package session

import (
	"context"
	"testing"
	"time"
)

// TestCtxReboundEveryCell: a func declared in an earlier cell that reads
// ctx sees the context of the cell that calls it, whether or not that
// cell mentions ctx: an interrupt of the calling cell reaches it, and a
// call after an interrupted or finished cell sees a live context.
func TestCtxReboundEveryCell(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "var seen context.Context\n"+
		"func f() error { seen = ctx; <-ctx.Done(); return ctx.Err() }\n"+
		"func alive() bool { return ctx.Err() == nil }\n"+
		"func same() bool { return ctx == nb.Context() }")
	runOK(t, s, "y := 2") // a cell that does not mention ctx
	for round := 0; round < 2; round++ {
		ictx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		t0 := time.Now()
		res := s.Execute(ictx, "f()", 3, &recorder{})
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("round %d: f() stopped %v after the interrupt", round, d-200*time.Millisecond)
		}
		if res.Error == nil || res.Error.Name != "Interrupted" {
			t.Fatalf("round %d: f() in an interrupted cell: %+v", round, res)
		}
		// f saw the interrupted cell's context, which the interrupt cancelled.
		if res, _ := runOK(t, s, "seen != nil && seen.Err() == context.Canceled"); text(res) != "true" {
			t.Errorf("round %d: the ctx f saw was not the interrupted cell's", round)
		}
		// Called from later cells, the helpers see those cells' contexts.
		if res, _ := runOK(t, s, "same()"); text(res) != "true" {
			t.Errorf("round %d: ctx in a func of cell 1 is not the running cell's context", round)
		}
		if res, _ := runOK(t, s, "alive()"); text(res) != "true" {
			t.Errorf("round %d: alive() after the interrupt shows %s", round, text(res))
		}
		if res, _ := runOK(t, s, "y = y + 1\nalive()"); text(res) != "true" {
			t.Errorf("round %d: alive() in a statement cell shows %s", round, text(res))
		}
		// %%time cells too.
		if res, _ := runOK(t, s, "%%time\nalive()"); text(res) != "true" {
			t.Errorf("round %d: alive() under %%%%time shows %s", round, text(res))
		}
	}
	// A call once its cell has finished normally sees a live context.
	runOK(t, s, "g := func() bool { return ctx.Err() == nil }")
	if res, _ := runOK(t, s, "g()"); text(res) != "true" {
		t.Errorf("g() shows %s", text(res))
	}
}
