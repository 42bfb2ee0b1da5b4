//go:build race

package proxy

// raceEnabled reports whether the race detector is on: it multiplies
// memory use, so memory bounds are not checked under it.
const raceEnabled = true
