// Package channel is the in-memory link (link.channel): packets written by
// the stack queue up to be read by Go code, and Go code injects packets as if
// received. Two channel links can be piped together to build whole
// topologies of stacks in one process. It frames packets as bare IP
// (framing: ip, the default) or as Ethernet (framing: ethernet).
//
// Configuration (besides the stack's own link keys name, module, mtu,
// addresses, neighbors):
//
//	framing: ip | ethernet   # default ip
//	mac: 02:00:00:00:00:01   # ethernet only; default derived from the link name
//	queue: 1024              # outbound queue capacity in packets
//	device: sim0             # a simulated device (RemoveDevice, RestoreDevice); default none
package channel

import (
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is link.channel's configuration.
type Module struct {
	Framing string `yaml:"framing"`
	MAC     string `yaml:"mac"`
	Queue   int    `yaml:"queue"`
	Device  string `yaml:"device"`
	// Offload declares GSO and checksum offloads (a TUN link with
	// virtio-net headers, in memory): TCP then sends TSO super-packets.
	Offload bool `yaml:"offload"`

	mac  wire.MAC
	name string
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "link.channel",
		Summary: "in-memory link: inject and read packets from Go, pipe stacks together (IP or Ethernet framing)",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults.
func (m *Module) Provision(ctx *pipeline.Context) error {
	m.name = ctx.Instance
	if m.Framing == "" {
		m.Framing = "ip"
	}
	if m.Queue == 0 {
		m.Queue = 1024
	}
	if m.MAC != "" {
		mac, err := wire.ParseMAC(m.MAC)
		if err != nil {
			return fmt.Errorf("mac: %w", err)
		}
		m.mac = mac
	} else {
		h := fnv.New32a()
		h.Write([]byte(ctx.Instance))
		s := h.Sum32()
		m.mac = wire.MAC{0x02, 0x50, byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
	}
	return nil
}

// Validate checks the configuration.
func (m *Module) Validate() error {
	switch m.Framing {
	case "ip", "ethernet":
	default:
		return fmt.Errorf("framing %q is not one of ip, ethernet", m.Framing)
	}
	if m.Queue < 1 || m.Queue > 1<<20 {
		return fmt.Errorf("queue %d out of range 1..1048576", m.Queue)
	}
	if m.Framing == "ethernet" && (m.mac.IsMulticast() || m.mac.IsZero()) {
		return errors.New("mac must be a unicast address")
	}
	return nil
}

// LinkKey: a change of framing, address, queue size or device makes a new
// link.
func (m *Module) LinkKey() string {
	return fmt.Sprintf("%s|%s|%d|%s|%v", m.Framing, m.mac, m.Queue, m.Device, m.Offload)
}

// OpenLink creates the endpoint.
func (m *Module) OpenLink(ctx *pipeline.Context) (pipeline.LinkEndpoint, error) {
	mtu := ctx.LinkMTU
	if mtu == 0 {
		mtu = 1500
	}
	e := New(Options{Name: m.name, MTU: mtu, Ethernet: m.Framing == "ethernet", MAC: m.mac, Queue: m.Queue, Pool: ctx.Pool, Device: m.Device, Offload: m.Offload})
	if err := openDevice(e); err != nil {
		return nil, err
	}
	return e, nil
}

var (
	_ pipeline.LinkModule  = (*Module)(nil)
	_ pipeline.Provisioner = (*Module)(nil)
	_ pipeline.Validator   = (*Module)(nil)
)
