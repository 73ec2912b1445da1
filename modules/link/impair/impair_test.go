package impair_test

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/link/impair"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// write sends n packets numbered by their first byte through e.
func write(e *impair.Endpoint, n int) {
	for i := 0; i < n; i++ {
		p := pipeline.DefaultPool.Get(64)
		b, _ := p.Append(64)
		b[0], b[1] = byte(i), byte(i>>8)
		e.WritePackets([]*pipeline.Packet{p})
	}
}

func drain(ch *channel.Endpoint) []int {
	var got []int
	for _, f := range pt.Drain(ch) {
		got = append(got, int(f[0])|int(f[1])<<8)
	}
	return got
}

func TestSeededAndCounted(t *testing.T) {
	run := func() ([]int, *impair.Endpoint) {
		ch := channel.New(channel.Options{Queue: 4096})
		e := impair.New(ch, impair.Options{Loss: 0.1, Duplicate: 0.05, Seed: 7, Out: true})
		write(e, 2000)
		return drain(ch), e
	}
	a, e := run()
	b, _ := run()
	if len(a) != len(b) {
		t.Fatalf("same seed, %d and %d packets", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different fate at %d", i)
		}
	}
	lost, dup := e.Dropped.Load(), e.Duplicated.Load()
	if lost < 150 || lost > 250 || dup < 50 || dup > 150 {
		t.Fatalf("lost %d, duplicated %d of 2000 (10 %%, 5 %%)", lost, dup)
	}
	if uint64(len(a)) != 2000-lost+dup {
		t.Fatalf("%d out, want %d", len(a), 2000-lost+dup)
	}
}

func TestDelayAndReorder(t *testing.T) {
	clock := pt.NewManualClock()
	ch := channel.New(channel.Options{Queue: 4096})
	e := impair.New(ch, impair.Options{Delay: 10 * time.Millisecond, Reorder: 0.2, ReorderDelay: 5 * time.Millisecond, Seed: 3, Out: true, Clock: clock})
	write(e, 100)
	if got := drain(ch); len(got) != 0 {
		t.Fatalf("%d packets before the delay", len(got))
	}
	clock.Advance(10 * time.Millisecond)
	first := drain(ch)
	clock.Advance(5 * time.Millisecond)
	late := drain(ch)
	if len(first)+len(late) != 100 || uint64(len(late)) != e.Reordered.Load() || len(late) == 0 {
		t.Fatalf("%d on time, %d late, %d reordered", len(first), len(late), e.Reordered.Load())
	}
	for i := 1; i < len(first); i++ {
		if first[i] < first[i-1] {
			t.Fatal("packets due at the same time left out of order")
		}
	}
	e.Close()
}

// A peer that sends faster than the delay drains cannot make the link hold
// packets without bound: beyond its limit they are dropped and counted,
// and every pool buffer is back once the held ones have left.
func TestDelayQueueBounded(t *testing.T) {
	clock := pt.NewManualClock()
	ch := channel.New(channel.Options{Queue: 16384})
	e := impair.New(ch, impair.Options{Delay: time.Second, Seed: 1, Out: true, Clock: clock})
	const n = 12000
	write(e, n)
	if d := e.Dropped.Load(); d != n-10000 {
		t.Fatalf("dropped %d of %d with 10,000 held at most, want %d", d, n, n-10000)
	}
	clock.Advance(time.Second)
	if got := len(drain(ch)); got != 10000 {
		t.Fatalf("%d left after the delay, want 10,000", got)
	}
	e.Close()
}
