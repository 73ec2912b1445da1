package bench

import (
	"runtime"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// gvisorAcceptAll is a filter table that accepts everything: installing it
// turns gVisor's iptables, and its ConnTrack, on.
func gvisorAcceptAll() stack.Table {
	const v4 = header.IPv4ProtocolNumber
	accept := stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.AcceptTarget{NetworkProtocol: v4}}
	return stack.Table{
		Rules: []stack.Rule{accept, accept, accept, {Filter: stack.EmptyFilter4(), Target: &stack.ErrorTarget{NetworkProtocol: v4}}},
		BuiltinChains: [stack.NumHooks]int{
			stack.Prerouting: stack.HookUnset, stack.Input: 0, stack.Forward: 1, stack.Output: 2, stack.Postrouting: stack.HookUnset,
		},
		Underflows: [stack.NumHooks]int{
			stack.Prerouting: stack.HookUnset, stack.Input: 0, stack.Forward: 1, stack.Output: 2, stack.Postrouting: stack.HookUnset,
		},
	}
}

// gvisorNATAcceptAll is a nat table that accepts everything: gVisor makes
// a connection (with a no-op NAT binding) for each flow only when its nat
// table is evaluated, so without it "tracked" would only look flows up in
// an empty table.
func gvisorNATAcceptAll() stack.Table {
	const v4 = header.IPv4ProtocolNumber
	accept := stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.AcceptTarget{NetworkProtocol: v4}}
	return stack.Table{
		Rules: []stack.Rule{accept, accept, accept, accept, {Filter: stack.EmptyFilter4(), Target: &stack.ErrorTarget{NetworkProtocol: v4}}},
		BuiltinChains: [stack.NumHooks]int{
			stack.Prerouting: 0, stack.Input: 1, stack.Forward: stack.HookUnset, stack.Output: 2, stack.Postrouting: 3,
		},
		Underflows: [stack.NumHooks]int{
			stack.Prerouting: 0, stack.Input: 1, stack.Forward: stack.HookUnset, stack.Output: 2, stack.Postrouting: 3,
		},
	}
}

// gvisorNATMasquerade is the nat table of the masqueraded runs, as
// pipestack's "-o b -j MASQUERADE" in POSTROUTING: every flow leaves from
// the router's address on b (gVisor's MasqueradeTarget picks it and a
// port, keeping the original one when free, as pipestack's).
func gvisorNATMasquerade() stack.Table {
	const v4 = header.IPv4ProtocolNumber
	accept := stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.AcceptTarget{NetworkProtocol: v4}}
	toB := stack.EmptyFilter4()
	toB.OutputInterface = "b"
	masq := stack.Rule{Filter: toB, Target: &stack.MasqueradeTarget{NetworkProtocol: v4}}
	return stack.Table{
		Rules: []stack.Rule{accept, accept, accept, masq, accept, {Filter: stack.EmptyFilter4(), Target: &stack.ErrorTarget{NetworkProtocol: v4}}},
		BuiltinChains: [stack.NumHooks]int{
			stack.Prerouting: 0, stack.Input: 1, stack.Forward: stack.HookUnset, stack.Output: 2, stack.Postrouting: 3,
		},
		Underflows: [stack.NumHooks]int{
			stack.Prerouting: 0, stack.Input: 1, stack.Forward: stack.HookUnset, stack.Output: 2, stack.Postrouting: 4,
		},
	}
}

// drainMasqueraded is gvisorRouter.drain checking each packet as
// masqueraded (checkMasqueraded: the router's source address).
func (r *gvisorRouter) drainMasqueraded(tb testing.TB, want [][]byte, scratch []byte) {
	for i := range want {
		pkt := r.out.Read()
		if pkt == nil {
			tb.Fatalf("lost packet: got %d of %d forwarded packets in batch", i, len(want))
		}
		checkMasqueraded(tb, gatherPacket(pkt, scratch), want[i])
		pkt.DecRef()
	}
	if pkt := r.out.Read(); pkt != nil {
		pkt.DecRef()
		tb.Fatalf("unexpected extra packet on nic 2")
	}
}

// gvisorTrack turns gVisor's iptables and connection tracking on.
func gvisorTrack(r *gvisorRouter) {
	r.s.IPTables().ForceReplaceTable(stack.FilterID, gvisorAcceptAll(), false)
	r.s.IPTables().ForceReplaceTable(stack.NATID, gvisorNATAcceptAll(), false)
}

// BenchmarkConntrackGVisor is BenchmarkConntrackPipestack's twin; its
// router has UDP's transport protocol (without it the stack does not
// parse forwarded transport headers and ConnTrack cannot make a tuple). The
// tracked runs report B/entry: the heap the warm-up's connections took.
func BenchmarkConntrackGVisor(b *testing.B) {
	run := func(b *testing.B, mode string, fs *flowSet) {
		r := newGVisorRouterWith(b, false, []stack.TransportProtocolFactory{udp.NewProtocol})
		drain := r.drain
		switch mode {
		case "tracked":
			gvisorTrack(r)
		case "masqueraded":
			r.s.IPTables().ForceReplaceTable(stack.FilterID, gvisorAcceptAll(), false)
			r.s.IPTables().ForceReplaceTable(stack.NATID, gvisorNATMasquerade(), false)
			drain = r.drainMasqueraded
		}
		runForwardGVisor(b, r, fs, conntrackSize, drain)
	}
	perEntry := 0.0
	for _, flows := range conntrackFlowCounts {
		for _, mode := range []string{"untracked", "tracked", "masqueraded"} {
			b.Run(conntrackName(mode, flows), func(b *testing.B) {
				fs := conntrackFlowSet(flows)
				if mode == "tracked" {
					// Memory per connection: the heap after one pass over
					// every flow, against before it.
					r := newGVisorRouterWith(b, false, []stack.TransportProtocolFactory{udp.NewProtocol})
					gvisorTrack(r)
					var m0, m1 runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&m0)
					scratch := make([]byte, conntrackSize+ethHeaderLen+64)
					for range fs.warmBatches() {
						wire, want := fs.batch(batchSize)
						for _, w := range wire {
							r.inject(w)
						}
						r.drain(b, want, scratch)
					}
					runtime.GC()
					runtime.ReadMemStats(&m1)
					perEntry = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(flows)
					fs.next = 0
				}
				run(b, mode, fs)
				if mode == "tracked" { // after the run: ResetTimer drops reported metrics
					b.ReportMetric(perEntry, "B/entry")
				}
			})
		}
	}
	for _, mode := range []string{"untracked", "tracked"} {
		b.Run(conntrackName("newflows-"+mode, conntrackNewFlows), func(b *testing.B) {
			run(b, mode, conntrackFlowSet(conntrackNewFlows))
		})
	}
}
