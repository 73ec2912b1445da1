package pipeline_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// chainTable builds a table of n chains where chain i's rules are jumps to
// the chains listed in jumps[i] (in order), then an accept in the last
// chain of every path; the policy is drop, so a packet that gets through
// was accepted by a rule.
func chainTable(n int, jumps map[int][]int) *pipeline.HookTable {
	t := &pipeline.HookTable{Policy: pipeline.VerdictDrop}
	for i := 0; i < n; i++ {
		c := pipeline.Chain{Name: fmt.Sprintf("c%d", i)}
		for _, to := range jumps[i] {
			c.Rules = append(c.Rules, pipeline.Rule{Target: jump(to)})
		}
		if len(jumps[i]) == 0 {
			c.Rules = append(c.Rules, pipeline.Rule{Target: verdict(pipeline.VerdictAccept)})
		}
		t.Chains = append(t.Chains, c)
	}
	return t
}

func udpContext(t *testing.T) *pipeline.PacketContext {
	t.Helper()
	pkt := pipeline.DefaultPool.Get(64)
	t.Cleanup(pkt.Release)
	pkt.SetData(udp4Bytes())
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	pc := &pipeline.PacketContext{Pkt: pkt}
	if !pipeline.ParseTuple(nil, pkt, pc) {
		t.Fatal("not parsed")
	}
	return pc
}

func udp4Bytes() []byte {
	p := make([]byte, 28)
	wire.IPv4(p).Encode(&wire.IPv4Fields{TotalLength: 28, TTL: 64, Protocol: wire.ProtocolUDP,
		Src: [4]byte{10, 0, 1, 2}, Dst: [4]byte{10, 0, 2, 2}})
	wire.IPv4(p).SetChecksum(wire.IPv4(p).CalculateChecksum())
	wire.UDP(p[20:]).Encode(&wire.UDPFields{SrcPort: 1000, DstPort: 2000, Length: 8})
	return p
}

// A chain first reached by a short path and later by a long one counts at
// its deepest: Validate must see the long path's depth. Here chain 1 is
// jumped to from the entry directly (depth 1) and, after that, through a
// line of 11 chains (depth 12); chain 1 has a line of 8 jumps below it, so
// the long path nests 20 jumps, more than the 16 Evaluate follows (it
// would drop every packet of the table).
func TestValidateJumpDepthThroughSharedChain(t *testing.T) {
	jumps := map[int][]int{0: {1, 20}}
	for i := 1; i < 9; i++ { // 1 → 2 → … → 9 (8 jumps below chain 1)
		jumps[i] = []int{i + 1}
	}
	for i := 20; i < 30; i++ { // 20 → 21 → … → 30 → 1
		jumps[i] = []int{i + 1}
	}
	jumps[30] = []int{1}
	tbl := chainTable(31, jumps)
	err := tbl.Validate()
	if err == nil || !strings.Contains(err.Error(), "deeper than 16") {
		t.Fatalf("Validate accepted a table whose jumps nest 20 deep: %v", err)
	}

	// The same shape within the limit (a line of 4 below chain 1: 16
	// jumps on the long path) is accepted, and Evaluate follows it to the
	// accept at its end.
	jumps2 := map[int][]int{0: {1, 20}}
	for i := 1; i < 5; i++ {
		jumps2[i] = []int{i + 1}
	}
	for i := 20; i < 30; i++ {
		jumps2[i] = []int{i + 1}
	}
	jumps2[30] = []int{1}
	tbl2 := chainTable(31, jumps2)
	if err := tbl2.Validate(); err != nil {
		t.Fatalf("Validate rejected 16 nested jumps: %v", err)
	}
	if v := tbl2.Evaluate(udpContext(t)); v != pipeline.VerdictAccept {
		t.Fatalf("Evaluate: %v, want accept", v)
	}
}

// Exactly 16 nested jumps are accepted by Validate and followed by
// Evaluate; 17 are rejected.
func TestValidateJumpDepthLimit(t *testing.T) {
	for _, n := range []int{16, 17} {
		jumps := map[int][]int{}
		for i := 0; i < n; i++ {
			jumps[i] = []int{i + 1}
		}
		tbl := chainTable(n+1, jumps)
		err := tbl.Validate()
		if n == 16 {
			if err != nil {
				t.Fatalf("16 jumps: %v", err)
			}
			if v := tbl.Evaluate(udpContext(t)); v != pipeline.VerdictAccept {
				t.Fatalf("16 jumps: Evaluate %v, want accept", v)
			}
		} else if err == nil {
			t.Fatal("17 nested jumps accepted")
		}
	}
}

// A loop anywhere is rejected, also through a chain already validated.
func TestValidateLoop(t *testing.T) {
	tbl := chainTable(4, map[int][]int{0: {1, 2}, 2: {3}, 3: {2}})
	if err := tbl.Validate(); err == nil || !strings.Contains(err.Error(), "jumps back into itself") {
		t.Fatalf("loop: %v", err)
	}
}

// seq records the rules a packet went through.
type seq struct {
	log *[]string
	tag string
	v   pipeline.Verdict
}

func (s seq) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	*s.log = append(*s.log, s.tag)
	return s.v, 0
}

// Return semantics as in netfilter: RETURN (or the end) of a user chain goes
// back to the rule after the jump; RETURN in the entry chain applies the
// policy; an unmatched rule is skipped.
func TestEvaluateReturn(t *testing.T) {
	var log []string
	r := func(tag string, v pipeline.Verdict) pipeline.Rule {
		return pipeline.Rule{Target: seq{&log, tag, v}}
	}
	never := dstPort(1)
	for _, policy := range []pipeline.Verdict{pipeline.VerdictAccept, pipeline.VerdictDrop} {
		log = nil
		tbl := &pipeline.HookTable{Policy: policy, Entry: 1, Chains: []pipeline.Chain{
			{Name: "sub2", Rules: []pipeline.Rule{r("s2a", pipeline.VerdictContinue)}}, // ends: back to sub1
			{Name: "base", Rules: []pipeline.Rule{
				r("b1", pipeline.VerdictContinue),
				{Target: jump(2)},
				r("b2", pipeline.VerdictContinue),
				{Matchers: []pipeline.Matcher{never}, Target: verdict(pipeline.VerdictDrop)},
				r("b3", pipeline.VerdictReturn), // at the base: the policy
				r("b4", pipeline.VerdictAccept),
			}},
			{Name: "sub1", Rules: []pipeline.Rule{
				r("s1a", pipeline.VerdictContinue),
				{Target: jump(0)},
				r("s1b", pipeline.VerdictReturn),
				r("s1c", pipeline.VerdictAccept),
			}},
		}}
		if err := tbl.Validate(); err != nil {
			t.Fatal(err)
		}
		if v := tbl.Evaluate(udpContext(t)); v != policy {
			t.Errorf("policy %v: verdict %v", policy, v)
		}
		if got, want := strings.Join(log, " "), "b1 s1a s2a s1b b2 b3"; got != want {
			t.Errorf("policy %v: went through %q, want %q", policy, got, want)
		}
	}
}

// fakeTransports configures one transport protocol whose ports are read
// its own way.
type fakeTransports struct{ tp pipeline.TransportProtocol }

func (f fakeTransports) TransportProtocol(n pipeline.TransportProtocolNumber) pipeline.TransportProtocol {
	if f.tp != nil && f.tp.Number() == n {
		return f.tp
	}
	return nil
}

// swappedPorts is a transport whose "ports" are the header's first two
// fields the other way round (so that the test tells whose ParsePorts ran).
type swappedPorts struct {
	num pipeline.TransportProtocolNumber
}

func (p swappedPorts) Number() pipeline.TransportProtocolNumber { return p.num }
func (p swappedPorts) MinimumPacketSize() int                   { return 0 }
func (p swappedPorts) ParsePorts(b []byte) (uint16, uint16, bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	return uint16(b[2])<<8 | uint16(b[3]), uint16(b[0])<<8 | uint16(b[1]), true
}
func (p swappedPorts) HandlePackets(*pipeline.Batch, []*pipeline.Packet) {}

// ParseTuple reads the ports with the configured transport's ParsePorts, and
// with wire.Ports for a protocol the pipeline has no transport for.
func TestParseTuplePorts(t *testing.T) {
	pkt := pipeline.DefaultPool.Get(64)
	defer pkt.Release()
	pkt.SetData(udp4Bytes())
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	for _, tc := range []struct {
		name     string
		td       pipeline.TransportDispatcher
		src, dst uint16
	}{
		{"no dispatcher", nil, 1000, 2000},
		{"no UDP transport", fakeTransports{swappedPorts{pipeline.TCPProtocolNumber}}, 1000, 2000},
		{"UDP transport", fakeTransports{swappedPorts{pipeline.UDPProtocolNumber}}, 2000, 1000},
	} {
		var pc pipeline.PacketContext
		if !pipeline.ParseTuple(tc.td, pkt, &pc) {
			t.Fatalf("%s: not parsed", tc.name)
		}
		if pc.Tuple.SrcPort != tc.src || pc.Tuple.DstPort != tc.dst {
			t.Errorf("%s: ports %d → %d, want %d → %d", tc.name, pc.Tuple.SrcPort, pc.Tuple.DstPort, tc.src, tc.dst)
		}
	}
	// SCTP without a transport: wire.Ports knows its ports.
	b := udp4Bytes()
	b[9] = wire.ProtocolSCTP
	wire.IPv4(b).SetChecksum(0)
	wire.IPv4(b).SetChecksum(wire.IPv4(b).CalculateChecksum())
	pkt.SetData(b)
	pkt.SetNetworkHeader()
	var pc pipeline.PacketContext
	if !pipeline.ParseTuple(nil, pkt, &pc) || pc.Tuple.Proto != wire.ProtocolSCTP || pc.Tuple.DstPort != 2000 {
		t.Errorf("SCTP tuple %+v", pc.Tuple)
	}
}
