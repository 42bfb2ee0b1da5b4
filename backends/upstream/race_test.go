//go:build race

package upstream

// raceEnabled: the race detector slows every goroutine switch and memory
// access several times over.
const raceEnabled = true
