package pipeline_test

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func init() { pipeline.RegisterModule(new(addrListenModule)) }

// addrListenModule (transport.addrlisten) records the AddressEvents it is
// told, in one log the stack's generations share.
type addrListenModule struct{ Log string }

var addrLogs sync.Map // name -> *addrLog

type addrLog struct {
	mu  sync.Mutex
	evs []string
}

func (*addrListenModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "transport.addrlisten", Summary: "test only: records address events", New: func() pipeline.Module { return new(addrListenModule) }}
}

func (m *addrListenModule) TransportProtocol() pipeline.TransportProtocol { return addrListenProto{} }

func (m *addrListenModule) AddressEvent(ev pipeline.AddressEvent) {
	l, _ := addrLogs.LoadOrStore(m.Log, new(addrLog))
	lg := l.(*addrLog)
	lg.mu.Lock()
	lg.evs = append(lg.evs, fmt.Sprintf("nic %d down %v removed %v", ev.NIC, ev.Down, ev.Removed))
	lg.mu.Unlock()
}

type addrListenProto struct{}

func (addrListenProto) Number() pipeline.TransportProtocolNumber          { return 252 }
func (addrListenProto) ParsePorts([]byte) (uint16, uint16, bool)          { return 0, 0, false }
func (addrListenProto) HandlePackets(*pipeline.Batch, []*pipeline.Packet) {}

// TestAddressEvents: the AddressListener contract — a reload that takes
// configured addresses from a kept link names them; a reload without a link
// reports it down; a device that goes reports its link down; a removed
// dynamic address is named; an unchanged reload, a reload that only adds
// addresses and a dynamic address added say nothing.
func TestAddressEvents(t *testing.T) {
	dev := pt.UniqueName(t)
	cfg := func(bAddrs string, withC bool) string {
		s := `
name: r
modules: [network.ipv4, network.ipv6, {module: transport.addrlisten, log: ` + dev + `}]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, device: ` + dev + `, addresses: [` + bAddrs + `]}
`
		if withC {
			s += "  - {name: c, module: link.channel, addresses: [10.0.3.1/24]}\n"
		}
		return s
	}
	n := pt.NewNode(t, "r", cfg(`10.0.2.1/24, "2001:db8:2::1/64"`, true), pipeline.Options{Clock: pt.NewManualClock()})
	b, _ := n.Stack.NIC("b")
	c, _ := n.Stack.NIC("c")
	events := func() []string {
		l, _ := addrLogs.LoadOrStore(dev, new(addrLog))
		lg := l.(*addrLog)
		lg.mu.Lock()
		defer lg.mu.Unlock()
		out := lg.evs
		lg.evs = nil
		return out
	}
	expect := func(what string, want ...string) {
		t.Helper()
		got := events()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: events %q, want %q", what, got, want)
		}
	}
	expect("start")
	must := func(s string) {
		t.Helper()
		if err := n.Reload(s); err != nil {
			t.Fatal(err)
		}
	}
	must(cfg(`10.0.2.1/24, 10.0.2.2/24, "2001:db8:2::1/64"`, true))
	expect("an address added")
	must(cfg(`10.0.2.2/24`, false))
	expect("two addresses and link c gone",
		fmt.Sprintf("nic %d down false removed [10.0.2.1 2001:db8:2::1]", b.ID()),
		fmt.Sprintf("nic %d down true removed []", c.ID()))
	must(cfg(`10.0.2.2/24`, false))
	expect("an unchanged reload")

	ll := netip.MustParsePrefix("fe80::99/64")
	b.SetDynamicAddress(pipeline.AddressInfo{Prefix: ll})
	expect("a dynamic address added")
	if !b.RemoveDynamicAddress(ll.Addr()) {
		t.Fatal("the dynamic address was not there")
	}
	expect("a dynamic address removed", fmt.Sprintf("nic %d down false removed [fe80::99]", b.ID()))

	channel.RemoveDevice(dev)
	t.Cleanup(func() { channel.RestoreDevice(dev) })
	var got []string
	pt.Eventually(t, 5*time.Second, func() bool { got = append(got, events()...); return len(got) > 0 }, "no event after b's device went")
	time.Sleep(10 * time.Millisecond)
	got = append(got, events()...)
	if want := fmt.Sprintf("nic %d down true removed []", b.ID()); !slices.Equal(got, []string{want}) || b.State().Up {
		t.Errorf("b's device gone: events %q, want %q (and b down: %+v)", got, want, b.State())
	}
}
