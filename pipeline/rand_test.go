package pipeline_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

// TestSeededRand: two stacks with one seed draw the same numbers; an
// unseeded stack says so (its modules then seed themselves at random).
func TestSeededRand(t *testing.T) {
	a, b := pipeline.New(pipeline.Options{Seed: 42}), pipeline.New(pipeline.Options{Seed: 42})
	c := pipeline.New(pipeline.Options{Seed: 43})
	same, other := true, false
	for i := 0; i < 8; i++ {
		x, y, z := a.Rand().Uint64(), b.Rand().Uint64(), c.Rand().Uint64()
		same = same && x == y
		other = other || x != z
	}
	if !same || !other {
		t.Errorf("seed 42 twice: same %v; seed 43 differs %v", same, other)
	}
	if s := a.Rand().Seed(); s == 0 || !a.Rand().Seeded() {
		t.Errorf("a seeded stack's module seed %d (seeded %v), want non-zero", s, a.Rand().Seeded())
	}
	u := pipeline.New(pipeline.Options{})
	if u.Rand().Seeded() || u.Rand().Seed() != 0 {
		t.Error("an unseeded stack claims a seed")
	}
	var nilRand *pipeline.Rand
	_ = nilRand.IntN(10) + int(nilRand.Float32()) // the runtime's generator, no panic
}
