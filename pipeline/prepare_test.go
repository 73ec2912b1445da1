package pipeline

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// TestHookPrepare: a HookEntry's Prepare runs once per hook run, over the
// run's whole batch (nil slots included), before any table at the hook
// sees a packet; a hook without Prepare functions runs none.
func TestHookPrepare(t *testing.T) {
	var order []string
	var seen []int
	tab := HookFunc("rec", targetFunc(func(pc *PacketContext) Verdict {
		order = append(order, "table")
		return VerdictAccept
	}))
	raw := HookFunc("raw", targetFunc(func(pc *PacketContext) Verdict {
		order = append(order, "raw")
		return VerdictAccept
	}))
	prep := func(b *Batch, h Hook, pkts []*Packet) {
		if h != Prerouting {
			t.Errorf("Prepare at %v", h)
		}
		order = append(order, "prepare")
		seen = append(seen, len(pkts))
	}
	hooks, err := composeHooks([NumHooks]*HookTable{}, []HookEntry{
		{Hook: Prerouting, Priority: PriorityConntrack, Name: "ct", Table: tab, Prepare: prep},
		{Hook: Prerouting, Priority: PriorityRaw, Name: "raw", Table: raw},
		{Hook: Forward, Priority: 0, Name: "f", Table: tab},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(hooks[Prerouting].prepare) != 1 || len(hooks[Forward].prepare) != 0 {
		t.Fatalf("prepare lists %d/%d, want 1/0", len(hooks[Prerouting].prepare), len(hooks[Forward].prepare))
	}
	b := &Batch{Gen: &Generation{hooks: hooks}}
	var pkts []*Packet
	for i := 0; i < 3; i++ {
		p := DefaultPool.Get(64)
		defer p.Release()
		buf := make([]byte, 28)
		wire.IPv4(buf).Encode(&wire.IPv4Fields{TotalLength: 28, TTL: 64, Protocol: wire.ProtocolUDP,
			Src: [4]byte{10, 0, 1, 2}, Dst: [4]byte{10, 0, 2, 2}})
		wire.IPv4(buf).SetChecksum(wire.IPv4(buf).CalculateChecksum())
		wire.UDP(buf[20:]).Encode(&wire.UDPFields{SrcPort: 1000, DstPort: 2000, Length: 8})
		p.SetData(buf)
		p.SetNetworkHeader()
		p.NetProto = IPv4ProtocolNumber
		pkts = append(pkts, p)
	}
	pkts = append(pkts, nil)
	b.RunHook(Prerouting, pkts)
	want := []string{"prepare", "raw", "table", "raw", "table", "raw", "table"}
	if len(order) != len(want) {
		t.Fatalf("ran %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("ran %v, want %v", order, want)
		}
	}
	if len(seen) != 1 || seen[0] != 4 {
		t.Errorf("Prepare saw %v packets, want one call with the batch's 4 slots", seen)
	}
	order = order[:0]
	b.RunHook(Forward, pkts)
	if len(order) != 3 || order[0] != "table" {
		t.Errorf("Forward ran %v: a Prepare from another hook ran", order)
	}
}

type targetFunc func(*PacketContext) Verdict

func (f targetFunc) Action(pc *PacketContext) (Verdict, int) { return f(pc), 0 }

// TestHookNoTuple: a hook whose every entry is NoTuple parses nothing (the
// tuple fields are zero, even after a table parsed for the last packet);
// one entry without it makes the hook parse for all.
func TestHookNoTuple(t *testing.T) {
	var l4 []int
	rec := HookFunc("rec", targetFunc(func(pc *PacketContext) Verdict {
		l4 = append(l4, pc.L4End)
		ParseTuple(nil, pc.Pkt, pc) // as a NoTuple table that needs it does
		return VerdictAccept
	}))
	hooks, err := composeHooks([NumHooks]*HookTable{}, []HookEntry{
		{Hook: Postrouting, Priority: 1, Name: "a", Table: rec, NoTuple: true},
		{Hook: Postrouting, Priority: 2, Name: "b", Table: HookFunc("b", targetFunc(func(*PacketContext) Verdict { return VerdictAccept })), NoTuple: true},
		{Hook: Input, Priority: 1, Name: "a", Table: rec, NoTuple: true},
		{Hook: Input, Priority: 2, Name: "c", Table: table(markTarget(1))},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{Gen: &Generation{hooks: hooks}}
	var pkts []*Packet
	for i := 0; i < 2; i++ {
		p := DefaultPool.Get(64)
		defer p.Release()
		buf := make([]byte, 28)
		wire.IPv4(buf).Encode(&wire.IPv4Fields{TotalLength: 28, TTL: 64, Protocol: wire.ProtocolUDP,
			Src: [4]byte{10, 0, 1, 2}, Dst: [4]byte{10, 0, 2, 2}})
		wire.IPv4(buf).SetChecksum(wire.IPv4(buf).CalculateChecksum())
		wire.UDP(buf[20:]).Encode(&wire.UDPFields{SrcPort: 1000, DstPort: 2000, Length: 8})
		p.SetData(buf)
		p.SetNetworkHeader()
		p.NetProto = IPv4ProtocolNumber
		pkts = append(pkts, p)
	}
	b.RunHook(Postrouting, pkts)
	if len(l4) != 2 || l4[0] != 0 || l4[1] != 0 {
		t.Errorf("NoTuple hook: tables saw L4End %v, want [0 0] (nothing parsed)", l4)
	}
	l4 = l4[:0]
	b.RunHook(Input, pkts)
	if len(l4) != 2 || l4[0] != 28 || l4[1] != 28 {
		t.Errorf("mixed hook: tables saw L4End %v, want [28 28] (parsed)", l4)
	}
}
