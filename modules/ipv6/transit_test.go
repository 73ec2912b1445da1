package ipv6_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// transitRouter is routerAlone with network.ipv6's
// transit_extension_headers set to mode ("": the default).
func transitRouter(t *testing.T, mode string) *pt.Node {
	mod := "network.ipv6"
	if mode != "" {
		mod = "{module: network.ipv6, transit_extension_headers: " + mode + "}"
	}
	cfg := strings.Replace(routerConfig("ip", ""), "modules: [network.ipv6]", "modules: ["+mod+"]", 1)
	return pt.NewNode(t, "router", cfg, pipeline.Options{Clock: pt.NewManualClock()})
}

// chainOf is n Destination Options headers, the last naming last.
func chainOf(n int, last uint8) []byte {
	var ext []byte
	for i := 0; i < n; i++ {
		next := uint8(wire.ProtocolDestOptions)
		if i == n-1 {
			next = last
		}
		ext = append(ext, optHeader(next)...)
	}
	return ext
}

// Transit packets: by default (pass, RFC 7045, as Linux) a router looks
// only at a Hop-by-Hop header first and the hop limit, and forwards any
// other chain as it is — Hop-by-Hop after Destination Options, 40
// Destination Options headers, a Destination Options header running past
// the payload, an unknown next header. With strict it walks the whole chain
// and drops those (counted; Parameter Problem where RFC 8200 asks for one).
// Delivery to the router itself keeps the strict checks in both modes.
func TestTransitExtensionHeaders(t *testing.T) {
	const src, dst, local = "2001:db8:1::2", "2001:db8:2::2", "2001:db8:1::1"
	udp := udp6(src, dst, 1, 2, 64, []byte("transit"))
	hbhAfterDO := withExt(udp, wire.ProtocolDestOptions, append(optHeader(wire.ProtocolHopByHop), optHeader(wire.ProtocolUDP)...))
	forty := withExt(udp, wire.ProtocolDestOptions, chainOf(40, wire.ProtocolUDP))
	truncDO := withExt(udp, wire.ProtocolDestOptions, optHeader(wire.ProtocolUDP))
	truncDO[41] = 9 // runs past the payload
	unknown := withExt(ip6(src, dst, 253, 64, make([]byte, 8)), wire.ProtocolDestOptions, optHeader(253))
	cases := []struct {
		name   string
		pkt    []byte
		strict string // counter of the drop in strict mode
		param  bool   // strict mode answers Parameter Problem
	}{
		{"hop-by-hop after destination options", hbhAfterDO, "malformed_hop_by_hop_not_first", true},
		{"40 destination options headers", forty, "malformed_too_many_ext_headers", false},
		{"truncated destination options", truncDO, "malformed_ext_header_truncated", false},
		{"unknown next header", unknown, "", false},
	}
	for _, mode := range []string{"", "pass", "strict"} {
		t.Run("mode "+mode, func(t *testing.T) {
			r := transitRouter(t, mode)
			a, b := r.Link(t, "a"), r.Link(t, "b")
			for _, tc := range cases {
				a.InjectFrames([][]byte{tc.pkt})
				fw, back := pt.Drain(b), noNDP(pt.Drain(a))
				dropped := mode == "strict" && tc.strict != ""
				switch {
				case dropped && len(fw) != 0:
					t.Errorf("%s: forwarded", tc.name)
				case dropped:
					if got := r.Counter("ipv6", tc.strict); got != 1 {
						t.Errorf("%s: %s %d, want 1", tc.name, tc.strict, got)
					}
					if want := map[bool]int{true: 1}[tc.param]; len(onlyICMP6(back, false, wire.ICMPv6ParamProblem)) != want {
						t.Errorf("%s: %d packets back, want %d parameter problems", tc.name, len(back), want)
					}
				case len(fw) != 1:
					t.Errorf("%s: forwarded %d packets, want 1 (%s)", tc.name, len(fw), r.DumpCounters())
				case !bytes.Equal(fw[0][8:], tc.pkt[8:]) || fw[0][7] != 63:
					t.Errorf("%s: the packet changed in transit", tc.name)
				case len(back) != 0:
					t.Errorf("%s: %d packets back", tc.name, len(back))
				}
			}
			// The same chains addressed to the router: the strict walk.
			toMe := func(p []byte) []byte {
				q := append([]byte(nil), p...)
				d := a16(local)
				copy(q[24:40], d[:])
				return q
			}
			a.InjectFrames([][]byte{toMe(hbhAfterDO), toMe(forty), toMe(truncDO)})
			if back := onlyICMP6(noNDP(pt.Drain(a)), false, wire.ICMPv6ParamProblem); len(back) != 1 {
				t.Errorf("local delivery: %d parameter problems, want 1 (hop-by-hop not first)", len(back))
			}
			n := uint64(1)
			if mode == "strict" {
				n = 2
			}
			r.WantCounters(t, "ipv6", map[string]uint64{"malformed_hop_by_hop_not_first": n,
				"malformed_too_many_ext_headers": n, "malformed_ext_header_truncated": n})
		})
	}
}

// A Hop-by-Hop header is examined in transit in both modes: one running
// past the payload is dropped (counted), one with an option that must be
// refused gets Parameter Problem.
func TestTransitHopByHop(t *testing.T) {
	for _, mode := range []string{"pass", "strict"} {
		t.Run(mode, func(t *testing.T) {
			r := transitRouter(t, mode)
			a, b := r.Link(t, "a"), r.Link(t, "b")
			udp := udp6("2001:db8:1::2", "2001:db8:2::2", 1, 2, 64, []byte("hbh"))
			trunc := withExt(udp, wire.ProtocolHopByHop, optHeader(wire.ProtocolUDP))
			trunc[41] = 9
			refused := withExt(udp, wire.ProtocolHopByHop, optHeader(wire.ProtocolUDP, 0x9e, 2, 0, 0))
			a.InjectFrames([][]byte{trunc, refused})
			if fw := pt.Drain(b); len(fw) != 0 {
				t.Errorf("forwarded %d packets", len(fw))
			}
			if back := onlyICMP6(noNDP(pt.Drain(a)), false, wire.ICMPv6ParamProblem); len(back) != 1 {
				t.Errorf("%d parameter problems, want 1", len(back))
			}
			r.WantCounters(t, "ipv6", map[string]uint64{"malformed_ext_header_truncated": 1, "unknown_option": 1})
		})
	}
}

func TestTransitExtensionHeadersConfig(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"pass", ""}, {"strict", ""},
		{"loose", `transit_extension_headers: "loose" is not one of pass, strict`},
	} {
		text := fmt.Sprintf("name: x\nmodules: [{module: network.ipv6, transit_extension_headers: %s}]\nlinks:\n  - {name: l, module: link.channel}\n", tc.value)
		cfg, err := pipeline.ParseConfig("v6.yaml", []byte(text))
		if err == nil {
			err = pipeline.Check(cfg)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.value, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "network.ipv6") || !strings.HasPrefix(err.Error(), "v6.yaml:2:")):
			t.Errorf("%s: error %v, want one at v6.yaml:2 naming network.ipv6 and %q", tc.value, err, tc.want)
		}
	}
}
