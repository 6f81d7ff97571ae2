package session

// Complete returns completions for the identifier before cursorPos (in
// Unicode code points) and the range they replace.
func (s *Session) Complete(code string, cursorPos int) (matches []string, cursorStart, cursorEnd int) {
	return nil, cursorPos, cursorPos
}

// Inspect returns help for the name at cursorPos.
func (s *Session) Inspect(code string, cursorPos, detailLevel int) (data map[string]any, found bool) {
	return nil, false
}

// IsComplete reports whether code is ready to run.
func (s *Session) IsComplete(code string) (status, indent string) {
	return "unknown", ""
}
