//go:build !race

package conntrack

import (
	"fmt"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestPrefixTranslationZeroAllocs: a NETMAPed flow and NPTv6-translated
// packets allocate nothing per packet (exact count over 12,800 each).
func TestPrefixTranslationZeroAllocs(t *testing.T) {
	nr := newNATRig(t, netmapRouter)
	pipelinetest.ForwardZeroAllocs(t, nr.n, nr.a, nr.b, udp("10.0.1.9", "10.0.2.2", 1234, 53), func(b []byte) error {
		if [4]byte(b[12:16]) != [4]byte{192, 0, 2, 9} {
			return fmt.Errorf("not mapped: from % x", b[12:16])
		}
		return nil
	}, nil)
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", nptRouter, pipeline.Options{Clock: clk})
	p := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "fd01:203:405:1::1234", Dst: "2001:db8:2::2", SrcPort: 4000, DstPort: 53, Payload: 20}.Bytes()
	pipelinetest.ForwardZeroAllocs(t, n, n.Link(t, "a"), n.Link(t, "b"), p, func(b []byte) error {
		if b[8] != 0x20 || b[14] != 0xd5 || b[15] != 0x50 {
			return fmt.Errorf("not translated: from % x", b[8:24])
		}
		return nil
	}, nil)
}
