//go:build !race

package pipeline_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// ParseTuple allocates nothing, through a configured transport's ParsePorts
// as through wire.Ports.
func TestParseTupleZeroAllocs(t *testing.T) {
	pkt := pipeline.DefaultPool.Get(64)
	defer pkt.Release()
	pkt.SetData(udp4Bytes())
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	var pc pipeline.PacketContext
	for _, td := range []pipeline.TransportDispatcher{nil, fakeTransports{swappedPorts{pipeline.UDPProtocolNumber}}} {
		n := pt.CountMallocs(func() {
			for i := 0; i < 10000; i++ {
				pipeline.ParseTuple(td, pkt, &pc)
			}
		})
		if n != 0 {
			t.Errorf("%d mallocs for 10,000 tuples (%T)", n, td)
		}
	}
}
