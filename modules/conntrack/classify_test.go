package conntrack

import (
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// TestStateConstraintAgrees: filter.match.state's constraint (FieldCTState,
// what pipeline/classify prunes on), and filter.match.conntrack's with
// --ctstate alone, hold exactly where Match matches, for every state mask,
// both senses and every CTInfo byte (the reply bit and the states
// conntrack never sets included).
func TestStateConstraintAgrees(t *testing.T) {
	pkt := pipeline.DefaultPool.Get(64)
	defer pkt.Release()
	pc := &pipeline.PacketContext{Pkt: pkt}
	for mask := uint8(0); mask < stSNAT; mask++ {
		for _, inv := range []bool{false, true} {
			for _, m := range []pipeline.Matcher{&StateMatch{mask: mask, inv: inv}, ctstateOnly(t, mask, inv)} {
				if mask == 0 {
					continue // --ctstate needs a state
				}
				cs := m.(pipeline.ConstraintDescriber).Constraint()
				if len(cs) != 1 || cs[0].Field != pipeline.FieldCTState || m.Fields() != pipeline.FieldCTState {
					t.Fatalf("%T mask %#x: constraint %+v, fields %v", m, mask, cs, m.Fields())
				}
				for info := 0; info < 256; info++ {
					pkt.CTInfo = pipeline.CTInfo(info)
					got, hot := m.Match(pc)
					in := false
					for _, r := range cs[0].Ranges {
						if s := uint32(pkt.CTInfo.State()); r.Lo <= s && s <= r.Hi {
							in = true
						}
					}
					if hot || got != (in != cs[0].Invert) {
						t.Fatalf("%T mask %#x inv %v CTInfo %#x: Match %v (hotdrop %v), constraint %v", m, mask, inv, info, got, hot, in != cs[0].Invert)
					}
				}
			}
		}
	}
	// Any other option, or SNAT/DNAT: not described (it reads the entry).
	for _, c := range []ConntrackMatch{{CTState: "ESTABLISHED", CTDir: "REPLY"}, {CTState: "SNAT"}, {CTState: "NEW,DNAT"}, {CTState: "NEW", CTProto: "tcp"}, {CTStatus: "ASSURED"}} {
		if err := c.Provision(&pipeline.Context{}); err != nil {
			t.Fatal(err)
		}
		if c.Constraint() != nil || c.Fields() != pipeline.FieldOther {
			t.Errorf("%+v: constraint %+v, fields %v", c, c.Constraint(), c.Fields())
		}
	}
}

// ctstateOnly is -m conntrack --ctstate over mask.
func ctstateOnly(t *testing.T, mask uint8, inv bool) *ConntrackMatch {
	m := &ConntrackMatch{CTState: bang(inv) + statesString(mask)}
	if mask == 0 {
		return m
	}
	if err := m.Provision(&pipeline.Context{}); err != nil {
		t.Fatal(err)
	}
	if !m.onlyState || m.state.mask != mask || m.stInv != inv {
		t.Fatalf("--ctstate %q: mask %#x inv %v", m.CTState, m.state.mask, m.stInv)
	}
	return m
}

// TestStateIndexed: a compiled chain of state rules skips the rules whose
// state the packet does not have (the matchers are not called on them).
func TestStateIndexed(t *testing.T) {
	var rules []pipeline.Rule
	masks := []uint8{stNew, stEstablished | stRelated, stInvalid, stUntracked}
	for i := 0; i < 16; i++ {
		rules = append(rules, pipeline.Rule{Matchers: []pipeline.Matcher{&StateMatch{mask: masks[i%4], inv: i >= 12}}, Target: nopTarget{}})
	}
	x := classify.Compile(rules, classify.Options{MinRules: 1})
	pkt := pipeline.DefaultPool.Get(64)
	defer pkt.Release()
	pkt.SetData(make([]byte, 20))
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	pc := &pipeline.PacketContext{Pkt: pkt, L4Off: 20, L4End: 20, Tuple: pipeline.Tuple{Proto: 47, Src: netip.AddrFrom4([4]byte{10, 0, 0, 1}), Dst: netip.AddrFrom4([4]byte{10, 0, 0, 2})}}
	for _, c := range []struct {
		info pipeline.CTInfo
		want []int
	}{
		{pipeline.CTEstablished | pipeline.CTReply, []int{1, 5, 9, 12, 14, 15}},
		{pipeline.CTNew, []int{0, 4, 8, 13, 14, 15}},
		{pipeline.CTNone, []int{2, 6, 10, 12, 13, 15}},
	} {
		pkt.CTInfo = c.info
		var got []int
		for n, _ := x.Next(pc, 0); n < len(rules); n, _ = x.Next(pc, n+1) {
			got = append(got, n)
		}
		if len(got) != len(c.want) {
			t.Fatalf("CTInfo %#x: candidates %v, want %v", c.info, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("CTInfo %#x: candidates %v, want %v", c.info, got, c.want)
			}
		}
	}
}

type nopTarget struct{}

func (nopTarget) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	return pipeline.VerdictContinue, 0
}
