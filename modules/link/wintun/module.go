// Package wintun is link.wintun: a Windows layer-3 tunnel through the
// Wintun driver (golang.zx2c4.com/wintun). Packets are bare IPv4/IPv6, as on
// a Linux TUN device. A reader goroutine locked to its OS thread drains the
// session's receive ring in batches (ReceivePacket until the ring is empty,
// up to batch packets, each copied into a pooled packet and released to the
// ring at once) and sleeps on the session's read-wait event when it is
// empty; WritePackets allocates, fills and sends one ring slot per packet,
// dropping when the ring is full.
//
// The module registers on every OS; anywhere but Windows it fails in
// Provision with "not supported on <os> (Wintun is a Windows driver)".
//
// Configuration (besides the stack's link keys name, module, mtu,
// addresses, neighbors, forwarding):
//
//	device: pipestack0      # required: the adapter name (created when missing)
//	tunnel_type: pipestack  # the adapter's tunnel type when created
//	guid: "{…}"             # optional: the GUID requested for a new adapter
//	create: true            # create the adapter when it does not exist (default true)
//	ring_capacity: 8388608  # session ring size, bytes: a power of two, 128 KiB..64 MiB
//	batch: 64               # packets per delivered batch
package wintun

import (
	"errors"
	"fmt"
	"regexp"
	"runtime"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is link.wintun's configuration.
type Module struct {
	Device       string `yaml:"device"`
	TunnelType   string `yaml:"tunnel_type"`
	GUID         string `yaml:"guid"`
	Create       *bool  `yaml:"create"`
	RingCapacity int    `yaml:"ring_capacity"`
	Batch        int    `yaml:"batch"`

	create bool
	name   string
}

// Defaults and limits (the ring limits are Wintun's).
const (
	DefaultTunnelType   = "pipestack"
	DefaultRingCapacity = 8 << 20
	DefaultBatch        = 64
	ringCapacityMin     = 0x20000
	ringCapacityMax     = 0x4000000
)

var guidPattern = regexp.MustCompile(`^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$`)

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "link.wintun",
		Summary: "Windows layer-3 tunnel through the Wintun driver (batched ring reads; Windows only)",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults. Anywhere but Windows it fails.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if !supported {
		return fmt.Errorf("not supported on %s (Wintun is a Windows driver)", runtime.GOOS)
	}
	m.name = ctx.Instance
	if m.TunnelType == "" {
		m.TunnelType = DefaultTunnelType
	}
	m.create = true
	if m.Create != nil {
		m.create = *m.Create
	}
	if m.RingCapacity == 0 {
		m.RingCapacity = DefaultRingCapacity
	}
	if m.Batch == 0 {
		m.Batch = DefaultBatch
	}
	return nil
}

// Validate checks the configuration; it opens nothing.
func (m *Module) Validate() error {
	if m.Device == "" {
		return errors.New("device is required (the Wintun adapter name)")
	}
	if len(m.Device) > 127 {
		return fmt.Errorf("device %q is longer than 127 characters", m.Device)
	}
	if m.GUID != "" && !guidPattern.MatchString(m.GUID) {
		return fmt.Errorf("guid %q is not a GUID ({xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx})", m.GUID)
	}
	rc := m.RingCapacity
	if rc < ringCapacityMin || rc > ringCapacityMax || rc&(rc-1) != 0 {
		return fmt.Errorf("ring_capacity %d: a power of two from %d to %d", rc, ringCapacityMin, ringCapacityMax)
	}
	if m.Batch < 1 || m.Batch > 1024 {
		return fmt.Errorf("batch %d out of range 1..1024", m.Batch)
	}
	return nil
}

// LinkKey: the adapter and the session's geometry.
func (m *Module) LinkKey() string {
	return fmt.Sprintf("%s|%s|%s|%t|%d|%d", m.Device, m.TunnelType, m.GUID, m.create, m.RingCapacity, m.Batch)
}

// OpenLink opens (or creates) the adapter and starts a session.
func (m *Module) OpenLink(ctx *pipeline.Context) (pipeline.LinkEndpoint, error) {
	return open(ctx, m)
}

var (
	_ pipeline.LinkModule  = (*Module)(nil)
	_ pipeline.Provisioner = (*Module)(nil)
	_ pipeline.Validator   = (*Module)(nil)
)
