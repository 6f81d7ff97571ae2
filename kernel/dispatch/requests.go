package dispatch

import (
	"github.com/gopeft/gopeft/kernel/wire"
)

func (k *Kernel) complete(m *wire.Message) {
	var req struct {
		Code      string `json:"code"`
		CursorPos *int   `json:"cursor_pos"`
	}
	if !k.decode(wire.Shell, m, &req) {
		return
	}
	pos := codePoints(req.Code)
	if req.CursorPos != nil {
		pos = clamp(*req.CursorPos, 0, pos)
	}
	matches, start, end := k.eng.Complete(req.Code, pos)
	if matches == nil {
		matches = []string{}
	}
	k.reply(wire.Shell, m, map[string]any{
		"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end, "metadata": map[string]any{},
	})
}

func (k *Kernel) inspect(m *wire.Message) {
	var req struct {
		Code        string `json:"code"`
		CursorPos   *int   `json:"cursor_pos"`
		DetailLevel int    `json:"detail_level"`
	}
	if !k.decode(wire.Shell, m, &req) {
		return
	}
	pos := codePoints(req.Code)
	if req.CursorPos != nil {
		pos = clamp(*req.CursorPos, 0, pos)
	}
	data, found := k.eng.Inspect(req.Code, pos, req.DetailLevel)
	if data == nil || !found {
		data = map[string]any{}
	}
	k.reply(wire.Shell, m, map[string]any{"status": "ok", "found": found && len(data) > 0, "data": data, "metadata": map[string]any{}})
}

func (k *Kernel) isComplete(m *wire.Message) {
	var req struct {
		Code string `json:"code"`
	}
	if !k.decode(wire.Shell, m, &req) {
		return
	}
	status, indent := k.eng.IsComplete(req.Code)
	switch status {
	case "complete", "incomplete", "invalid", "unknown":
	default:
		k.log.Printf("engine returned is_complete status %q; answering unknown", status)
		status = "unknown"
	}
	content := map[string]any{"status": status}
	if status == "incomplete" {
		content["indent"] = indent
	}
	k.reply(wire.Shell, m, content)
}

func codePoints(s string) int {
	n := 0
	for range s {
		n++
	}
	return n
}

func clamp(x, lo, hi int) int {
	return max(lo, min(x, hi))
}
