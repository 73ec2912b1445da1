package cli_test

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Two modules that exist only in this test binary, so that the CLI is tested
// on its own (and shows that any registered module works with it):
//
//	test.link          a link that opens nothing; keys device, fail
//	network.testproto  an "IPv4" protocol that drops everything; key fail
//
// fail: makes Validate fail with that text.

func init() {
	pipeline.RegisterModule(new(testLink))
	pipeline.RegisterModule(new(testProto))
}

// links counts opened and closed test links: after a run every one opened
// must be closed.
var links struct {
	opened, closed atomic.Int64
}

type testLink struct {
	Device string `yaml:"device"`
	Fail   string `yaml:"fail"`
}

func (*testLink) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "test.link", Summary: "a link for tests", New: func() pipeline.Module { return new(testLink) }}
}

func (l *testLink) Validate() error {
	if l.Fail != "" {
		return errors.New(l.Fail)
	}
	return nil
}

func (l *testLink) LinkKey() string { return l.Device }

func (l *testLink) OpenLink(*pipeline.Context) (pipeline.LinkEndpoint, error) {
	links.opened.Add(1)
	return &memLink{}, nil
}

type memLink struct {
	mu     sync.Mutex
	d      pipeline.NetworkDispatcher
	closed bool
}

func (*memLink) MTU() int                                { return 1500 }
func (*memLink) MaxHeaderLength() int                    { return 0 }
func (*memLink) LinkAddress() wire.MAC                   { return wire.MAC{} }
func (*memLink) Capabilities() pipeline.LinkCapabilities { return 0 }

func (m *memLink) Attach(d pipeline.NetworkDispatcher) {
	m.mu.Lock()
	m.d = d
	m.mu.Unlock()
}

func (m *memLink) WritePackets(pkts []*pipeline.Packet) int {
	pipeline.ReleaseBatch(pkts)
	return 0
}

func (m *memLink) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		links.closed.Add(1)
	}
	return nil
}

type testProto struct {
	Fail string `yaml:"fail"`
}

func (*testProto) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "network.testproto", Summary: "a network protocol for tests", New: func() pipeline.Module { return new(testProto) }}
}

func (p *testProto) Validate() error {
	if p.Fail != "" {
		return errors.New(p.Fail)
	}
	return nil
}

func (p *testProto) NetworkProtocol() pipeline.NetworkProtocol { return dropProto{} }

// dropProto claims IPv4 (so that IPv4 addresses are accepted) and drops
// every packet.
type dropProto struct{}

func (dropProto) Number() pipeline.NetworkProtocolNumber                         { return pipeline.IPv4ProtocolNumber }
func (dropProto) NewEndpoint(pipeline.NetworkInterface) pipeline.NetworkEndpoint { return dropEP{} }

type dropEP struct{}

func (dropEP) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	for i, p := range pkts {
		if p != nil {
			b.Drop(p, nil)
			pkts[i] = nil
		}
	}
}

func (e dropEP) WritePackets(b *pipeline.Batch, _ pipeline.RouteInfo, _ pipeline.NetworkHeaderParams, pkts []*pipeline.Packet) {
	e.HandlePackets(b, pkts)
}

func (dropEP) ReturnError(b *pipeline.Batch, pkt *pipeline.Packet, _ pipeline.TransportErrorKind) {
	b.Drop(pkt, nil)
}

func (dropEP) Close() {}

var (
	_ pipeline.LinkModule    = (*testLink)(nil)
	_ pipeline.Validator     = (*testLink)(nil)
	_ pipeline.NetworkModule = (*testProto)(nil)
	_ pipeline.Validator     = (*testProto)(nil)
	_ pipeline.LinkEndpoint  = (*memLink)(nil)
)
