//go:build !race && !pipestack_debug

package pipeline

// debugChecks is false in normal builds: the packet ownership checks
// (debug_race.go) compile to nothing and debugState takes no space.
const debugChecks = false

type debugState struct{}

func (p *Packet) markReleased() {}
