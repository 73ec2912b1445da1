package conntrack

import (
	"encoding/binary"
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// fragments4At cuts an IPv4 packet into fragments of at most size bytes.
func fragments4At(b []byte, size int) [][]byte {
	hl := int(b[0]&0xf) * 4
	pay := b[hl:]
	per := (size - hl) &^ 7
	var out [][]byte
	for off := 0; off < len(pay); off += per {
		n := min(per, len(pay)-off)
		f := append(append([]byte(nil), b[:hl]...), pay[off:off+n]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		v := uint16(off / 8)
		if off+n < len(pay) {
			v |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], v)
		f[10], f[11] = 0, 0
		var sum uint32
		for i := 0; i < hl; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(f[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(f[10:], ^uint16(sum))
		out = append(out, f)
	}
	return out
}

// inLargeBuffers makes packets of frames in large (GSO-sized) buffers, as a
// TUN or AF_PACKET link reads them.
func inLargeBuffers(pool *pipeline.Pool, frames [][]byte) []*pipeline.Packet {
	var out []*pipeline.Packet
	for _, f := range frames {
		p := pool.Get(pipeline.LargeDataSize)
		buf, _ := p.Append(len(f))
		copy(buf, f)
		out = append(out, p)
	}
	return out
}

// TestDefragLargeBuffers: fragments read into large buffers (TUN,
// AF_PACKET) are copied into small ones for reassembly; the datagram
// their last one completes may come from the pool in the very *Packet that
// fragment was — it was taken for the fragment itself ("not a fragment")
// and tracked INVALID, so on real links every defragmented datagram was
// dropped by --ctstate INVALID -j DROP (IPv4 and IPv6).
func TestDefragLargeBuffers(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	pool := rr.n.Stack.Pool()
	p4 := filtertest.Packet{Proto: filtertest.ICMP, Src: "10.0.1.2", Dst: "10.0.2.2", ICMPType: 8, Payload: 3000}.Bytes()
	p6 := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", ICMPType: 128, Payload: 3000}.Bytes()
	for i, frames := range [][][]byte{fragments4At(p4, 1500), fragments6(p6, 9, 1500)} {
		for round := 0; round < 3; round++ {
			rr.a.InjectPackets(inLargeBuffers(pool, frames))
			if out := pipelinetest.Drain(rr.b); len(out) != 3 {
				t.Fatalf("family %d round %d: %v out, want the 3 fragments (%s)", 4+2*i, round, sizes(out), rr.n.DumpCounters())
			}
		}
	}
	if c := rr.n.Counter("conntrack", "invalid"); c != 0 {
		t.Fatalf("invalid %d", c)
	}
}
