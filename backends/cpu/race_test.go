//go:build race

package cpu

// raceEnabled reports whether the race detector is on: tests of large
// models skip themselves then.
const raceEnabled = true
