package cli_test

import (
	"net/netip"
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// replayNATPipeline is a NAT gateway: a the LAN, b the WAN (MASQUERADE),
// a stateful FORWARD policy.
const replayNATPipeline = `
name: gw
modules: [network.ipv4, {module: netfilter.conntrack, max: 64}]
links:
  - {name: a, module: test.link, device: never-opened-a, mtu: 1500, addresses: [10.0.1.1/24]}
  - {name: b, module: test.link, device: never-opened-b, mtu: 1500, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  nat:
    postrouting:
      rules: ["-o b -j MASQUERADE"]
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -j ACCEPT"
`

// icmp4 builds an IPv4 ICMP message with valid checksums.
func icmp4(src, dst string, typ, code uint8, rest uint32, payload []byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	total := wire.IPv4MinimumSize + wire.ICMPv4MinimumSize + len(payload)
	b := make([]byte, total)
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(total), ID: 9, TTL: 64, Protocol: wire.ProtocolICMP, Src: s, Dst: d})
	m := wire.ICMPv4(b[wire.IPv4MinimumSize:])
	m.Encode(&wire.ICMPv4Fields{Type: typ, Code: code, Rest: rest})
	copy(m.Payload(), payload)
	m.SetChecksum(m.CalculateChecksum())
	return b
}

// TestReplayConntrackNAT: with netfilter.conntrack, replay shows each
// packet's state and direction (NEW, ESTABLISHED, RELATED reply, INVALID),
// its entry as conntrack -L prints it (the reply tuple is the NAT binding)
// and the NAT rewrite (the flow as it came in -> as it left); without a
// conntrack module none of it.
func TestReplayConntrackNAT(t *testing.T) {
	quoted := pipelinetest.UDP4("10.0.2.2", "10.0.1.2", 53, 4000, 60, []byte("reply"))
	in := writeCapture(t,
		pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 53, 64, []byte("query")), // #1 NEW, masqueraded
		pipelinetest.Echo4("10.0.1.2", "10.0.1.1", 64, 7, 1, nil),                // #2 NEW, to the router
		pipelinetest.Echo4("10.0.1.2", "10.0.1.1", 64, 7, 2, nil),                // #3 ESTABLISHED: the router answered #2
		icmp4("10.0.1.2", "10.0.2.2", 3, 3, 0, quoted[:28]),                      // #4 RELATED reply, translated
		icmp4("10.0.1.2", "10.0.2.2", 0, 0, wire.ICMPv4EchoRest(99, 1), nil),     // #5 an echo reply to nothing: INVALID
	)
	res := runMain(t, "replay", tempPipeline(t, replayNATPipeline), "--pcap", in)
	if res.code != 0 {
		t.Fatalf("replay: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Log("\n" + res.stdout)
	recs := strings.Split(res.stdout, "\n#")
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	for i, wants := range [][]string{
		{"conntrack: NEW original",
			"entry: udp      17 30 src=10.0.1.2 dst=10.0.2.2 sport=4000 dport=53 [UNREPLIED] src=10.0.2.2 dst=10.0.2.1 sport=53 dport=4000 mark=0",
			"nat: udp 10.0.1.2:4000 > 10.0.2.2:53 -> udp 10.0.2.1:4000 > 10.0.2.2:53 (SNAT)",
			"left b: udp 10.0.2.1:4000 > 10.0.2.2:53"},
		{"conntrack: NEW original", "entry: icmp     1 30 src=10.0.1.2 dst=10.0.1.1 type=8 code=0 id=7", "=> delivered locally",
			"input in a: ACCEPT [ct NEW original]", "output in a out a: ACCEPT [ct ESTABLISHED reply]"}, // the router's echo reply
		{"conntrack: ESTABLISHED original", "=> delivered locally", "prerouting in a: ACCEPT [ct ESTABLISHED original]"},
		{"conntrack: RELATED original",
			"nat: icmp 10.0.1.2 > 10.0.2.2 type 3 [about: udp 10.0.2.2:53 > 10.0.1.2:4000] -> icmp 10.0.2.1 > 10.0.2.2 type 3 [about: udp 10.0.2.2:53 > 10.0.2.1:4000] (SNAT)",
			"=> forwarded to b"},
		{"conntrack: INVALID", "filter/FORWARD rule 2 `-m conntrack --ctstate INVALID -j DROP` -> DROP"},
	} {
		for _, w := range wants {
			if !strings.Contains(recs[i], w) {
				t.Errorf("record #%d lacks %q", i+1, w)
			}
		}
	}
	if strings.Count(res.stdout, "nat: ") != 2 {
		t.Errorf("nat lines on other packets than #1 and #4")
	}
	// Without conntrack: no such lines.
	plain := runMain(t, "replay", tempPipeline(t, replayPipeline), "--pcap", replayCapture(t))
	if plain.code != 0 || strings.Contains(plain.stdout, "conntrack:") || strings.Contains(plain.stdout, "nat:") {
		t.Errorf("replay without conntrack: %d\n%s", plain.code, plain.stdout)
	}
	js := runMain(t, "replay", tempPipeline(t, replayNATPipeline), "--pcap", in, "--json")
	if !strings.Contains(js.stdout, `"ct":"NEW original"`) || !strings.Contains(js.stdout, `"nat":"udp 10.0.1.2:4000 > 10.0.2.2:53 -> udp 10.0.2.1:4000 > 10.0.2.2:53 (SNAT)"`) {
		t.Errorf("--json lacks ct and nat:\n%s", js.stdout)
	}
}
