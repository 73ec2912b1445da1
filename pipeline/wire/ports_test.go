package wire

import "testing"

func TestPorts(t *testing.T) {
	_, seg := l4Of(frameDNSQuery)
	if s, d, ok := Ports(ProtocolUDP, seg); !ok || s != 42080 || d != 53 {
		t.Errorf("UDP: %d %d %v", s, d, ok)
	}
	hdr := []byte{0x01, 0xbb, 0xc3, 0x50, 0xff}
	for _, p := range []uint8{ProtocolTCP, ProtocolSCTP, ProtocolUDPLite, ProtocolDCCP} {
		if s, d, ok := Ports(p, hdr); !ok || s != 443 || d != 50000 {
			t.Errorf("protocol %d: %d %d %v", p, s, d, ok)
		}
	}
	if _, _, ok := Ports(ProtocolTCP, hdr[:3]); ok {
		t.Error("3 bytes gave ports")
	}
	if s, d, ok := Ports(ProtocolICMP, hdr); ok || s != 0 || d != 0 {
		t.Error("ICMP has no ports")
	}
	if n := countAllocs(func() { Ports(ProtocolUDP, hdr) }); n != 0 {
		t.Errorf("%d allocations in %d calls", n, allocRuns)
	}
}
