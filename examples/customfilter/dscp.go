package customfilter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// DSCP is filter.target.dscp, as iptables' DSCP target: -j DSCP
// --set-dscp N (0..63, decimal or 0x hex) or --set-dscp-class CLASS (CS0…CS7,
// AF11…AF43, EF, BE) sets the Differentiated Services field — the upper six
// bits of the IPv4 TOS (the header checksum updated incrementally, RFC
// 1624) or of the IPv6 traffic class — keeps the two ECN bits, and
// continues with the next rule. Mangle table only (Tables), as Linux.
type DSCP struct {
	SetDSCP      string `yaml:"set_dscp"`
	SetDSCPClass string `yaml:"set_dscp_class"`

	val uint8
}

// PipelineModule implements pipeline.Module.
func (*DSCP) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "filter.target.dscp",
		Summary: "DSCP: set the DSCP field (-j DSCP --set-dscp-class EF), mangle table",
		New:     func() pipeline.Module { return new(DSCP) },
	}
}

// Options implements filter.Target.
func (*DSCP) Options() []filter.Opt {
	return []filter.Opt{{Name: "set-dscp", Args: 1}, {Name: "set-dscp-class", Args: 1}}
}

// dscpClasses are iptables' class names (its dscp_helper.c table).
var dscpClasses = map[string]uint8{
	"CS0": 0, "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48, "CS7": 56,
	"BE": 0, "EF": 46,
	"AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20, "AF23": 22,
	"AF31": 26, "AF32": 28, "AF33": 30, "AF41": 34, "AF42": 36, "AF43": 38,
}

// Provision parses the value.
func (t *DSCP) Provision(*pipeline.Context) error {
	switch {
	case t.SetDSCP != "" && t.SetDSCPClass != "":
		return fmt.Errorf("give set_dscp or set_dscp_class, not both (iptables: \"DSCP target: Only use --set-dscp ONCE!\")")
	case t.SetDSCP != "":
		n, err := strconv.ParseUint(t.SetDSCP, 0, 8)
		if err != nil || n > 63 {
			return fmt.Errorf("set_dscp %q: DSCP is 0..63 (iptables: \"DSCP `%s' out of range\")", t.SetDSCP, t.SetDSCP)
		}
		t.val = uint8(n)
	case t.SetDSCPClass != "":
		v, ok := dscpClasses[strings.ToUpper(t.SetDSCPClass)]
		if !ok {
			return fmt.Errorf("set_dscp_class %q: not CS0…CS7, AF11…AF43, EF or BE", t.SetDSCPClass)
		}
		t.val = v
	default:
		return fmt.Errorf("give set_dscp (--set-dscp N) or set_dscp_class (--set-dscp-class EF)")
	}
	return nil
}

// Value is the DSCP the target sets (after Provision).
func (t *DSCP) Value() uint8 { return t.val }

// Tables implements filter.TableLimited: the filter refuses the target in
// another table ("DSCP target: only valid in mangle table, not filter").
func (*DSCP) Tables() []string { return []string{"mangle"} }

// Action implements pipeline.Target: it rewrites one header byte in place
// (the length stays), never allocates and continues.
func (t *DSCP) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	nh := pc.Pkt.NetworkHeader()
	switch pc.Pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		if len(nh) < wire.IPv4MinimumSize {
			break
		}
		ip := wire.IPv4(nh)
		old := ip.TOS()
		tos := t.val<<2 | old&3
		if tos != old {
			// Version/IHL and TOS are one 16-bit word of the checksum.
			ow := uint16(nh[0])<<8 | uint16(old)
			nw := uint16(nh[0])<<8 | uint16(tos)
			nh[1] = tos
			ip.SetChecksum(wire.ChecksumUpdate16(ip.Checksum(), ow, nw))
		}
	case pipeline.IPv6ProtocolNumber:
		if len(nh) < wire.IPv6HeaderSize {
			break
		}
		ip := wire.IPv6(nh)
		ip.SetTrafficClass(t.val<<2 | ip.TrafficClass()&3)
	}
	return pipeline.VerdictContinue, 0
}

// Spec implements filter.Target: iptables-save's spelling.
func (t *DSCP) Spec() string { return fmt.Sprintf("-j DSCP --set-dscp 0x%02x", t.val) }

// Label implements filter.Target.
func (*DSCP) Label() string { return "DSCP" }

var (
	_ filter.Target       = (*DSCP)(nil)
	_ filter.TableLimited = (*DSCP)(nil)
)
