package conntrack

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// natRouter: a is the inside (10.0.1.0/24, hosts .2 and .3, a server at
// .3:80), b the outside (the router is 10.0.2.1, a server 10.0.2.2).
// MASQUERADE towards b, a port forward 10.0.2.1:8080 → 10.0.1.3:80 from
// anywhere (hairpin included: the inside reaching the public address is
// masqueraded towards the server so its replies come back through the
// router).
const natRouter = `
name: r
modules:
  - network.ipv4
  - network.ipv6
  - {module: netfilter.conntrack, max: 1024}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24, "2001:db8:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
filter:
  nat:
    prerouting:
      rules:
        - "-d 10.0.2.1 -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.3:80"
        - "-i b -p udp --dport 5353 -j DNAT --to-destination 10.0.1.3"
    postrouting:
      rules:
        - "-o b -j MASQUERADE"
        - "-o a -s 10.0.1.0/24 -d 10.0.1.3 -p tcp --dport 80 -j MASQUERADE"
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -j ACCEPT"
        - "-m conntrack --ctstate DNAT -j ACCEPT"
`

type natRig struct {
	t    *testing.T
	n    *pipelinetest.Node
	a, b *channel.Endpoint
	clk  *pipeline.ManualClock
}

func newNATRig(t *testing.T, cfg string) *natRig {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", cfg, pipeline.Options{Clock: clk})
	return &natRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk}
}

// through injects b on from and returns what came out of to (nil:
// nothing), its checksums verified.
func (nr *natRig) through(from, to *channel.Endpoint, b []byte) []byte {
	nr.t.Helper()
	from.InjectFrames([][]byte{b})
	buf := make([]*pipeline.Packet, 4)
	k := to.Read(buf)
	defer pipeline.ReleaseBatch(buf[:k])
	if k == 0 {
		return nil
	}
	out := append([]byte(nil), buf[0].Data()...)
	if err := filtertest.VerifyChecksums(out); err != nil {
		nr.t.Fatalf("bad checksums after NAT: %v\n% x", err, out)
	}
	return out
}

func v4addrs(b []byte) (src, dst string) {
	return netip.AddrFrom4([4]byte(b[12:16])).String(), netip.AddrFrom4([4]byte(b[16:20])).String()
}

func ports(b []byte) (uint16, uint16) {
	hl := int(b[0]&0xf) * 4
	return binary.BigEndian.Uint16(b[hl:]), binary.BigEndian.Uint16(b[hl+2:])
}

func tcpPkt(src, dst string, sport, dport uint16, flags uint8) []byte {
	return filtertest.Packet{Proto: filtertest.TCP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, TCPFlags: flags, Payload: 0}.Bytes()
}

// TestMasquerade: an inside host's flow leaves from the router's outside
// address; the replies reach the host; a second host with the same source
// port gets another port; a TCP handshake goes through both ways.
func TestMasquerade(t *testing.T) {
	nr := newNATRig(t, natRouter)
	out := nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, 53))
	if out == nil {
		t.Fatal("the inside host's datagram was not forwarded")
	}
	if s, d := v4addrs(out); s != "10.0.2.1" || d != "10.0.2.2" {
		t.Fatalf("masqueraded datagram %s -> %s, want 10.0.2.1 -> 10.0.2.2", s, d)
	}
	if sp, _ := ports(out); sp != 4000 {
		t.Fatalf("source port %d, want 4000 kept", sp)
	}
	// The second host, same port: another port.
	out2 := nr.through(nr.a, nr.b, udp("10.0.1.3", "10.0.2.2", 4000, 53))
	if out2 == nil {
		t.Fatal("the second host's datagram was not forwarded")
	}
	sp2, _ := ports(out2)
	if s, _ := v4addrs(out2); s != "10.0.2.1" || sp2 == 4000 || sp2 < 1024 {
		t.Fatalf("second host: from %s port %d, want 10.0.2.1 and a port other than 4000 (>= 1024)", s, sp2)
	}
	// Replies to each.
	back := nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 4000))
	if back == nil {
		t.Fatal("the reply to the first host was dropped")
	}
	if s, d := v4addrs(back); s != "10.0.2.2" || d != "10.0.1.2" {
		t.Fatalf("reply %s -> %s", s, d)
	}
	if _, dp := ports(back); dp != 4000 {
		t.Fatalf("reply port %d", dp)
	}
	back2 := nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, sp2))
	if back2 == nil {
		t.Fatal("the reply to the second host was dropped")
	}
	if _, d := v4addrs(back2); d != "10.0.1.3" {
		t.Fatalf("second reply to %s", d)
	}
	if _, dp := ports(back2); dp != 4000 {
		t.Fatalf("second reply port %d", dp)
	}
	// TCP: handshake through the NAT.
	syn := tcpPkt("10.0.1.2", "10.0.2.2", 40000, 443, 0x02)
	o := nr.through(nr.a, nr.b, syn)
	if o == nil {
		t.Fatal("SYN dropped")
	}
	if s, _ := v4addrs(o); s != "10.0.2.1" {
		t.Fatalf("SYN from %s", s)
	}
	synack := tcpPkt("10.0.2.2", "10.0.2.1", 443, 40000, 0x12)
	binary.BigEndian.PutUint32(synack[28:], 1) // ack the SYN's seq 0
	fixTCP(synack)
	if o := nr.through(nr.b, nr.a, synack); o == nil {
		t.Fatal("SYN/ACK dropped")
	} else if _, d := v4addrs(o); d != "10.0.1.2" {
		t.Fatalf("SYN/ACK to %s", d)
	}
	// Unsolicited traffic to the router's address is not forwarded in.
	if nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 4001)) != nil {
		t.Fatal("unsolicited datagram forwarded")
	}
	var lines []string
	StackTable(nr.n.Stack).Each(func(r Ref, e *Entry) bool {
		k0, k1 := e.Tuple(0), e.Tuple(1)
		lines = append(lines, k0.String()+" | "+k1.String())
		return true
	})
	t.Log(strings.Join(lines, "\n"))
}

func fixTCP(b []byte) {
	ip := wire.IPv4(b)
	l4 := b[ip.HeaderLength():]
	wire.TCP(l4).SetChecksum(0)
	wire.TCP(l4).SetChecksum(wire.TCP(l4).CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(len(l4)))))
}
