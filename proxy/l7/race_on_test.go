//go:build race

package l7

// raceEnabled: the race detector allocates on its own, so allocation counts do not hold.
const raceEnabled = true
