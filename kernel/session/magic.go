package session

import "context"

// magic runs a %-command.
func (s *Session) magic(ctx context.Context, c *cell, code string) Result {
	return errorResult("UnknownMagic", code, nil)
}

// help answers `name?` with a page payload.
func (s *Session) help(name string) Result {
	return Result{}
}
