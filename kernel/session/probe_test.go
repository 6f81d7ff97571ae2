package session

import (
	"context"
	"fmt"
	"testing"
)

func TestProbe(t *testing.T) {
	s := newSession(t)
	cells := []string{
		"import \"strings\"",
		"strings.ToUpper(\"a\")",
		"go func() { defer func() { if r := recover(); r != nil { fmt.Println(\"rec\", r) } }(); panic(1) }()\nimport \"time\"\ntime.Sleep(10*time.Millisecond)",
	}
	for i, c := range cells {
		rec := &recorder{}
		res := s.Execute(context.Background(), c, i+1, rec)
		fmt.Printf("=== %q\n  data=%v\n  events=%q\n", c, res.Data, rec.events)
		if res.Error != nil {
			fmt.Printf("  ERR %s | %s | %q\n", res.Error.Name, res.Error.Value, res.Error.Traceback)
		}
	}
}
