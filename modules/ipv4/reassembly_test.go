package ipv4_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// fragmentWith builds one fragment of pkt carrying data at byte offset
// off, with options in its header.
func fragmentWith(pkt []byte, off int, data []byte, mf bool, opts []byte) []byte {
	h := wire.IPv4(pkt)
	hl := wire.IPv4HeaderSize(len(opts))
	f := make([]byte, hl+len(data))
	var flags uint8
	if mf {
		flags = wire.IPv4FlagMoreFragments
	}
	wire.IPv4(f).Encode(&wire.IPv4Fields{TOS: h.TOS(), TotalLength: uint16(len(f)), ID: h.ID(), TTL: h.TTL(),
		Protocol: h.Protocol(), Src: h.Src(), Dst: h.Dst(), Flags: flags, FragmentOffset: uint16(off), Options: opts})
	copy(f[hl:], data)
	return f
}

// maxFragments are the fragments of a datagram whose data ends at 65515
// bytes — the most a 20-byte header allows — in pieces of 1480, the first
// one with opts in its header.
func maxFragments(id uint16, opts []byte) [][]byte {
	const end = 0xffff - wire.IPv4MinimumSize
	orig := bigUDP("10.0.1.2", "10.0.1.1", id, 2000)
	data := make([]byte, end)
	copy(data, wire.IPv4(orig).Payload())
	var out [][]byte
	for off := 0; off < end; off += 1480 {
		n := min(1480, end-off)
		var o []byte
		if off == 0 {
			o = opts
		}
		out = append(out, fragmentWith(orig, off, data[off:off+n], off+n < end, o))
	}
	return out
}

// The bound of a reassembled datagram is the first fragment's header plus
// the data: a first fragment with 40 bytes of options and plain fragments
// whose data ends at 65515 would make a 65575-byte datagram (its Total
// Length wrapping to 39). It is dropped as too big, every fragment counted
// in the link's RX dropped. The same fragments with a plain first one make
// a 65535-byte datagram, delivered.
func TestReassemblyFirstFragmentOptionsTooBig(t *testing.T) {
	l, col := reasmLab(t, "network.ipv4")
	nops := bytes.Repeat([]byte{wire.IPv4OptionNOP}, 40)
	frags := maxFragments(90, nops)
	for _, f := range frags {
		l.inject(l.a, f)
	}
	if col.Len() != 0 {
		t.Fatalf("delivered a datagram past 65535 bytes (%d bytes)", len(col.Wait(t, 0)))
	}
	l.wantCounters(t, map[string]uint64{"reasm_too_big": 1, "reasm_ok": 0, "reasm_fragments": uint64(len(frags))})
	if got := rxDropped(t, l, "a"); got != uint64(len(frags)) {
		t.Errorf("link a RX dropped %d, want %d (every fragment)", got, len(frags))
	}
	assertReasmEmpty(t, l)

	frags = maxFragments(91, nil)
	l.inject(l.a, frags...)
	got := col.Wait(t, 0)
	if len(got) != 0xffff || wire.IPv4(got).TotalLength() != 0xffff {
		t.Fatalf("delivered %d bytes, want the 65535-byte datagram", len(got))
	}
	l.wantCounters(t, map[string]uint64{"reasm_too_big": 1, "reasm_ok": 1})
}

func rxDropped(t *testing.T, l *lab, link string) uint64 {
	t.Helper()
	nic, ok := l.r.Stack.NIC(link)
	if !ok {
		t.Fatalf("no link %s", link)
	}
	return nic.Stats.RxDropped.Load()
}

// Every fragment reassembly refuses or discards counts in its link's RX
// dropped as well as under its reason.
func TestReassemblyDropsCountInRxDropped(t *testing.T) {
	orig := bigUDP("10.0.1.2", "10.0.1.1", 60, 3000)
	pl := wire.IPv4(orig).Payload()
	frags := fragmentsOf(orig, 1000, 1000)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		wait   time.Duration // then advance the clock
		reason string
		count  uint64 // of reason
		drops  uint64 // RX dropped
	}{
		{"duplicate", [][]byte{frags[0], frags[0], frags[1]}, 0, "reasm_duplicate", 1, 1},
		{"malformed", [][]byte{fragment(orig, 0, pl[:1001], true)}, 0, "reasm_malformed", 1, 1},
		{"too big", [][]byte{fragment(orig, 65528, pl[:100], false)}, 0, "reasm_too_big", 1, 1},
		{"timed out", [][]byte{frags[0], frags[2]}, 31 * time.Second, "reasm_timeout", 1, 2},
		{"overlap", [][]byte{frags[0], frags[2], fragment(orig, 992, pl[992:2000], true)}, 0, "reasm_overlap", 1, 3},
		{"inconsistent", [][]byte{frags[2], fragment(orig, 1000, pl[1000:1504], false)}, 0, "reasm_inconsistent", 1, 2},
		{"after overlap", [][]byte{frags[0], fragment(orig, 992, pl[992:2000], true), frags[2]}, 0, "reasm_discarded", 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, col := reasmLab(t, "network.ipv4")
			for _, f := range tc.frames {
				l.inject(l.a, f)
			}
			if tc.wait > 0 {
				l.clock.Advance(tc.wait)
			}
			if col.Len() != 0 {
				t.Fatal("delivered a datagram")
			}
			if got := l.counter(tc.reason); got != tc.count {
				t.Errorf("%s %d, want %d", tc.reason, got, tc.count)
			}
			if got := rxDropped(t, l, "a"); got != tc.drops {
				t.Errorf("RX dropped %d, want %d (%s)", got, tc.drops, l.r.DumpCounters())
			}
		})
	}
}

// Datagrams evicted to make room (a source over its share) count each of
// their fragments in the link's RX dropped.
func TestReassemblyEvictionCountsInRxDropped(t *testing.T) {
	l, _ := reasmLab(t, "{module: network.ipv4, reassembly: {max_memory: 524288, per_source_memory: 131072}}")
	for id := uint16(100); id < 200; id++ {
		orig := bigUDP("10.0.1.2", "10.0.1.1", id, 3000)
		l.inject(l.a, fragmentsOf(orig, 1000)[0]) // one held fragment each
	}
	evicted := l.counter("reasm_source_limit")
	if evicted == 0 {
		t.Fatalf("nothing evicted (%s)", l.r.DumpCounters())
	}
	if got := rxDropped(t, l, "a"); got != evicted {
		t.Errorf("RX dropped %d, want %d (one fragment per evicted datagram)", got, evicted)
	}
}
