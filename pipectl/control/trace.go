package control

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// HookRecord is what the tables at one hook did to one traced packet
// (pipeline.HookTrace as pipectl replay and trace print it).
type HookRecord struct {
	Hook      string       `json:"hook"`
	In        string       `json:"in,omitempty"`
	Out       string       `json:"out,omitempty"`
	Packet    string       `json:"packet"` // Summary of the packet as the tables left it
	Malformed bool         `json:"malformed,omitempty"`
	Steps     []StepRecord `json:"steps"`
	Verdict   string       `json:"verdict"` // ACCEPT, DROP, STOLEN
	// CT is the packet's connection-tracking state after the hook
	// (CTName), when a conntrack module tracked it.
	CT string `json:"ct,omitempty"`
}

// CTName is a packet's conntrack state as conntrack's states and
// directions are spelled: "NEW original", "ESTABLISHED reply", "RELATED
// original", "INVALID", "UNTRACKED"; "" for CTNone.
func CTName(c pipeline.CTInfo) string {
	st := map[pipeline.CTInfo]string{pipeline.CTNew: "NEW", pipeline.CTEstablished: "ESTABLISHED", pipeline.CTRelated: "RELATED",
		pipeline.CTInvalid: "INVALID", pipeline.CTUntracked: "UNTRACKED"}[c.State()]
	switch {
	case c == pipeline.CTNone:
		return ""
	case st == "":
		return fmt.Sprintf("state %d", c.State())
	case c.State() == pipeline.CTInvalid || c.State() == pipeline.CTUntracked:
		return st
	case c&pipeline.CTReply != 0:
		return st + " reply"
	}
	return st + " original"
}

// StepRecord is one rule whose target ran.
type StepRecord struct {
	Table string `json:"table"`
	Chain string `json:"chain"`
	// Rule is the rule's number in its chain (from 1, as
	// --line-numbers); 0 with Policy set for a chain's policy.
	Rule    int    `json:"rule,omitempty"`
	Policy  bool   `json:"policy,omitempty"`
	Text    string `json:"text,omitempty"`
	Verdict string `json:"verdict"`
	Hotdrop bool   `json:"hotdrop,omitempty"`
	// Rewrite lists what the target changed: "mark 0x0->0x1", "ttl
	// 64->65", "byte 40 0x05->0x04".
	Rewrite []string `json:"rewrite,omitempty"`
}

// VerdictName is a verdict as iptables spells it.
func VerdictName(v pipeline.Verdict) string {
	switch v {
	case pipeline.VerdictContinue:
		return "CONTINUE"
	case pipeline.VerdictAccept:
		return "ACCEPT"
	case pipeline.VerdictDrop:
		return "DROP"
	case pipeline.VerdictReturn:
		return "RETURN"
	case pipeline.VerdictJump:
		return "JUMP"
	case pipeline.VerdictStolen:
		return "STOLEN"
	case pipeline.VerdictGoto:
		return "GOTO"
	}
	return fmt.Sprintf("verdict(%d)", v)
}

// NewHookRecord converts a trace; name gives a NIC's link name. It copies
// what it keeps (ht is valid only during Tracer.Trace).
func NewHookRecord(ht *pipeline.HookTrace, name func(pipeline.NICID) string) HookRecord {
	r := HookRecord{Hook: ht.Hook.String(), Malformed: ht.Malformed, Verdict: VerdictName(ht.Verdict), Steps: []StepRecord{}}
	if ht.InNIC != 0 {
		r.In = name(ht.InNIC)
	}
	if ht.OutNIC != 0 {
		r.Out = name(ht.OutNIC)
	}
	if ht.Pkt != nil {
		r.Packet = Summary(ht.Pkt.Data())
		r.CT = CTName(ht.Pkt.CTInfo)
	}
	var net []byte
	if ht.Pkt != nil {
		net = ht.Pkt.Data()
	}
	for _, s := range ht.Steps {
		sr := StepRecord{Table: s.Table, Chain: strings.ToUpper(s.Chain), Rule: s.Rule, Text: s.Text, Verdict: VerdictName(s.Verdict), Hotdrop: s.Hotdrop}
		if strings.HasPrefix(s.Text, "-P ") || s.Rule == 0 {
			sr.Policy, sr.Rule = true, 0
		}
		if s.MarkBefore != s.MarkAfter {
			sr.Rewrite = append(sr.Rewrite, fmt.Sprintf("mark %#x->%#x", s.MarkBefore, s.MarkAfter))
		}
		sr.Rewrite = append(sr.Rewrite, describeChanges(net, s.Changes)...)
		r.Steps = append(r.Steps, sr)
	}
	return r
}

// describeChanges names the rewritten bytes of an IP packet: the header
// fields a mangle target changes by name, the rest by offset.
func describeChanges(pkt []byte, cs []pipeline.ByteChange) []string {
	var out []string
	v6 := len(pkt) > 0 && pkt[0]>>4 == 6
	for i := 0; i < len(cs); i++ {
		c := cs[i]
		switch {
		case !v6 && c.Offset == 1:
			out = append(out, fmt.Sprintf("tos %#02x->%#02x (dscp %d->%d)", c.Old, c.New, c.Old>>2, c.New>>2))
		case !v6 && c.Offset == 8:
			out = append(out, fmt.Sprintf("ttl %d->%d", c.Old, c.New))
		case !v6 && (c.Offset == 10 || c.Offset == 11):
			if i+1 < len(cs) && cs[i+1].Offset == 11 {
				i++
			}
			out = append(out, "ip checksum")
		case v6 && c.Offset == 7:
			out = append(out, fmt.Sprintf("hop limit %d->%d", c.Old, c.New))
		case v6 && c.Offset <= 1:
			out = append(out, fmt.Sprintf("traffic class byte %d %#02x->%#02x", c.Offset, c.Old, c.New))
		default:
			out = append(out, fmt.Sprintf("byte %d %#02x->%#02x", c.Offset, c.Old, c.New))
		}
	}
	return out
}

// Summary is one line about an IP packet (or an Ethernet frame): family,
// protocol, addresses and ports or ICMP type, length, TTL.
func Summary(b []byte) string {
	if len(b) == 0 {
		return "empty"
	}
	switch b[0] >> 4 {
	case 4:
		ip := wire.IPv4(b)
		if ip.Check() != nil {
			return fmt.Sprintf("malformed ipv4 (%d bytes)", len(b))
		}
		src, dst := netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst())
		frag := ""
		if ip.FragmentOffset() != 0 || ip.MoreFragments() {
			frag = fmt.Sprintf(" frag off %d", ip.FragmentOffset())
		}
		return l4Summary(ip.Protocol(), src, dst, ip.Payload(), ip.FragmentOffset() != 0) + fmt.Sprintf(" len %d ttl %d%s", ip.TotalLength(), ip.TTL(), frag)
	case 6:
		ip := wire.IPv6(b)
		if ip.Check() != nil {
			return fmt.Sprintf("malformed ipv6 (%d bytes)", len(b))
		}
		src, dst := netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst())
		x, err := ip.WalkExtensions(64)
		if err != nil {
			return fmt.Sprintf("ipv6 %s > %s bad extension headers", src, dst)
		}
		end := wire.IPv6HeaderSize + int(ip.PayloadLength())
		return l4Summary(x.Protocol, src, dst, ip[x.ProtocolOffset:end], x.Fragment && x.FragmentOffset != 0) + fmt.Sprintf(" len %d hlim %d", end, ip.HopLimit())
	}
	return fmt.Sprintf("not ip (%d bytes)", len(b))
}

// FrameSummary is Summary of a frame of a link: past the Ethernet header
// (ARP named) when eth is set.
func FrameSummary(b []byte, eth bool) string {
	if !eth {
		return Summary(b)
	}
	e := wire.Ethernet(b)
	if e.Check() != nil {
		return fmt.Sprintf("malformed ethernet (%d bytes)", len(b))
	}
	pre := fmt.Sprintf("%s > %s ", e.Src(), e.Dst())
	body := b[wire.EthernetHeaderSize:]
	switch e.Type() {
	case 0x0800, 0x86dd:
		return pre + Summary(body)
	case 0x0806:
		if len(body) >= 28 {
			op := "request"
			if binary.BigEndian.Uint16(body[6:]) == 2 {
				op = "reply"
			}
			return pre + fmt.Sprintf("arp %s who-has %s tell %s", op, netip.AddrFrom4([4]byte(body[24:28])), netip.AddrFrom4([4]byte(body[14:18])))
		}
		return pre + "arp (short)"
	}
	return pre + fmt.Sprintf("ethertype %#04x (%d bytes)", e.Type(), len(body))
}

func l4Summary(proto uint8, src, dst netip.Addr, l4 []byte, laterFrag bool) string {
	fam := "ipv4"
	if src.Is6() {
		fam = "ipv6"
	}
	if laterFrag {
		return fmt.Sprintf("%s proto %d %s > %s", fam, proto, src, dst)
	}
	switch proto {
	case 6, 17:
		name := "tcp"
		if proto == 17 {
			name = "udp"
		}
		if len(l4) < 4 {
			return fmt.Sprintf("%s %s > %s (truncated)", name, src, dst)
		}
		s := fmt.Sprintf("%s %s > %s", name, netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4)), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:])))
		if proto == 6 && len(l4) >= 14 {
			s += " " + tcpFlags(l4[13])
		}
		return s
	case 1, 58:
		name := "icmp"
		if proto == 58 {
			name = "icmpv6"
		}
		if len(l4) < 2 {
			return fmt.Sprintf("%s %s > %s (truncated)", name, src, dst)
		}
		s := fmt.Sprintf("%s %s > %s type %d code %d", name, src, dst, l4[0], l4[1])
		// An error quotes the packet it is about.
		if (proto == 1 && (l4[0] == 3 || l4[0] == 11 || l4[0] == 12)) || (proto == 58 && l4[0] < 128) {
			if len(l4) > 8 {
				s += " [about: " + Summary(l4[8:]) + "]"
			}
		}
		return s
	}
	return fmt.Sprintf("%s proto %d %s > %s", fam, proto, src, dst)
}

func tcpFlags(f byte) string {
	const names = "FSRPAUEC"
	var b strings.Builder
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			b.WriteByte(names[i])
		}
	}
	if b.Len() == 0 {
		return "[.]"
	}
	return "[" + b.String() + "]"
}

// FormatHook writes a hook record as indented text lines.
func FormatHook(w io.Writer, indent string, r HookRecord) {
	where := ""
	if r.In != "" {
		where += " in " + r.In
	}
	if r.Out != "" {
		where += " out " + r.Out
	}
	if r.Malformed {
		fmt.Fprintf(w, "%s%s%s: malformed, DROP (hook_malformed)\n", indent, r.Hook, where)
		return
	}
	ct := ""
	if r.CT != "" {
		ct = " [ct " + r.CT + "]"
	}
	fmt.Fprintf(w, "%s%s%s: %s%s\n", indent, r.Hook, where, r.Verdict, ct)
	for _, s := range r.Steps {
		what := fmt.Sprintf("rule %d", s.Rule)
		if s.Policy {
			what = "policy"
		}
		text := ""
		if s.Text != "" {
			text = " `" + s.Text + "`"
		}
		hd := ""
		if s.Hotdrop {
			hd = " (hotdrop: truncated header)"
		}
		fmt.Fprintf(w, "%s  %s/%s %s%s -> %s%s\n", indent, s.Table, s.Chain, what, text, s.Verdict, hd)
		for _, rw := range s.Rewrite {
			fmt.Fprintf(w, "%s    rewrite: %s\n", indent, rw)
		}
	}
}
