package channel_test

import (
	"context"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

type sink struct{ got []*pipeline.Packet }

func (s *sink) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	for i, p := range pkts {
		if p != nil {
			s.got = append(s.got, p)
			pkts[i] = nil
		}
	}
}

var mac = wire.MAC{2, 0, 0, 0, 0, 1}

func frame(dst wire.MAC, typ uint16, payload ...byte) []byte {
	b := make([]byte, 14+len(payload))
	wire.Ethernet(b).Encode(&wire.EthernetFields{Dst: dst, Src: wire.MAC{2, 0, 0, 0, 0, 9}, Type: typ})
	copy(b[14:], payload)
	return b
}

func TestEthernetReceive(t *testing.T) {
	ep := channel.New(channel.Options{Ethernet: true, MAC: mac})
	var s sink
	ep.Attach(&s)
	ep.InjectFrames([][]byte{
		frame(mac, wire.EtherTypeIPv4, 0x45, 1, 2),
		frame(wire.BroadcastMAC, wire.EtherTypeARP, 1),
		frame(wire.MAC{2, 0, 0, 0, 0, 2}, wire.EtherTypeIPv4, 0x45), // another host's
		{1, 2, 3}, // too short
	})
	if len(s.got) != 2 || ep.RxOtherHost.Load() != 1 || ep.RxMalformed.Load() != 1 {
		t.Fatalf("delivered %d, other host %d, malformed %d", len(s.got), ep.RxOtherHost.Load(), ep.RxMalformed.Load())
	}
	p := s.got[0]
	if p.NetProto != pipeline.IPv4ProtocolNumber || p.PktType != pipeline.PacketHost || len(p.Data()) != 3 || p.Data()[0] != 0x45 || len(p.LinkHeader()) != 14 {
		t.Errorf("first packet: proto %#x type %d data % x", p.NetProto, p.PktType, p.Data())
	}
	if q := s.got[1]; q.NetProto != pipeline.ARPProtocolNumber || q.PktType != pipeline.PacketBroadcast {
		t.Errorf("second packet: proto %#x type %d", q.NetProto, q.PktType)
	}
	pipeline.ReleaseBatch(s.got)
}

func TestWriteQueueAndPipe(t *testing.T) {
	a := channel.New(channel.Options{Ethernet: true, MAC: mac, Queue: 2})
	pool := pipeline.DefaultPool
	mk := func() *pipeline.Packet {
		p := pool.Get(64)
		b, _ := p.Append(20)
		b[0] = 0x45
		p.NetProto = pipeline.IPv4ProtocolNumber
		p.RemoteLinkAddr = wire.MAC{2, 0, 0, 0, 0, 7}
		return p
	}
	if n := a.WritePackets([]*pipeline.Packet{mk(), mk(), mk()}); n != 2 || a.TxDropped.Load() != 1 {
		t.Fatalf("sent %d dropped %d, want 2 and 1 (queue of 2)", n, a.TxDropped.Load())
	}
	buf := make([]*pipeline.Packet, 4)
	n, err := a.ReadWait(context.Background(), buf)
	if err != nil || n != 2 {
		t.Fatalf("read %d, %v", n, err)
	}
	eth := wire.Ethernet(buf[0].Data())
	if eth.Dst() != (wire.MAC{2, 0, 0, 0, 0, 7}) || eth.Src() != mac || eth.Type() != wire.EtherTypeIPv4 {
		t.Errorf("pushed header % x", buf[0].Data()[:14])
	}
	pipeline.ReleaseBatch(buf[:n])

	// A cable: what a writes, b receives as fresh packets.
	b := channel.New(channel.Options{Ethernet: true, MAC: wire.MAC{2, 0, 0, 0, 0, 7}})
	var s sink
	done := make(chan struct{})
	b.Attach(dispatcherFunc(func(pkts []*pipeline.Packet) { s.DeliverNetworkPackets(pkts); close(done) }))
	stop := channel.Pipe(a, b)
	defer stop()
	p := mk()
	p.OutNIC = 3
	a.WritePackets([]*pipeline.Packet{p})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing came through the pipe")
	}
	if got := s.got[0]; got.OutNIC != 0 || got.PktType != pipeline.PacketHost || len(got.Data()) != 20 {
		t.Errorf("piped packet kept metadata or lost bytes: out %d len %d", got.OutNIC, len(got.Data()))
	}
	pipeline.ReleaseBatch(s.got)
	a.Close()
	if n := a.WritePackets([]*pipeline.Packet{mk()}); n != 0 {
		t.Error("a closed endpoint accepted a packet")
	}
}

type dispatcherFunc func([]*pipeline.Packet)

func (f dispatcherFunc) DeliverNetworkPackets(p []*pipeline.Packet) { f(p) }
