// Package stackfuzz fuzzes the whole stack: arbitrary sequences of frames
// into a host and a router built from pipeline files on channel links, with
// every module the project has (network.ipv4, network.arp, network.ipv6 with
// NDP, transport.udp, transport.tcp with a listener, reassembly, fragmentation, the filter with rules in
// raw, mangle, nat (MASQUERADE, DNAT) and filter, named sets, verdict maps
// and the SET target, conntrack's flowtable fast path), and the
// invariants checked
// after each input:
//
//   - no panic (a panic on a link reader goroutine kills a router);
//   - no hang: each input finishes within a watchdog's bound;
//   - every injected frame is accounted for by a counter: some counter of
//     the receiving stack (a drop reason, forwarded, delivered, a link
//     counter) moved, beyond the NIC's own rx_packets;
//   - the pool has every buffer back once the clock has run past every
//     timeout (reassembly, neighbor queues) and the links are drained.
//
// Run it for longer than CI does with
//
//	go test ./stackfuzz -run '^$' -fuzz '^FuzzStack$' -fuzztime 10m -parallel 1
//
// What it finds lands in testdata/fuzz/FuzzStack and runs in every
// `go test` from then on.
package stackfuzz

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/arp"
	_ "github.com/pipestack/pipestack/modules/conntrack"
	_ "github.com/pipestack/pipestack/modules/filter"
	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The topology:
//
//	host 10.1.0.2 fd00:1::2 ─(up)═══(lan)─ router ─(wan, IP framing, MTU 1280)─ 10.2.0.2
//	  UDP :53, TCP :80 bound   ethernet      10.1.0.1 fd00:1::1 / 10.2.0.1 fd00:2::1
//
// The fuzzer injects into the router's lan (as a neighbor on the Ethernet
// segment) and wan (as the upstream), and into the host; the host's and
// the router's lan/up links are cabled by the harness itself, synchronously,
// so that every answer (ARP, NDP, ICMP errors) is processed too and the run
// is deterministic.
const routerYAML = `
name: router
modules:
  - {module: network.ipv4, reassembly: {timeout: 30s, max_memory: 262144, per_source_memory: 131072}}
  - network.arp
  - module: network.ipv6
    reassembly: {timeout: 60s, max_memory: 262144, per_source_memory: 131072}
    dad: {transmits: 0}
    router_advertisements:
      links:
        lan: {prefixes: ["fd00:1::/64"], interval: 10s}
  - transport.udp
  - {module: netfilter.conntrack, max: 256, flowtables: [{name: ft, devices: [lan, wan], timeout: 5s}]}
links:
  - {name: lan, module: link.channel, framing: ethernet, mac: "02:00:00:00:01:01", queue: 4096, addresses: [10.1.0.1/24, "fd00:1::1/64"]}
  - {name: wan, module: link.channel, framing: ip, mtu: 1280, queue: 4096, addresses: [10.2.0.1/24, "fd00:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
filter:
  sets:
    blocked: {type: hash:net, counters: true, elements: [10.1.0.66/32, "10.2.0.100-10.2.0.120", "fd00:1::66/128", "fd00:2::/120"]}
    seen: {type: "addr . port", timeout: 3, maxelem: 16, counters: true}
    knocked: {type: hash:ip, timeout: 2, maxelem: 8}
    nets: {type: hash:net, timeout: 4, maxelem: 8}
    pports: {type: "prefix . port", elements: ["10.2.0.0/24 . tcp:80", "10.2.0.0/28 . 81-90", "fd00:2::/64 . udp:7"]}
    dports: {type: port, constant: true, elements: ["udp:7", "tcp:80", "5000-5100"]}
  maps:
    by_port:
      type: port
      elements: {"23": drop, "tcp:81": jump from_lan, "udp:1234": accept, "udp:1235": goto vmapped, "udp:1236": return, "udp:1237": continue}
    by_src:
      type: "addr . port"
      elements: {"10.1.0.51 . udp:7": drop, "10.1.0.52 . tcp:80": jump vmapped, "fd00:1::51 . 7": accept}
  raw:
    prerouting:
      rules: ["-p udp --dport 9 -j DROP"]
  nat:
    prerouting:
      rules:
        - "-i wan -p tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80"
        - "-i wan -p udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53"
    postrouting:
      rules: ["-o wan -j MASQUERADE"]
  mangle:
    forward:
      rules:
        - "-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
        - "-p udp -j MARK --set-mark 0x7"
        - "-p udp -j CONNMARK --save-mark"
  filter:
    input:
      rules:
        - {proto: icmp, icmp_type: echo-request, limit: {limit: 50/s, limit_burst: 20}, target: accept}
        - "-p tcp --dport 22 -j REJECT --reject-with tcp-reset"
        - "-p udp --dport 161:162 -j REJECT --reject-with icmp-admin-prohibited"
        - {proto: icmpv6, icmpv6_type: echo-request, target: accept}
    forward:
      rules:
        - "-m conntrack --ctstate ESTABLISHED -j FLOWOFFLOAD --flowtable ft"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-m set --match-set blocked src -j DROP"
        - "-m set --match-set blocked dst -j DROP"
        - "-j SET --add-set seen src,dst --exist"
        - "-p udp --dport 7100 -j SET --add-set knocked src --timeout 1"
        - "-p udp --dport 7101 -j SET --del-set knocked src"
        - "-p udp --dport 7102 -j SET --add-set nets dst"
        - "-m set --match-set knocked src -m set ! --match-set nets dst -j ACCEPT"
        - "-m set --match-set pports dst,dst -j ACCEPT"
        - "-m set ! --match-set dports dst -j VMAP --vmap by_port dst"
        - "-j VMAP --vmap by_src src,dst"
        - "-p tcp -m connlimit --connlimit-above 8 -j REJECT --reject-with tcp-reset"
        - {in: lan, jump: from_lan}
        - "-m mark --mark 0x7 -p udp --dport 7 -j ACCEPT"
        - "-p udp -m multiport --dports 1000:1100 -j REJECT"
        - "-m length --length 1400:65535 -j LOG --log-prefix big "
    vmapped:
      rules: ["-p udp -j RETURN", "-m set --match-set seen dst,src -j ACCEPT"]
    from_lan:
      rules:
        - "-s 10.1.0.77 -j DROP"
        - "-p tcp -m tcp ! --syn --dport 80 -j RETURN"
        - {proto: udp, sport: "!53", target: {reject: {reject_with: icmp-port-unreachable}}, dport: 4000}
routes:
  - {to: 10.3.0.0/16, via: 10.1.0.9, link: lan}
  - {to: default, via: 10.2.0.2, link: wan}
  - {to: "::/0", via: "fd00:2::2", link: wan}
`

const hostYAML = `
name: host
modules: [network.ipv4, network.arp, {module: network.ipv6, dad: {transmits: 0}}, transport.udp, transport.tcp]
links:
  - {name: up, module: link.channel, framing: ethernet, mac: "02:00:00:00:02:02", queue: 4096, addresses: [10.1.0.2/24, "fd00:1::2/64"]}
routes:
  - {to: default, via: 10.1.0.1, link: up}
  - {to: "::/0", via: "fd00:1::1", link: up}
`

var (
	routerMAC = wire.MAC{2, 0, 0, 0, 1, 1}
	hostMAC   = wire.MAC{2, 0, 0, 0, 2, 2}
	peerMAC   = wire.MAC{2, 0, 0, 0, 9, 9}
)

// Operations, one per record of the input: op, length (big endian 16
// bits), then length bytes.
const (
	opLAN   = iota // an Ethernet frame into the router's lan link
	opWAN          // an IP packet into the router's wan link
	opHost         // an Ethernet frame into the host's link
	opClock        // advance the clock by data[0]×100 ms
	opSend         // the host's socket sends data (dest chosen by data[0])
	opEthIP        // an IP packet into lan, wrapped in Ethernet for the router
	opFrags        // a train of fragments made from a few parameters (fragTrain)
	numOps

	// fixSums on an op: recompute the IPv4 header checksum and the
	// UDP/ICMP/TCP checksums of the packet before injecting it, so that
	// the fuzzer reaches past the checksum checks.
	fixSums = 0x80
)

type harness struct {
	clock        *pt.ManualClock
	pool         *pipeline.Pool
	router, host *pipeline.Stack
	lan, wan, up *channel.Endpoint
	sock         *udp.Conn
	ln           *tcp.Listener // never accepts: its queue holds what the handshakes complete
	buf          []*pipeline.Packet
}

func newHarness(t testing.TB) *harness {
	h := &harness{clock: pt.NewManualClock(), pool: pipeline.NewPoolLimits(1<<20, 1<<40), buf: make([]*pipeline.Packet, 64)}
	mk := func(name, yaml string) *pipeline.Stack {
		cfg, err := pipeline.ParseConfig(name+".yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		s := pipeline.New(pipeline.Options{Clock: h.clock, Pool: h.pool})
		if _, err := s.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.router = mk("router", routerYAML)
	h.host = mk("host", hostYAML)
	ep := func(s *pipeline.Stack, name string) *channel.Endpoint {
		l, _ := s.Link(name)
		return l.(*channel.Endpoint)
	}
	h.lan, h.wan, h.up = ep(h.router, "lan"), ep(h.router, "wan"), ep(h.host, "up")
	c, err := udp.ListenPacket(h.host, "udp", "0.0.0.0:53")
	if err != nil {
		t.Fatal(err)
	}
	h.sock = c
	ln, err := tcp.Listen(h.host, "tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	return h
}

func (h *harness) close() {
	if h.sock != nil {
		h.sock.Close()
	}
	if h.ln != nil {
		h.ln.Close()
	}
	h.host.Close()
	h.router.Close()
}

// shuttle carries frames between the host's up and the router's lan until
// both are quiet, and throws away what the router sends on wan (nobody is
// there). Bounded: a storm of answers stops after 64 rounds.
func (h *harness) shuttle() {
	for round := 0; round < 64; round++ {
		moved := h.move(h.lan, h.up) + h.move(h.up, h.lan)
		h.discard(h.wan)
		if moved == 0 {
			return
		}
	}
}

func (h *harness) move(from, to *channel.Endpoint) int {
	total := 0
	for {
		n := from.Read(h.buf)
		if n == 0 {
			return total
		}
		total += n
		// Data() is the whole frame as written.
		frames := make([][]byte, n)
		for i, p := range h.buf[:n] {
			frames[i] = append([]byte(nil), p.Data()...)
			p.Release()
			h.buf[i] = nil
		}
		to.InjectFrames(frames)
	}
}

func (h *harness) discard(ep *channel.Endpoint) {
	for {
		n := ep.Read(h.buf)
		if n == 0 {
			return
		}
		pipeline.ReleaseBatch(h.buf[:n])
	}
}

// events sums every counter of a stack except the NICs' own receive
// counts: what must move when a frame is handled.
func events(s *pipeline.Stack, eps ...*channel.Endpoint) uint64 {
	var n uint64
	for _, cs := range s.Counters() {
		for _, v := range cs.Snapshot() {
			n += v.Value
		}
	}
	for _, nic := range s.NICs() {
		st := &nic.Stats
		n += st.RxDropped.Load() + st.TxPackets.Load() + st.TxDropped.Load() + st.RxUnknownProtocol.Load()
	}
	for _, ep := range eps {
		for _, v := range ep.LinkCounters() {
			if v.Name != "rx_injected" {
				n += v.Value
			}
		}
	}
	return n
}

// run plays one input. It reports the first frame that no counter
// accounted for.
func (h *harness) run(t testing.TB, data []byte) {
	for len(data) >= 3 {
		op := data[0]
		n := int(binary.BigEndian.Uint16(data[1:3]))
		data = data[3:]
		if n > len(data) {
			n = len(data)
		}
		rec := append([]byte(nil), data[:n]...)
		data = data[n:]
		if op&fixSums != 0 {
			fixChecksums(ipPart(op&^fixSums, rec))
		}
		switch op &^ fixSums % numOps {
		case opLAN:
			h.inject(t, h.router, h.lan, rec)
		case opWAN:
			h.inject(t, h.router, h.wan, rec)
		case opHost:
			h.inject(t, h.host, h.up, rec)
		case opEthIP:
			h.inject(t, h.router, h.lan, ethIP(rec))
		case opFrags:
			wan, frags := fragTrain(rec)
			for _, f := range frags {
				if wan {
					h.inject(t, h.router, h.wan, f)
				} else {
					h.inject(t, h.router, h.lan, ethIP(f))
				}
			}
		case opClock:
			steps := 1
			if len(rec) > 0 {
				steps = int(rec[0])
			}
			for i := 0; i < steps; i++ {
				h.clock.Advance(100 * time.Millisecond)
				h.shuttle()
			}
		case opSend:
			dst := "10.2.0.2:7"
			if len(rec) > 0 {
				// The last four are the host itself (the loopback NIC).
				dst = [...]string{"10.2.0.2:7", "[fd00:2::2]:7", "10.1.0.1:9", "[fd00:1::1]:9", "10.3.0.5:7", "10.1.0.77:7",
					"10.1.0.2:53", "127.0.0.1:9", "[fd00:1::2]:53", "[::1]:9"}[int(rec[0])%10]
				rec = rec[1:]
			}
			addr := netipAddrPort(dst)
			_, _ = h.sock.WriteTo(rec, addr)
			h.shuttle()
		}
	}
}

func (h *harness) inject(t testing.TB, s *pipeline.Stack, ep *channel.Endpoint, frame []byte) {
	before := events(s, ep)
	ep.InjectFrames([][]byte{frame})
	if events(s, ep) == before {
		t.Fatalf("a frame moved no counter of %s: %x\n%s", s.Generation().Config().Name, frame, dump(s))
	}
	h.shuttle()
}

// quiesce runs the clock past every timeout, drains every link and the
// socket, and checks that the pool has every buffer back.
func (h *harness) quiesce(t testing.TB) {
	for i := 0; i < 40; i++ {
		h.clock.Advance(5 * time.Second)
		h.shuttle()
	}
	h.discard(h.lan)
	h.discard(h.up)
	h.discard(h.wan)
	// Closing the socket releases what its queue holds (reading it with a
	// deadline would depend on the machine's speed).
	h.sock.Close()
	h.sock = nil
	// So does closing the listener (the accept queue's connections are
	// reset; the resets go out on up).
	h.ln.Close()
	h.ln = nil
	h.shuttle()
	h.discard(h.lan)
	h.discard(h.wan)
	if n := pt.OutstandingBuffers(h.pool); n != 0 {
		t.Fatalf("%d packet buffers not back in the pool after every timeout\nrouter: %s\nhost: %s", n, dump(h.router), dump(h.host))
	}
}

func dump(s *pipeline.Stack) string {
	var b strings.Builder
	for _, cs := range s.Counters() {
		for _, v := range cs.Snapshot() {
			if v.Value != 0 {
				fmt.Fprintf(&b, "%s.%s=%d ", cs.Name(), v.Name, v.Value)
			}
		}
	}
	for _, nic := range s.NICs() {
		st := &nic.Stats
		fmt.Fprintf(&b, "nic %s rx=%d tx=%d rxdrop=%d txdrop=%d ", nic.Name(), st.RxPackets.Load(), st.TxPackets.Load(), st.RxDropped.Load(), st.TxDropped.Load())
	}
	return b.String()
}

// maxInput bounds an input; a fragment train (opFrags) stands for up to
// 64 KiB of fragments in a few bytes.
const maxInput = 16 << 10

func FuzzStack(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxInput {
			data = data[:maxInput] // long inputs only slow the mutator down
		}
		defer pt.Watchdog("stackfuzz", 20*time.Second, data)()
		h := newHarness(t)
		// Not deferred: after a panic on the packet path the stacks
		// cannot close (the link's delivery lock is held); the panic is
		// the report.
		h.run(t, data)
		h.quiesce(t)
		h.close()
	})
}
