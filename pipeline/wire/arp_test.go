package wire

import (
	"bytes"
	"testing"

	"github.com/pipestack/pipestack/internal/alloctest"
)

// ARP fixtures, captured with an AF_PACKET socket on Linux 6.x between two
// network namespaces joined by a veth pair whose ends carry the fixtures'
// addresses (02:fc:00:00:00:01 192.0.2.2 and the gateway 02:fc:00:00:00:05
// 192.0.2.1). veth does not pad, so the frames are 42 bytes.

// frameARPRequest: 192.0.2.2 asks who has 192.0.2.1 (ping's first packet).
var frameARPRequest = mustHex("" +
	"ffff ffff ffff 02fc 0000 0001 0806 0001" +
	"0800 0604 0001 02fc 0000 0001 c000 0202" +
	"0000 0000 0000 c000 0201")

// frameARPReply: 192.0.2.1's answer, unicast to the asker.
var frameARPReply = mustHex("" +
	"02fc 0000 0001 02fc 0000 0005 0806 0001" +
	"0800 0604 0002 02fc 0000 0005 c000 0201" +
	"02fc 0000 0001 c000 0202")

// frameARPGratuitous: what Linux sends with arp_notify=1 when 192.0.2.1's
// link comes up: a broadcast request with sender IP = target IP.
var frameARPGratuitous = mustHex("" +
	"ffff ffff ffff 02fc 0000 0005 0806 0001" +
	"0800 0604 0001 02fc 0000 0005 c000 0201" +
	"0000 0000 0000 c000 0201")

var arpReplyFields = ARPFields{
	Op:        ARPReply,
	SenderMAC: MAC{0x02, 0xfc, 0, 0, 0, 0x05}, SenderIP: [4]byte{192, 0, 2, 1},
	TargetMAC: MAC{0x02, 0xfc, 0, 0, 0, 0x01}, TargetIP: [4]byte{192, 0, 2, 2},
}

func TestARPDeconstruct(t *testing.T) {
	req := ARP(frameARPRequest[EthernetHeaderSize:])
	if err := req.Check(); err != nil {
		t.Fatal(err)
	}
	if req.HardwareType() != 1 || req.ProtocolType() != EtherTypeIPv4 || req.HardwareAddressLength() != 6 || req.ProtocolAddressLength() != 4 {
		t.Errorf("format %d %#04x %d %d", req.HardwareType(), req.ProtocolType(), req.HardwareAddressLength(), req.ProtocolAddressLength())
	}
	if req.Op() != ARPRequest || req.SenderMAC() != (MAC{0x02, 0xfc, 0, 0, 0, 0x01}) || req.SenderIP() != [4]byte{192, 0, 2, 2} ||
		!req.TargetMAC().IsZero() || req.TargetIP() != [4]byte{192, 0, 2, 1} || req.IsGratuitous() {
		t.Errorf("request: op %d %v %v -> %v %v", req.Op(), req.SenderMAC(), req.SenderIP(), req.TargetMAC(), req.TargetIP())
	}
	rep := ARP(frameARPReply[EthernetHeaderSize:])
	if err := rep.Check(); err != nil {
		t.Fatal(err)
	}
	got := ARPFields{Op: rep.Op(), SenderMAC: rep.SenderMAC(), SenderIP: rep.SenderIP(), TargetMAC: rep.TargetMAC(), TargetIP: rep.TargetIP()}
	if got != arpReplyFields {
		t.Errorf("reply %+v", got)
	}
	// The reply's Ethernet header agrees with its ARP addresses.
	eth := Ethernet(frameARPReply)
	if eth.Check() != nil || eth.Type() != EtherTypeARP || eth.Src() != rep.SenderMAC() || eth.Dst() != rep.TargetMAC() {
		t.Errorf("ethernet %v -> %v %#04x", eth.Src(), eth.Dst(), eth.Type())
	}
	g := ARP(frameARPGratuitous[EthernetHeaderSize:])
	if g.Check() != nil || g.Op() != ARPRequest || !g.IsGratuitous() || !g.TargetMAC().IsZero() {
		t.Errorf("gratuitous: op %d %v %v", g.Op(), g.SenderIP(), g.TargetIP())
	}
}

func TestARPConstruct(t *testing.T) {
	b := ARP(make([]byte, ARPSize))
	b.Encode(&arpReplyFields)
	if !bytes.Equal(b, frameARPReply[EthernetHeaderSize:]) {
		t.Errorf("got  % x\nwant % x", []byte(b), frameARPReply[EthernetHeaderSize:])
	}
	// The reply built in place from the request, as network.arp does.
	c := ARP(bytes.Clone(frameARPRequest[EthernetHeaderSize:]))
	sha, spa, tpa := c.SenderMAC(), c.SenderIP(), c.TargetIP()
	c.SetOp(ARPReply)
	c.SetTargetMAC(sha)
	c.SetTargetIP(spa)
	c.SetSenderMAC(MAC{0x02, 0xfc, 0, 0, 0, 0x05})
	c.SetSenderIP(tpa)
	if !bytes.Equal(c, b) {
		t.Errorf("setters % x", []byte(c))
	}
	// The gratuitous request.
	g := ARP(make([]byte, ARPSize))
	g.Encode(&ARPFields{Op: ARPRequest, SenderMAC: MAC{0x02, 0xfc, 0, 0, 0, 0x05}, SenderIP: [4]byte{192, 0, 2, 1}, TargetIP: [4]byte{192, 0, 2, 1}})
	if !bytes.Equal(g, frameARPGratuitous[EthernetHeaderSize:]) {
		t.Errorf("gratuitous % x", []byte(g))
	}
}

func TestARPImpossibleLength(t *testing.T) {
	p := frameARPRequest[EthernetHeaderSize:]
	for n := 0; n < len(p); n++ {
		if err := ARP(p[:n]).Check(); err != ErrTooShort {
			t.Errorf("len %d: %v, want ErrTooShort", n, err)
		}
	}
	// Formats other than Ethernet/IPv4 are refused, whatever their length.
	for i, mut := range []struct {
		off int
		val byte
	}{{1, 6}, {0, 1}, {2, 0x86}, {3, 0xdd}, {4, 8}, {5, 16}, {4, 0}, {5, 0}} {
		b := ARP(bytes.Clone(p))
		b[mut.off] = mut.val
		if err := b.Check(); err != ErrBadARPFormat {
			t.Errorf("mutation %d: %v, want ErrBadARPFormat", i, err)
		}
	}
	if ErrBadARPFormat.Reason() != "bad_arp_format" || ErrBadARPFormat.Error() != "wire: "+ErrBadARPFormat.String() {
		t.Errorf("error text %q %q", ErrBadARPFormat.Reason(), ErrBadARPFormat.Error())
	}
}

func TestARPParse(t *testing.T) {
	for i, f := range [][]byte{frameARPRequest, frameARPReply, frameARPGratuitous} {
		eth := Ethernet(f)
		if eth.Check() != nil || eth.Type() != EtherTypeARP {
			t.Fatalf("frame %d: not ARP", i)
		}
		if err := ARP(eth.Payload()).Check(); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
	}
	// Ethernet pads ARP to 46 bytes: the padding follows the packet and
	// changes nothing.
	padded := append(bytes.Clone(frameARPRequest[EthernetHeaderSize:]), make([]byte, 18)...)
	b := ARP(padded)
	if err := b.Check(); err != nil || b.TargetIP() != [4]byte{192, 0, 2, 1} {
		t.Errorf("padded: %v", err)
	}
	// An RFC 5227 probe: sender IP 0.0.0.0; an unknown opcode: still a view.
	probe := ARP(bytes.Clone(frameARPRequest[EthernetHeaderSize:]))
	probe.SetSenderIP([4]byte{})
	probe.SetOp(9)
	if err := probe.Check(); err != nil || probe.SenderIP() != [4]byte{} || probe.Op() != 9 {
		t.Errorf("probe: %v", err)
	}
}

func TestARPEmit(t *testing.T) {
	buf := filled(64)
	ARP(buf).Encode(&arpReplyFields)
	if !bytes.Equal(buf[:ARPSize], frameARPReply[EthernetHeaderSize:]) {
		t.Errorf("packet % x", buf[:ARPSize])
	}
	if i := firstWritten(buf, ARPSize); i >= 0 {
		t.Errorf("byte %d written beyond the packet", i)
	}
}

func TestARPZeroAllocs(t *testing.T) {
	if alloctest.Race {
		t.Skip("allocation counts are not exact under -race (run outside it: the zero-allocation step)")
	}
	p := ARP(frameARPRequest[EthernetHeaderSize:])
	short := ARP(p[:10])
	for name, fn := range map[string]func(){
		"Check":       func() { sinkErr = p.Check() },
		"Check error": func() { sinkErr = short.Check() },
	} {
		if n := countAllocs(fn); n != 0 {
			t.Errorf("%s: %d allocations over %d calls, want 0", name, n, allocRuns)
		}
	}
}

func FuzzParseARP(f *testing.F) {
	for _, fr := range [][]byte{frameARPRequest, frameARPReply, frameARPGratuitous} {
		f.Add(fr[EthernetHeaderSize:])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := ARP(data)
		if err := in.Check(); err != nil {
			checkParseError(t, err)
			if err == ErrTooShort && len(data) >= ARPSize {
				t.Fatalf("refused %d bytes as too short", len(data))
			}
			if err != ErrTooShort && err != ErrBadARPFormat {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		b := ARP(bytes.Clone(data))
		if b.HardwareType() != ARPHardwareEthernet || b.ProtocolType() != EtherTypeIPv4 || b.HardwareAddressLength() != 6 || b.ProtocolAddressLength() != 4 {
			t.Fatal("Check passed a foreign format")
		}
		f := ARPFields{Op: b.Op(), SenderMAC: b.SenderMAC(), SenderIP: b.SenderIP(), TargetMAC: b.TargetMAC(), TargetIP: b.TargetIP()}
		_ = b.IsGratuitous()
		var enc [ARPSize]byte
		ARP(enc[:]).Encode(&f)
		if !bytes.Equal(enc[:], data[:ARPSize]) {
			t.Fatalf("re-encoded % x\ninput        % x", enc, data[:ARPSize])
		}
		// The in-place reply keeps the view valid and touches only the
		// first ARPSize bytes.
		b.SetOp(ARPReply)
		b.SetTargetMAC(f.SenderMAC)
		b.SetTargetIP(f.SenderIP)
		b.SetSenderMAC(MAC{2})
		b.SetSenderIP(f.TargetIP)
		if b.Check() != nil || b.Op() != ARPReply || b.TargetIP() != f.SenderIP || b.SenderIP() != f.TargetIP {
			t.Fatal("in-place reply")
		}
		if !bytes.Equal(b[ARPSize:], data[ARPSize:]) {
			t.Fatal("setters wrote beyond the packet")
		}
	})
}
