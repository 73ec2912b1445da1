package pipelinetest

import (
	"errors"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(CollectModule)) }

// CollectModule (transport.collect, registered by importing this package,
// for tests) is a transport protocol that copies every packet delivered to
// it into the Collector of its name:
//
//	modules:
//	  - {module: transport.collect, protocol: 1, name: a-icmp}
type CollectModule struct {
	Protocol int    `yaml:"protocol"`
	Name     string `yaml:"name"`
}

// PipelineModule implements pipeline.Module.
func (*CollectModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "transport.collect",
		Summary: "test only: collects the packets of one IP protocol delivered to the stack",
		New:     func() pipeline.Module { return new(CollectModule) },
	}
}

// Validate checks the protocol number and name.
func (m *CollectModule) Validate() error {
	if m.Protocol < 1 || m.Protocol > 255 {
		return errors.New("protocol must be 1..255")
	}
	if m.Name == "" {
		return errors.New("name is required")
	}
	return nil
}

// TransportProtocol implements pipeline.TransportModule.
func (m *CollectModule) TransportProtocol() pipeline.TransportProtocol {
	return &collectProto{num: pipeline.TransportProtocolNumber(m.Protocol), c: Collected(m.Name)}
}

type collectProto struct {
	num pipeline.TransportProtocolNumber
	c   *Collector
}

func (p *collectProto) Number() pipeline.TransportProtocolNumber { return p.num }
func (p *collectProto) ParsePorts(b []byte) (uint16, uint16, bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	return uint16(b[0])<<8 | uint16(b[1]), uint16(b[2])<<8 | uint16(b[3]), true
}

func (p *collectProto) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		p.c.add(append([]byte(nil), pkt.NetworkHeader()...))
		pkt.Release()
	}
}

var (
	_ pipeline.TransportModule   = (*CollectModule)(nil)
	_ pipeline.TransportProtocol = (*collectProto)(nil)
)
