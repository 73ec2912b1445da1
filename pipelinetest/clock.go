// Package pipelinetest has what tests of pipestack and of its modules share:
// a manual clock, packet builders and checkers, in-memory topologies of
// stacks on link.channel, a collecting transport module and a goroutine-leak
// check. It is imported by tests only (it imports the channel link module,
// which the core package never does).
package pipelinetest

import (
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// ManualClock is the core's manual clock (pipeline.ManualClock): time moves
// only when Advance (or Set) is called, and timers due by then fire, in
// order, on the goroutine that moved it.
type ManualClock = pipeline.ManualClock

// NewManualClock starts a manual clock at a fixed instant.
func NewManualClock() *ManualClock {
	return pipeline.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}
