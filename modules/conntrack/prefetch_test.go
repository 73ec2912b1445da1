package conntrack

import (
	"testing"
	"unsafe"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
)

// TestEntryLayout: everything a lock-free lookup and a packet's timeout
// check read (status, generation, links, tags, expiry, wheel tick) is in
// the entry's first cache line; each direction's key and counters in a
// line of their own (the second and third); the TCP state in the fourth.
func TestEntryLayout(t *testing.T) {
	var e Entry
	for _, f := range []struct {
		name     string
		off, end uintptr
	}{
		{"status", unsafe.Offsetof(e.status), unsafe.Offsetof(e.status) + 4},
		{"gen", unsafe.Offsetof(e.gen), unsafe.Offsetof(e.gen) + 4},
		{"next", unsafe.Offsetof(e.next), unsafe.Offsetof(e.next) + unsafe.Sizeof(e.next)},
		{"tag", unsafe.Offsetof(e.tag), unsafe.Offsetof(e.tag) + unsafe.Sizeof(e.tag)},
		{"expires", unsafe.Offsetof(e.expires), unsafe.Offsetof(e.expires) + 8},
		{"slotTick", unsafe.Offsetof(e.slotTick), unsafe.Offsetof(e.slotTick) + 4},
	} {
		if f.end > 64 {
			t.Errorf("%s at bytes %d..%d: not in the first cache line", f.name, f.off, f.end)
		}
	}
	for d, off := range []uintptr{unsafe.Offsetof(e.orig), unsafe.Offsetof(e.reply)} {
		if start, end := off, off+unsafe.Sizeof(side{}); start != 64*uintptr(d+1) || end > 64*uintptr(d+2) {
			t.Errorf("direction %d's key and counters at %d..%d, want within line %d", d, start, end, d+1)
		}
	}
	if unsafe.Offsetof(e.tcp) < 192 {
		t.Errorf("the TCP state at %d shares the hot lines", unsafe.Offsetof(e.tcp))
	}
}

func packetOf(t *testing.T, b []byte) *pipeline.Packet {
	t.Helper()
	return filtertest.ContextOf(t, b, 0, pipeline.Prerouting, 1, 0).Pkt
}

// TestPrefetchFindsEntries: the batch pass keys packets as Track does, so
// it finds the entries of tracked flows in both directions (IPv4 and IPv6,
// UDP and TCP); it skips what it cannot key (ICMP, non-first fragments,
// nil slots, packets already NOTRACKed) and changes nothing.
func TestPrefetchFindsEntries(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	r.udp("10.0.1.2", "10.0.2.2", 1000, 53)
	r.send(echo("10.0.1.2", "10.0.2.2", 8, 7))
	r.tcp(cs(syn, 1, 0, 0))
	v6 := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "fd00::1", Dst: "fd00::2", SrcPort: 5, DstPort: 6}
	r.send(v6.Bytes())
	before := r.table.Count()

	v6r := v6
	v6r.Src, v6r.Dst, v6r.SrcPort, v6r.DstPort = v6.Dst, v6.Src, v6.DstPort, v6.SrcPort
	frag := udp("10.0.1.2", "10.0.2.2", 1000, 53)
	frag[7] = 10 // fragment offset 80
	notrack := packetOf(t, udp("10.0.1.2", "10.0.2.2", 1000, 53))
	notrack.CTInfo = pipeline.CTUntracked
	pkts := []*pipeline.Packet{
		packetOf(t, udp("10.0.1.2", "10.0.2.2", 1000, 53)), // found
		packetOf(t, udp("10.0.2.2", "10.0.1.2", 53, 1000)), // found: the reply direction
		nil,
		packetOf(t, udp("10.0.1.2", "10.0.2.2", 1001, 53)), // no such flow
		packetOf(t, echo("10.0.1.2", "10.0.2.2", 8, 7)),    // ICMP: not keyed
		packetOf(t, r.tcpBytes(cs(syn|ack, 1, 0, 0))),      // found (TCP)
		packetOf(t, v6.Bytes()),                            // found
		packetOf(t, v6r.Bytes()),                           // found
		packetOf(t, frag),                                  // not keyed
		notrack,                                            // not looked at
	}
	if got := r.table.prefetch(pkts); got != 5 {
		t.Errorf("prefetch found %d entries, want 5", got)
	}
	if r.table.Count() != before {
		t.Errorf("prefetch changed the table: %d entries, was %d", r.table.Count(), before)
	}
	for _, p := range pkts {
		if p != nil && p != notrack && (p.ConnTrack != 0 || p.CTInfo != pipeline.CTNone) {
			t.Errorf("prefetch set a packet's state")
		}
	}
	// More than a chunk: every chunk is looked at.
	many := make([]*pipeline.Packet, 0, 3*prefetchChunk)
	for i := 0; i < 3*prefetchChunk; i++ {
		many = append(many, pkts[i%2])
	}
	if got := r.table.prefetch(many); got != len(many) {
		t.Errorf("prefetch over %d packets found %d", len(many), got)
	}
}

// FuzzPrefetch: whatever the bytes, the batch pass reads within them and
// never panics.
func FuzzPrefetch(f *testing.F) {
	f.Add(udp("10.0.1.2", "10.0.2.2", 1, 2))
	f.Add(filtertest.Packet{IPv6: true, Proto: filtertest.TCP}.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRig(t, 8, DefaultTCP())
		for _, np := range []pipeline.NetworkProtocolNumber{pipeline.IPv4ProtocolNumber, pipeline.IPv6ProtocolNumber} {
			pkt := pipeline.DefaultPool.Get(len(b))
			if pkt == nil || !pkt.SetData(b) {
				if pkt != nil {
					pkt.Release()
				}
				return
			}
			pkt.SetNetworkHeader()
			pkt.NetProto = np
			r.table.prefetch([]*pipeline.Packet{pkt})
			pc := &pipeline.PacketContext{Hook: pipeline.Prerouting, Pkt: pkt}
			if pipeline.ParseTuple(nil, pkt, pc) {
				r.tr.Track(r.now(), pc)
				r.table.prefetch([]*pipeline.Packet{pkt})
			}
			pkt.Release()
		}
	})
}
