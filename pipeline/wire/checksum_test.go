package wire

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// naiveChecksum is the RFC 1071 reference: big-endian 16-bit words, end-around
// carry, odd byte padded with zero, added to initial, not inverted.
func naiveChecksum(b []byte, initial uint16) uint16 {
	sum := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func TestChecksumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2000)
	for i := 0; i < 20000; i++ {
		n := r.IntN(2001)
		b := buf[:n]
		switch i % 4 {
		case 0: // random
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		case 1: // all 0xff: maximal carries
			for j := range b {
				b[j] = 0xff
			}
		case 2: // all zero
			clear(b)
		case 3: // sparse
			clear(b)
			for k := 0; k < 3 && n > 0; k++ {
				b[r.IntN(n)] = byte(r.Uint32())
			}
		}
		// also check unaligned starts
		off := 0
		if n > 0 {
			off = r.IntN(min(n, 8))
		}
		initial := uint16(r.Uint32())
		if i%7 == 0 {
			initial = [...]uint16{0, 0xffff, 1, 0xfffe}[i%4]
		}
		if got, want := Checksum(b[off:], initial), naiveChecksum(b[off:], initial); got != want {
			t.Fatalf("len %d off %d initial %#04x: Checksum = %#04x, naive = %#04x", n, off, initial, got, want)
		}
	}
}

func TestChecksumKnown(t *testing.T) {
	// RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0xddf2 {
		t.Errorf("RFC 1071 example: got %#04x, want 0xddf2", got)
	}
	if got := Checksum(nil, 0); got != 0 {
		t.Errorf("empty: got %#04x", got)
	}
	if got := Checksum([]byte{0xab}, 0); got != 0xab00 {
		t.Errorf("odd byte: got %#04x, want 0xab00", got)
	}
	// Discontiguous pieces with even leading lengths chain through initial.
	b := frameICMPEcho
	if got, want := Checksum(b[10:], Checksum(b[:10], 0)), Checksum(b, 0); got != want {
		t.Errorf("chained %#04x, whole %#04x", got, want)
	}
}

func TestChecksumCombine(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 10000; i++ {
		a, b := uint16(r.Uint32()), uint16(r.Uint32())
		if got, want := ChecksumCombine(a, b), naiveChecksum([]byte{byte(b >> 8), byte(b)}, a); got != want {
			t.Fatalf("ChecksumCombine(%#x, %#x) = %#x, want %#x", a, b, got, want)
		}
	}
	if got := ChecksumCombine(0xffff, 0xffff); got != 0xffff {
		t.Errorf("ffff+ffff = %#x", got)
	}
	if got := ChecksumCombine(0xffff, 1); got != 1 {
		t.Errorf("ffff+1 = %#x", got)
	}
}

func TestPseudoHeaderChecksum(t *testing.T) {
	// The captured partial sums are what Linux computed for the pseudo-header.
	ip, udp := l4Of(frameDNSQuery)
	if got := IPv4PseudoChecksum(ip, uint16(len(udp))); got != dnsQueryPartialChecksum {
		t.Errorf("UDP pseudo = %#04x, captured %#04x", got, dnsQueryPartialChecksum)
	}
	ip, tcp := l4Of(frameTCPSyn)
	if got := PseudoHeaderChecksum(ProtocolTCP, ip.SrcSlice(), ip.DstSlice(), uint16(len(tcp))); got != tcpSynPartialChecksum {
		t.Errorf("TCP pseudo = %#04x, captured %#04x", got, tcpSynPartialChecksum)
	}
	// IPv6: compare with the explicit pseudo-header layout of RFC 8200 §8.1.
	src := mustHex("20010db8000000000000000000000001")
	dst := mustHex("20010db80000000000000000000000ff")
	ph := append(append(append([]byte{}, src...), dst...), 0, 0, 0x05, 0xdc, 0, 0, 0, ProtocolUDP)
	if got, want := PseudoHeaderChecksum(ProtocolUDP, src, dst, 1500), naiveChecksum(ph, 0); got != want {
		t.Errorf("IPv6 pseudo = %#04x, want %#04x", got, want)
	}
}

// randomIPv4 returns a random IPv4 header with options and a valid checksum.
func randomIPv4(r *rand.Rand) IPv4 {
	opts := make([]byte, 4*r.IntN(11))
	for i := range opts {
		opts[i] = byte(r.Uint32())
	}
	hl := IPv4HeaderSize(len(opts))
	b := IPv4(make([]byte, hl))
	b.Encode(&IPv4Fields{
		TOS:         uint8(r.Uint32()),
		TotalLength: uint16(hl),
		ID:          uint16(r.Uint32()),
		Flags:       uint8(r.IntN(8)),
		TTL:         uint8(r.Uint32()),
		Protocol:    uint8(r.Uint32()),
		Src:         [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())},
		Dst:         [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())},
		Options:     opts,
	})
	b.SetFlagsFragmentOffset(uint8(r.IntN(8)), uint16(r.Uint32()))
	b.SetChecksum(b.CalculateChecksum())
	return b
}

// forceChecksum sets the ID so that the header checksum becomes want
// (want != 0xffff), then stores it.
func forceChecksum(b IPv4, want uint16) {
	b.SetID(0)
	s := ^b.CalculateChecksum() // sum without ID; we need s + id == ^want
	b.SetID(ChecksumCombine(^want, ^s))
	b.SetChecksum(b.CalculateChecksum())
}

func TestChecksumUpdate16(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	corner := []uint16{0x0000, 0xffff, 0x0001, 0xfffe, 0x8000}
	zeroBefore, zeroAfter := 0, 0
	for i := 0; i < 100000; i++ {
		b := randomIPv4(r)
		switch i % 5 {
		case 1: // stored checksum 0x0000 before the update
			forceChecksum(b, 0)
		case 2: // a result of 0x0000 after the update: fixed below
		}
		// word index among the 16-bit words, skipping the checksum (word 5)
		w := r.IntN(len(b)/2 - 1)
		if w >= 5 {
			w++
		}
		if i%5 == 2 && w == 2 {
			w = 3 // keep ID free for forcing
		}
		old := binary.BigEndian.Uint16(b[2*w:])
		nw := uint16(r.Uint32())
		if i%3 == 0 {
			nw = corner[r.IntN(len(corner))]
		}
		if i%11 == 0 && w != 0 {
			old = corner[r.IntN(len(corner))]
			binary.BigEndian.PutUint16(b[2*w:], old)
			b.SetChecksum(b.CalculateChecksum())
		}
		if w == 0 {
			nw = nw&0x00ff | uint16(b[0])<<8 // keep version/IHL sane
		}
		if i%5 == 2 && w != 2 {
			// choose the ID so that the checksum after the update is 0x0000
			binary.BigEndian.PutUint16(b[2*w:], nw)
			forceChecksum(b, 0)
			binary.BigEndian.PutUint16(b[2*w:], old)
			b.SetChecksum(b.CalculateChecksum())
		}
		before := b.Checksum()
		binary.BigEndian.PutUint16(b[2*w:], nw)
		got := ChecksumUpdate16(before, old, nw)
		if want := b.CalculateChecksum(); got != want {
			t.Fatalf("word %d %#04x->%#04x, checksum %#04x: incremental %#04x, recomputed %#04x\n% x",
				w, old, nw, before, got, want, []byte(b))
		}
		if before == 0 {
			zeroBefore++
		}
		if got == 0 {
			zeroAfter++
		}
	}
	if zeroBefore < 1000 || zeroAfter < 1000 {
		t.Fatalf("0x0000 corners exercised too rarely: before %d, after %d", zeroBefore, zeroAfter)
	}
}

func TestChecksumUpdate16Corners(t *testing.T) {
	// An IPv4 header whose checksum is 0x0000, and updates that produce
	// 0x0000; 0xffff never appears for a header that is not all zero.
	r := rand.New(rand.NewPCG(7, 8))
	sawZeroBefore, sawZeroAfter := 0, 0
	for i := 0; i < 2000; i++ {
		b := randomIPv4(r)
		forceChecksum(b, 0)
		if b.Checksum() != 0 || !b.IsChecksumValid() {
			t.Fatalf("forceChecksum failed: %#04x", b.Checksum())
		}
		sawZeroBefore++
		old := b.TTL()
		b.SetTTL(old + 1)
		got := ChecksumUpdate16(0, uint16(old)<<8|uint16(b.Protocol()), uint16(old+1)<<8|uint16(b.Protocol()))
		if want := b.CalculateChecksum(); got != want {
			t.Fatalf("from 0x0000: incremental %#04x, recomputed %#04x", got, want)
		}
		// back to zero
		b.SetChecksum(got)
		got = ChecksumUpdate16(got, uint16(old+1)<<8|uint16(b.Protocol()), uint16(old)<<8|uint16(b.Protocol()))
		b.SetTTL(old)
		if want := b.CalculateChecksum(); got != want || got != 0 {
			t.Fatalf("to 0x0000: incremental %#04x, recomputed %#04x", got, want)
		}
		sawZeroAfter++
	}
	if sawZeroBefore == 0 || sawZeroAfter == 0 {
		t.Fatal("corner cases not exercised")
	}
	// m and m' both "zero" in one's complement: no change.
	if got := ChecksumUpdate16(0x1234, 0xffff, 0x0000); got != 0x1234 {
		t.Errorf("0xffff->0x0000 changed the checksum to %#04x", got)
	}
	if got := ChecksumUpdate16(0x1234, 0x0000, 0xffff); got != 0x1234 {
		t.Errorf("0x0000->0xffff changed the checksum to %#04x", got)
	}
}

func TestChecksumUpdate32(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 50000; i++ {
		b := randomIPv4(r)
		if i%4 == 0 {
			forceChecksum(b, 0)
		}
		old := binary.BigEndian.Uint32(b.SrcSlice())
		nw := r.Uint32()
		switch i % 5 {
		case 1:
			nw = 0
		case 2:
			nw = 0xffffffff
		case 3:
			nw = old ^ 0xffff
		}
		before := b.Checksum()
		binary.BigEndian.PutUint32(b.SrcSlice(), nw)
		got := ChecksumUpdate32(before, old, nw)
		if want := b.CalculateChecksum(); got != want {
			t.Fatalf("src %#08x->%#08x: incremental %#04x, recomputed %#04x", old, nw, got, want)
		}
	}
}

// fillPattern fills b by kind: random, all 0xff (maximal carries), zero.
func fillPattern(r *rand.Rand, b []byte, kind int) {
	for j := range b {
		switch kind {
		case 0:
			b[j] = byte(r.Uint32())
		case 1:
			b[j] = 0xff
		default:
			b[j] = 0
		}
	}
}

// TestCopyChecksum: CopyChecksum copies what copy copies and returns
// Checksum of the copy, for every length 0..300 at every source and
// destination offset 0..7, for long buffers, and for a destination
// shorter or longer than the source; bytes around the copy stay as they
// were.
func TestCopyChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(dst, src []byte, initial uint16) {
		t.Helper()
		guard := make([]byte, len(dst)+16)
		fillPattern(r, guard, 0)
		d := guard[8 : 8+len(dst) : 8+len(dst)]
		copy(d, dst)
		before := append([]byte(nil), guard...)
		want := make([]byte, len(dst))
		copy(want, dst)
		wn := copy(want, src)
		n, sum := CopyChecksum(d, src, initial)
		if n != wn {
			t.Fatalf("len dst %d src %d: copied %d, want %d", len(dst), len(src), n, wn)
		}
		if !bytes.Equal(d, want) {
			t.Fatalf("len dst %d src %d: the bytes copied differ from copy's", len(dst), len(src))
		}
		if !bytes.Equal(guard[:8], before[:8]) || !bytes.Equal(guard[8+len(dst):], before[8+len(dst):]) {
			t.Fatalf("len dst %d src %d: a byte outside dst changed", len(dst), len(src))
		}
		if w := Checksum(want[:n], initial); sum != w {
			t.Fatalf("len %d initial %#04x: CopyChecksum sum %#04x, Checksum %#04x", n, initial, sum, w)
		}
	}
	src := make([]byte, 300+8)
	dst := make([]byte, 300+8)
	for n := 0; n <= 300; n++ {
		for so := 0; so < 8; so++ {
			for do := 0; do < 8; do++ {
				fillPattern(r, src, (n+so+do)%3)
				initial := uint16(r.Uint32())
				if do == 0 {
					initial = [...]uint16{0, 0xffff, 1, 0xfffe, 0x8000, 0x00ff, 0xff00, 0x1234}[so]
				}
				check(dst[do:do+n], src[so:so+n], initial)
			}
		}
	}
	// Long buffers: a segment's payload at MTU 65,535, and random lengths.
	big := make([]byte, 1<<17)
	for i, n := range []int{65495, 65536, 1 << 17, 64*1024 + 63, 4097} {
		fillPattern(r, big, i%3)
		off := r.IntN(8)
		check(make([]byte, n-off), big[off:n], uint16(r.Uint32()))
	}
	for i := 0; i < 200; i++ {
		n := r.IntN(len(big) - 8)
		fillPattern(r, big[:n+8], 0)
		check(make([]byte, n), big[r.IntN(8):][:n], uint16(r.Uint32()))
	}
	// Unequal lengths: the shorter bounds the copy.
	fillPattern(r, src, 0)
	check(dst[:100], src[:250], 7)
	check(dst[:250], src[:99], 7)
	check(nil, src[:10], 0xffff)
}

// TestChecksumShift: the sums of a buffer's pieces, each shifted by its
// offset, combine to the buffer's sum, wherever the buffer is cut.
func TestChecksumShift(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 3000)
	for i := 0; i < 5000; i++ {
		n := r.IntN(len(buf) + 1)
		b := buf[:n]
		fillPattern(r, b, i%3)
		var sum uint16
		for off := 0; off < n; {
			k := min(n-off, 1+r.IntN(200))
			sum = ChecksumCombine(sum, ChecksumShift(Checksum(b[off:off+k], 0), off))
			off += k
		}
		if w := Checksum(b, 0); sum != w {
			t.Fatalf("len %d: pieces combine to %#04x, Checksum %#04x", n, sum, w)
		}
	}
}
