//go:build race

package session

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = true
