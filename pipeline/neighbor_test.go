package pipeline_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// Static neighbors come from the file and follow reloads; dynamic entries
// stay.
func TestNeighborStaticFromConfig(t *testing.T) {
	ev := &eventLog{}
	file := func(neigh string) string {
		return fmt.Sprintf(`
modules: [network.ipv4]
links:
  - {name: b, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.2.1/24], neighbors: [%s]}
`, macRB, neigh)
	}
	r := pt.NewNode(t, "host", file(`{ip: 10.0.2.2, mac: "02:00:00:00:0b:02"}, {ip: 10.0.2.3, mac: "02:00:00:00:0b:03"}`),
		pipeline.Options{Clock: pt.NewManualClock(), NUDDispatcher: ev})
	nic, _ := r.Stack.NIC("b")
	tb := nic.Neighbors()
	ev.expect(t, "added 10.0.2.2 PERMANENT", "added 10.0.2.3 PERMANENT")
	if mac, ok := tb.Lookup(b2); !ok || mac != macB {
		t.Fatalf("Lookup %v %v", mac, ok)
	}
	tb.Set(pipeline.NeighborEntry{Addr: netip.MustParseAddr("10.0.2.9"), LinkAddr: macB2, State: pipeline.NeighborStale})
	ev.expect(t, "added 10.0.2.9 STALE")

	if err := r.Reload(file(`{ip: 10.0.2.2, mac: "02:00:00:00:0b:22"}`)); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, "changed 10.0.2.2 PERMANENT", "removed 10.0.2.3 PERMANENT")
	var got []string
	for _, e := range tb.Entries() {
		got = append(got, fmt.Sprintf("%s %s %s", e.Addr, e.LinkAddr, e.State))
	}
	want := []string{"10.0.2.2 02:00:00:00:0b:22 PERMANENT", "10.0.2.9 02:00:00:00:0b:22 STALE"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries %q, want %q (sorted by address)", got, want)
	}
	if _, ok := tb.Entry(netip.MustParseAddr("10.0.2.3")); ok {
		t.Fatal("a static entry no longer configured is still there")
	}
}

// Probes create STALE entries; confirmations never create entries; the
// RFC 4861 rules for a changed link address.
func TestNeighborProbeAndConfirmation(t *testing.T) {
	g := newNUDRig(t, "")
	tb := g.table("b")
	nine := netip.MustParseAddr("10.0.2.9")
	g.r.Stack.Do(func(b *pipeline.Batch) {
		tb.HandleConfirmation(b, nine, macB, solicited) // unsolicited: no entry
	})
	g.wantState("b", "10.0.2.9", pipeline.NeighborUnknown)

	g.r.Stack.Do(func(b *pipeline.Batch) { tb.HandleProbe(b, nine, macB) })
	g.wantState("b", "10.0.2.9", pipeline.NeighborStale)
	// The same address again changes nothing; a new one updates, still STALE.
	g.r.Stack.Do(func(b *pipeline.Batch) { tb.HandleProbe(b, nine, macB) })
	g.r.Stack.Do(func(b *pipeline.Batch) { tb.HandleProbe(b, nine, macB2) })
	if e, _ := tb.Entry(nine); e.State != pipeline.NeighborStale || e.LinkAddr != macB2 {
		t.Fatalf("entry %+v", e)
	}
	g.ev.expect(t, "added 10.0.2.9 STALE", "changed 10.0.2.9 STALE")
	// Multicast or zero link addresses are ignored.
	g.r.Stack.Do(func(b *pipeline.Batch) {
		tb.HandleProbe(b, nine, wire.BroadcastMAC)
		tb.HandleProbe(b, netip.MustParseAddr("10.0.2.10"), wire.MAC{})
	})
	if e, _ := tb.Entry(nine); e.LinkAddr != macB2 || len(tb.Entries()) != 1 {
		t.Fatalf("entry %+v, %d entries", e, len(tb.Entries()))
	}

	// A probe resolves an INCOMPLETE entry: its packets leave, and the
	// entry, STALE and used, is in DELAY.
	g.send("10.0.2.2", 2)
	g.r.Stack.Do(func(b *pipeline.Batch) { tb.HandleProbe(b, b2, macB) })
	g.wantFrames(2, macB)
	g.wantState("b", "10.0.2.2", pipeline.NeighborDelay)
	g.clk.Advance(5 * time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborProbe)

	// An unsolicited confirmation with a new address: STALE with it.
	g.r.Stack.Do(func(b *pipeline.Batch) {
		tb.HandleConfirmation(b, b2, macB2, pipeline.ReachabilityConfirmationFlags{Override: true})
	})
	if e, _ := tb.Entry(b2); e.State != pipeline.NeighborStale || e.LinkAddr != macB2 {
		t.Fatalf("entry %+v", e)
	}
	// An upper-layer hint makes a usable entry REACHABLE.
	g.r.Stack.Do(func(b *pipeline.Batch) { tb.HandleUpperLevelConfirmation(b, b2) })
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
}

// The packet path reads the table while probes, confirmations and timers
// change it (run with -race).
func TestNeighborConcurrentUse(t *testing.T) {
	g := newNUDRig(t, ", max_entries: 16")
	tb := g.table("b")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				g.send(fmt.Sprintf("10.0.2.%d", 2+(i+w)%20), 4)
				g.read("b")
			}
		}(w)
	}
	for i := 0; i < 200; i++ {
		addr := netip.MustParseAddr(fmt.Sprintf("10.0.2.%d", 2+i%20))
		g.r.Stack.Do(func(b *pipeline.Batch) {
			if i%3 == 0 {
				tb.HandleProbe(b, addr, macB)
			} else {
				tb.HandleConfirmation(b, addr, macB, solicited)
			}
		})
		if i%10 == 0 {
			g.clk.Advance(700 * time.Millisecond)
		}
		_ = tb.Entries()
	}
	close(stop)
	wg.Wait()
	if n := len(tb.Entries()); n > 16 {
		t.Fatalf("%d entries, bound 16", n)
	}
}
