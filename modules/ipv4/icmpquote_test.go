package ipv4_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// An ICMP error must quote the whole IPv4 header of the offending packet
// and 8 bytes after it: one that quotes less (a truncated header, a header
// length below 20) is malformed, counted and dropped — not handed to an
// ICMP transport nor to the quoted packet's. A complete quote is handed on.
func TestICMPErrorTruncatedQuote(t *testing.T) {
	name := pt.UniqueName(t) + "-icmp"
	l := newLab(t, "network.ipv4, {module: transport.collect, protocol: 1, name: "+name+"}")
	col := pt.Collected(name)
	orig := pt.UDP4("10.0.1.1", "10.0.1.2", 4000, 53, 64, []byte("query"))
	errorQuoting := func(q []byte) []byte {
		msg := make([]byte, wire.ICMPv4MinimumSize+len(q))
		wire.ICMPv4(msg).Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4DstUnreachable, Code: wire.ICMPv4PortUnreachable})
		copy(msg[wire.ICMPv4MinimumSize:], q)
		wire.ICMPv4(msg).SetChecksum(wire.ICMPv4(msg).CalculateChecksum())
		return icmpPacket("10.0.1.2", "10.0.1.1", 64, msg)
	}
	badIHL := append([]byte(nil), orig[:28]...)
	badIHL[0] = 0x44
	for i, q := range [][]byte{orig[:8], orig[:20], orig[:27], badIHL} {
		l.inject(l.a, errorQuoting(q))
		if col.Len() != 0 {
			t.Fatalf("quote %d (%d bytes) handed on", i, len(q))
		}
	}
	l.wantCounters(t, map[string]uint64{"icmp_malformed": 4})
	if got := rxDropped(t, l, "a"); got != 4 {
		t.Errorf("RX dropped %d, want 4", got)
	}
	l.inject(l.a, errorQuoting(orig[:28]))
	if col.Len() != 1 {
		t.Fatal("an error with a complete quote not handed on")
	}
	l.wantCounters(t, map[string]uint64{"icmp_malformed": 4})
}
