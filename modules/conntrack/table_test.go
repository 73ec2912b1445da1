package conntrack

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
)

func (r *rig) udp(src, dst string, sport, dport uint16) (pipeline.CTInfo, pipeline.Verdict) {
	r.t.Helper()
	pc := filtertest.ContextOf(r.t, udp(src, dst, sport, dport), 0, pipeline.Prerouting, 1, 0)
	v := r.tr.Track(r.now(), pc)
	r.tr.Confirm(pc.Pkt)
	r.last = pc
	return pc.Pkt.CTInfo, v
}

func TestUDPUnrepliedAndStream(t *testing.T) {
	r := newRig(t, 16, DefaultTCP())
	if info, _ := r.udp("10.0.1.2", "10.0.2.2", 1, 2); info != newS {
		t.Fatalf("first datagram %#x", info)
	}
	if got := r.entry().Expires().Sub(r.clock.Now()); got != 30*time.Second {
		t.Fatalf("unreplied timeout %v", got)
	}
	if info, _ := r.udp("10.0.1.2", "10.0.2.2", 1, 2); info != newS {
		t.Fatalf("second datagram before a reply %#x, want NEW", info)
	}
	if info, _ := r.udp("10.0.2.2", "10.0.1.2", 2, 1); info != estR {
		t.Fatalf("reply %#x", info)
	}
	if r.entry().Status()&StatusAssured != 0 {
		t.Fatal("assured at once (Linux waits 2 s for a stream)")
	}
	r.advance(3 * time.Second)
	if info, _ := r.udp("10.0.1.2", "10.0.2.2", 1, 2); info != estO {
		t.Fatalf("after the reply %#x, want ESTABLISHED", info)
	}
	e := r.entry()
	if e.Status()&StatusAssured == 0 || e.Expires().Sub(r.clock.Now()) != 120*time.Second {
		t.Fatalf("stream: status %#x timeout %v", e.Status(), e.Expires().Sub(r.clock.Now()))
	}
	r.advance(121 * time.Second)
	if r.table.Count() != 0 {
		t.Fatal("stream not expired after 120 s")
	}
	if info, _ := r.udp("10.0.2.2", "10.0.1.2", 2, 1); info != newS {
		t.Fatalf("after expiry the reply direction is a new flow: %#x", info)
	}
}

func TestICMPEchoTracked(t *testing.T) {
	r := newRig(t, 16, DefaultTCP())
	send := func(b []byte) pipeline.CTInfo {
		pc := filtertest.ContextOf(t, b, 0, pipeline.Prerouting, 1, 0)
		r.tr.Track(r.now(), pc)
		r.tr.Confirm(pc.Pkt)
		r.last = pc
		return pc.Pkt.CTInfo
	}
	if got := send(echo("10.0.1.2", "10.0.2.2", 8, 5)); got != newS {
		t.Fatalf("request %#x", got)
	}
	if got := send(echo("10.0.2.2", "10.0.1.2", 0, 5)); got != estR {
		t.Fatalf("reply %#x", got)
	}
	if got := send(echo("10.0.2.2", "10.0.1.2", 0, 6)); got != inval {
		t.Fatalf("reply of another id %#x, want INVALID", got)
	}
	if got := send(echo("10.0.1.2", "10.0.2.2", 5, 0)); got != inval { // redirect with nothing quoted
		t.Fatalf("short error %#x, want INVALID", got)
	}
	// A time exceeded from a router on the way, about the request:
	// RELATED in the reply direction.
	q := echo("10.0.1.2", "10.0.2.2", 8, 5)
	if got := send(icmpError("10.0.9.9", "10.0.1.2", 11, 0, q)); got != pipeline.CTRelated|pipeline.CTReply {
		t.Fatalf("time exceeded %#x, want RELATED reply", got)
	}
	r.advance(31 * time.Second)
	if r.table.Count() != 0 {
		t.Fatal("ICMP flow not expired after 30 s")
	}
}

func TestGenericProtocol(t *testing.T) {
	r := newRig(t, 16, DefaultTCP())
	gre := func(src, dst string) []byte { return filtertest.Packet{Proto: 47, Src: src, Dst: dst}.Bytes() }
	for _, c := range []struct {
		b    []byte
		want pipeline.CTInfo
	}{{gre("10.0.1.2", "10.0.2.2"), newS}, {gre("10.0.2.2", "10.0.1.2"), estR}, {gre("10.0.1.2", "10.0.2.2"), estO}} {
		pc := filtertest.ContextOf(t, c.b, 0, pipeline.Prerouting, 1, 0)
		r.tr.Track(r.now(), pc)
		if pc.Pkt.CTInfo != c.want {
			t.Fatalf("%#x, want %#x", pc.Pkt.CTInfo, c.want)
		}
		r.last = pc
	}
	if got := r.entry().Expires().Sub(r.clock.Now()); got != 600*time.Second {
		t.Fatalf("generic timeout %v", got)
	}
}

func TestEarlyDropAtMax(t *testing.T) {
	r := newRig(t, 4, DefaultTCP())
	// Two assured flows (replied UDP after 2 s) and two unreplied ones.
	for p := uint16(1); p <= 2; p++ {
		r.udp("10.0.1.2", "10.0.2.2", p, 53)
		r.udp("10.0.2.2", "10.0.1.2", 53, p)
	}
	r.advance(3 * time.Second)
	for p := uint16(1); p <= 2; p++ {
		r.udp("10.0.1.2", "10.0.2.2", p, 53)
		if r.entry().Status()&StatusAssured == 0 {
			t.Fatal("not assured")
		}
	}
	r.udp("10.0.1.2", "10.0.2.2", 3, 53)
	r.udp("10.0.1.2", "10.0.2.2", 4, 53)
	if r.table.Count() != 4 {
		t.Fatalf("%d entries", r.table.Count())
	}
	// Full: each new flow evicts an unreplied one, never an assured one.
	for p := uint16(10); p < 20; p++ {
		if _, v := r.udp("10.0.1.2", "10.0.2.2", p, 53); v != pipeline.VerdictAccept {
			t.Fatalf("new flow %d dropped with unreplied entries to evict", p)
		}
	}
	if r.table.Count() != 4 {
		t.Fatalf("%d entries, want 4", r.table.Count())
	}
	for p := uint16(1); p <= 2; p++ {
		if info, _ := r.udp("10.0.2.2", "10.0.1.2", 53, p); info != estR {
			t.Fatalf("assured flow %d was evicted", p)
		}
	}
	// Only assured entries left: a new flow is dropped (table full).
	var left []uint16
	r.table.Each(func(_ Ref, e *Entry) bool {
		if e.Status()&StatusAssured == 0 {
			left = append(left, e.Tuple(0).SPort)
		}
		return true
	})
	if len(left) != 2 {
		t.Fatalf("unassured entries %v", left)
	}
	for _, p := range left {
		r.udp("10.0.2.2", "10.0.1.2", 53, p)
	}
	r.advance(3 * time.Second)
	for _, p := range left {
		r.udp("10.0.1.2", "10.0.2.2", p, 53)
	}
	if _, v := r.udp("10.0.1.2", "10.0.2.2", 99, 53); v != pipeline.VerdictDrop {
		t.Fatalf("verdict %d with only assured entries, want drop", v)
	}
}

func TestStaleReference(t *testing.T) {
	r := newRig(t, 1, DefaultTCP())
	r.udp("10.0.1.2", "10.0.2.2", 1, 2)
	old := Ref(r.last.Pkt.ConnTrack)
	r.udp("10.0.1.2", "10.0.2.2", 3, 4) // evicts and reuses the one slot
	if r.table.Entry(old) != nil {
		t.Fatal("a reference to the freed entry resolves to the new flow")
	}
	if i1, _ := old.index(); i1 != func() uint32 { i, _ := Ref(r.last.Pkt.ConnTrack).index(); return i }() {
		t.Fatal("the one slot was not reused")
	}
}

// FuzzTrack: any bytes as an IPv4 or IPv6 packet through the tracker (and
// a few replies built from it) never panic, and the table stays within
// its maximum.
func FuzzTrack(f *testing.F) {
	r := &rig{}
	f.Add(r.tcpBytes(cs(syn, 1, 0, 0)), uint8(0))
	f.Add(udp("10.0.1.2", "10.0.2.2", 1, 2), uint8(1))
	f.Add(icmpError("10.0.2.2", "10.0.1.2", 3, 3, udp("10.0.1.2", "10.0.2.2", 1, 2)), uint8(2))
	f.Add(filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, ICMPType: 1, Payload: 48}.Bytes(), uint8(3))
	// An ICMPv6 error quoting a packet with a hop-by-hop header, cut.
	q6 := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, ICMPType: 1, Payload: 44}.Bytes()
	q6[48], q6[54], q6[52], q6[53] = 0x60, 0, 0xfd, 0xe8
	f.Add(q6, uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, op uint8) {
		r := newRig(t, 8, DefaultTCP())
		if op&1 != 0 {
			r.tr.tcp.BeLiberal = true
		}
		for i := 0; i < 3; i++ {
			pkt := pipeline.DefaultPool.Get(len(b))
			if pkt == nil || !pkt.SetData(b) {
				if pkt != nil {
					pkt.Release()
				}
				return
			}
			pkt.SetNetworkHeader()
			pkt.NetProto = pipeline.IPv4ProtocolNumber
			if len(b) > 0 && b[0]>>4 == 6 {
				pkt.NetProto = pipeline.IPv6ProtocolNumber
			}
			pc := &pipeline.PacketContext{Hook: pipeline.Prerouting, Pkt: pkt}
			if pipeline.ParseTuple(nil, pkt, pc) {
				r.tr.Track(r.now(), pc)
				r.tr.Confirm(pkt)
			}
			pkt.Release()
			// Swap addresses and ports: the reply direction.
			if len(b) >= 24 && b[0]>>4 == 4 {
				c := append([]byte(nil), b...)
				copy(c[12:16], b[16:20])
				copy(c[16:20], b[12:16])
				if hl := int(b[0]&0xf) * 4; hl+4 <= len(c) && hl >= 20 {
					binary.BigEndian.PutUint16(c[hl:], binary.BigEndian.Uint16(b[hl+2:]))
					binary.BigEndian.PutUint16(c[hl+2:], binary.BigEndian.Uint16(b[hl:]))
				}
				b = c
			}
			r.advance(time.Duration(op) * time.Second)
		}
		if n := r.table.Count(); n < 0 || n > 8 {
			t.Fatalf("count %d", n)
		}
	})
}

// TestMemoryPerEntry: an entry, its two buckets and its lock (the
// module's default: two buckets per entry, as many locks as entries) stay
// under Linux's ~300 bytes; the fields a UDP packet touches sit in the
// first three cache lines.
func TestMemoryPerEntry(t *testing.T) {
	var e Entry
	per := unsafe.Sizeof(e) + 2*unsafe.Sizeof(bucket{}) + unsafe.Sizeof(sync.Mutex{})
	if per > 300 {
		t.Fatalf("%d bytes per entry", per)
	}
	if unsafe.Sizeof(e)%64 != 0 {
		t.Fatalf("entry of %d bytes: not a whole number of cache lines (entries would straddle them)", unsafe.Sizeof(e))
	}
	if end := unsafe.Offsetof(e.reply) + unsafe.Sizeof(e.reply); end > 192 {
		t.Fatalf("the counters end at byte %d, past the third cache line", end)
	}
	t.Logf("%d bytes per entry (entry %d, two buckets of %d, a lock of %d)", per, unsafe.Sizeof(e), unsafe.Sizeof(bucket{}), unsafe.Sizeof(sync.Mutex{}))
}

// TestQuotedIPv6Cut: an ICMPv6 error quoting an IPv6 packet with an
// extension header cut short of what its Payload Length says is INVALID,
// and a well-formed quote through a hop-by-hop header is walked. (The
// panic the whole-stack fuzzer found — wire.IPv6.WalkExtensions on such a
// quote sliced past the buffer — is reproduced by its seed
// stackfuzz/testdata/fuzz/FuzzStack/00c1430ebe79c391, run by go test.)
func TestQuotedIPv6Cut(t *testing.T) {
	r := newRig(t, 16, DefaultTCP())
	inner := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", SrcPort: 5, DstPort: 6}.Bytes()
	r.send(inner) // the flow
	// The same datagram with an 8-byte hop-by-hop header in front of UDP.
	hbh := append(append(append([]byte(nil), inner[:40]...), 17, 0, 1, 4, 0, 0, 0, 0), inner[40:]...)
	hbh[6] = 0
	binary.BigEndian.PutUint16(hbh[4:], uint16(len(hbh)-40))
	mk := func(q []byte) []byte {
		e := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: "2001:db8:2::2", Dst: "2001:db8:1::2", ICMPType: 1, Payload: len(q)}.Bytes()
		copy(e[48:], q)
		return e
	}
	if got := r.send(mk(hbh)); got != pipeline.CTRelated|pipeline.CTReply {
		t.Fatalf("quote through hop-by-hop: %#x, want RELATED reply", got)
	}
	cut := append([]byte(nil), hbh[:44]...) // the hop-by-hop header cut
	binary.BigEndian.PutUint16(cut[4:], 65000)
	if got := r.send(mk(cut)); got != inval {
		t.Fatalf("cut quote: %#x, want INVALID", got)
	}
}
