//go:build race

package alloctest

// Race is true when the race detector is on: it allocates on its own, so
// exact zero-allocation proofs skip under it.
const Race = true
