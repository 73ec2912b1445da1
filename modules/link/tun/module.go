// Package tun is the TUN link (link.tun, Linux): it creates or attaches a
// TUN device by name, optionally inside a named network namespace, and moves
// bare IP packets between it and the stack.
//
// Configuration (besides the stack's own link keys name, module, mtu,
// addresses, neighbors, forwarding):
//
//	device: ps-tun-a   # interface name (required, at most 15 bytes)
//	netns: ps-a        # network namespace: a name under /run/netns or a path; default: ours
//	queues: 1          # IFF_MULTI_QUEUE queues, one reader thread each (1..64)
//	offload: true      # IFF_VNET_HDR with TSO/USO and checksum offload
//	coalesce: true     # merge TCP segments (and UDP datagrams, with USO) into super-packets on write (needs offload)
//	batch: 32          # most packets delivered to the stack per batch (1..1024)
//	up: true           # set the device up
//
// The stack's mtu: key sets the device's MTU; without it the device keeps
// its own. A device that exists (for instance a persistent one made by
// `ip tuntap add mode tun multi_queue vnet_hdr`) is attached and left as it
// was found when the link closes; one that does not is created and
// disappears when the link closes.
//
// How the data path works (batches, vnet headers, GSO, coalescing) is in
// README.md.
package tun

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is link.tun's configuration.
type Module struct {
	Device   string `yaml:"device"`
	Netns    string `yaml:"netns"`
	Queues   int    `yaml:"queues"`
	Offload  *bool  `yaml:"offload"`
	Coalesce *bool  `yaml:"coalesce"`
	Batch    int    `yaml:"batch"`
	Up       *bool  `yaml:"up"`

	name string
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "link.tun",
		Summary: "TUN device (Linux): create or attach by name, optionally in a network namespace; vnet-hdr GSO offloads and coalescing, optional multi-queue",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults. It opens nothing.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if err := supported(); err != nil {
		return err
	}
	m.name = ctx.Instance
	if m.Queues == 0 {
		m.Queues = 1
	}
	if m.Batch == 0 {
		m.Batch = 32
	}
	t := true
	if m.Offload == nil {
		m.Offload = &t
	}
	if m.Coalesce == nil {
		c := *m.Offload
		m.Coalesce = &c
	}
	if m.Up == nil {
		m.Up = &t
	}
	return nil
}

// Validate checks the configuration.
func (m *Module) Validate() error {
	switch {
	case m.Device == "":
		return errors.New("device: required (the TUN interface name)")
	case len(m.Device) > 15:
		return fmt.Errorf("device %q: longer than 15 bytes", m.Device)
	case strings.ContainsAny(m.Device, "/ \t\n:") || m.Device == "." || m.Device == "..":
		return fmt.Errorf("device %q: not a valid interface name", m.Device)
	case m.Queues < 1 || m.Queues > 64:
		return fmt.Errorf("queues %d out of range 1..64", m.Queues)
	case m.Batch < 1 || m.Batch > 1024:
		return fmt.Errorf("batch %d out of range 1..1024", m.Batch)
	case *m.Coalesce && !*m.Offload:
		return errors.New("coalesce needs offload: true")
	}
	return netns.Check(m.Netns)
}

// LinkKey: another device, namespace, queue count or offload setting means
// reopening; batch size, coalescing and the up state are also fixed at open.
func (m *Module) LinkKey() string {
	return fmt.Sprintf("%s|%s|q%d|o%t|c%t|b%d|u%t", m.Device, m.Netns, m.Queues, *m.Offload, *m.Coalesce, m.Batch, *m.Up)
}

// OpenLink creates or attaches the device.
func (m *Module) OpenLink(ctx *pipeline.Context) (pipeline.LinkEndpoint, error) {
	ep, err := open(options{
		name: m.name, device: m.Device, netns: m.Netns, queues: m.Queues,
		offload: *m.Offload, coalesce: *m.Coalesce, batch: m.Batch, up: *m.Up,
		mtu: ctx.LinkMTU, pool: ctx.Pool, ctx: ctx,
	})
	if err != nil {
		return nil, err
	}
	return ep, nil
}

// options are what open needs, from the module or from Go.
type options struct {
	name, device, netns string
	queues, batch, mtu  int
	offload, coalesce   bool
	up                  bool
	pool                *pipeline.Pool
	ctx                 *pipeline.Context
}

var (
	_ pipeline.LinkModule  = (*Module)(nil)
	_ pipeline.Provisioner = (*Module)(nil)
	_ pipeline.Validator   = (*Module)(nil)
)
