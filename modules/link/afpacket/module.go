// Package afpacket is the AF_PACKET link (link.afpacket, Linux): Ethernet
// frames on an existing interface (a veth end, a physical NIC), read and
// written in batches by packet sockets.
//
// Receive: one socket per queue (queues > 1 form a PACKET_FANOUT_HASH group,
// so a flow always lands on the same queue), each read by a goroutine locked
// to its OS thread: from a TPACKET_V2 ring (mode ring, the default: the
// kernel copies each frame into a slot and wakes the reader; frames are
// copied out into pooled packets, super-packets too big for a slot come
// through recvmsg), with recvmmsg (mode mmsg: frames land directly in
// pooled packets) or from a TPACKET_V3 block ring (mode block: one wake-up
// per block, but a frame waits until its block is full or its timer
// fires). A batch runs to completion through the stack on that goroutine.
//
// Send: WritePackets pushes the Ethernet header (and the virtio-net header)
// into the headroom and hands the whole batch to one sendmmsg call.
//
// Offloads: with vnet_hdr (the default) frames cross the socket with a
// struct virtio_net_hdr, so a GSO super-packet (up to 64 KiB) and a partial
// checksum travel in one call both ways; the link then advertises CapGSO and
// the checksum offloads. Without it, the link still recognises what a veth
// with offloads delivers — frames over the MTU and partial checksums — from
// the socket's packet status (PACKET_AUXDATA or the ring's tp_status) and
// marks them, so that the stack completes or segments them before they leave
// through a link that cannot.
//
// Configuration (besides the stack's link keys name, module, mtu, addresses,
// neighbors, forwarding):
//
//	device: veth0          # required: an existing Ethernet interface
//	netns: lab-a           # optional: the network namespace (/run/netns/NAME or a path)
//	mode: ring             # ring (default) | mmsg | block
//	queues: 1              # sockets in a PACKET_FANOUT_HASH group, one reader each
//	vnet_hdr: true         # PACKET_VNET_HDR (default true)
//	promiscuous: false     # PACKET_MR_PROMISC while the link is open
//	batch: 64              # frames per recvmmsg / per delivered batch
//	socket_buffer: 4194304 # SO_RCVBUF and SO_SNDBUF, bytes (forced as root)
//	ring: {block_size: 1048576, blocks: 8, frame_size: 2048, timeout_ms: 1}
package afpacket

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is link.afpacket's configuration.
type Module struct {
	Device       string     `yaml:"device"`
	Netns        string     `yaml:"netns"`
	Mode         string     `yaml:"mode"`
	Queues       int        `yaml:"queues"`
	VnetHdr      *bool      `yaml:"vnet_hdr"`
	Promiscuous  bool       `yaml:"promiscuous"`
	Batch        int        `yaml:"batch"`
	SocketBuffer int        `yaml:"socket_buffer"`
	Ring         RingConfig `yaml:"ring"`

	opts Options
}

// RingConfig sizes the receive ring of each queue: TPACKET_V2 frames in mode
// ring (the default), TPACKET_V3 blocks in mode block.
type RingConfig struct {
	// BlockSize is the size of one block in bytes: a power of two, a
	// multiple of the page size, at least 128 KiB (a GSO frame must fit).
	BlockSize int `yaml:"block_size"`
	// Blocks is the number of blocks per queue.
	Blocks int `yaml:"blocks"`
	// TimeoutMS is how long the kernel keeps a block that is not full
	// before handing it over (the added latency at low rates; mode block
	// only).
	TimeoutMS int `yaml:"timeout_ms"`
	// FrameSize is the size of one frame slot (mode ring only): a frame
	// of up to FrameSize minus about 80 bytes of headers fits; a larger
	// one is read with recvmsg instead.
	FrameSize int `yaml:"frame_size"`
}

// Modes.
const (
	// ModeMmsg reads with recvmmsg straight into pooled packets.
	ModeMmsg = "mmsg"
	// ModeRing reads from a TPACKET_V2 ring of fixed-size frames: the
	// kernel copies each frame in and wakes the reader at once; frames
	// larger than a ring frame (GSO super-packets) come through recvmsg.
	ModeRing = "ring"
	// ModeBlock reads from a TPACKET_V3 ring of blocks: the kernel hands
	// over a block when it is full or after ring.timeout_ms, so a frame
	// may wait that long (a jiffy at least) — the fewest wake-ups, the
	// most latency.
	ModeBlock = "block"
)

// Defaults.
const (
	DefaultMode         = ModeRing
	DefaultBatch        = 64
	DefaultSocketBuffer = 4 << 20
	DefaultBlockSize    = 1 << 20
	DefaultBlocks       = 8
	DefaultTimeoutMS    = 1
	DefaultFrameSize    = 2048
)

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "link.afpacket",
		Summary: "Ethernet on an existing interface through AF_PACKET (TPACKET_V2 ring by default, recvmmsg or TPACKET_V3 blocks; vnet-hdr GSO, fanout queues; Linux)",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults. On an OS without AF_PACKET it fails.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if !supported {
		return fmt.Errorf("not supported on %s (AF_PACKET is a Linux socket family)", runtime.GOOS)
	}
	vnet := true
	if m.VnetHdr != nil {
		vnet = *m.VnetHdr
	}
	m.opts = Options{
		Device:       m.Device,
		Netns:        m.Netns,
		Mode:         m.Mode,
		Queues:       m.Queues,
		VnetHdr:      vnet,
		Promiscuous:  m.Promiscuous,
		Batch:        m.Batch,
		SocketBuffer: m.SocketBuffer,
		Ring:         m.Ring,
		Name:         ctx.Instance,
		Logger:       ctx.Logger,
		Pool:         ctx.Pool,
	}
	m.opts.setDefaults()
	return nil
}

// Validate checks the configuration; it opens nothing.
func (m *Module) Validate() error {
	return m.opts.validate()
}

// LinkKey: the device, its namespace and everything that is fixed when the
// sockets are made (mode, queues, vnet_hdr, promiscuous, batch and ring
// geometry) — a change to any of them reopens the link.
func (m *Module) LinkKey() string {
	o := &m.opts
	return fmt.Sprintf("%s|%s|%s|q%d|vnet=%t|promisc=%t|b%d|sb%d|ring=%d/%d/%d/%d",
		o.Device, o.Netns, o.Mode, o.Queues, o.VnetHdr, o.Promiscuous, o.Batch, o.SocketBuffer,
		o.Ring.BlockSize, o.Ring.Blocks, o.Ring.TimeoutMS, o.Ring.FrameSize)
}

// OpenLink opens the sockets. The stack's mtu, when set and smaller, caps
// the device's MTU.
func (m *Module) OpenLink(ctx *pipeline.Context) (pipeline.LinkEndpoint, error) {
	o := m.opts
	o.MTU = ctx.LinkMTU
	o.Logger = ctx.Logger
	if ctx.Pool != nil {
		o.Pool = ctx.Pool
	}
	ep, err := New(o)
	if err != nil {
		return nil, err
	}
	return ep, nil
}

func (o *Options) setDefaults() {
	if o.Mode == "" {
		o.Mode = DefaultMode
	}
	if o.Queues == 0 {
		o.Queues = 1
	}
	if o.Batch == 0 {
		o.Batch = DefaultBatch
	}
	if o.SocketBuffer == 0 {
		o.SocketBuffer = DefaultSocketBuffer
	}
	if o.Ring.BlockSize == 0 {
		o.Ring.BlockSize = DefaultBlockSize
	}
	if o.Ring.Blocks == 0 {
		o.Ring.Blocks = DefaultBlocks
	}
	if o.Ring.TimeoutMS == 0 {
		o.Ring.TimeoutMS = DefaultTimeoutMS
	}
	if o.Ring.FrameSize == 0 {
		o.Ring.FrameSize = DefaultFrameSize
	}
	if o.Pool == nil {
		o.Pool = pipeline.DefaultPool
	}
}

func (o *Options) validate() error {
	if o.Device == "" {
		return errors.New("device is required (an existing Ethernet interface, e.g. device: veth0)")
	}
	if len(o.Device) > 15 || strings.ContainsAny(o.Device, "/ \t\n") {
		return fmt.Errorf("device %q is not an interface name", o.Device)
	}
	if err := netns.Check(o.Netns); err != nil {
		return err
	}
	switch o.Mode {
	case ModeMmsg, ModeRing, ModeBlock:
	default:
		return fmt.Errorf("mode %q is not one of ring, mmsg, block", o.Mode)
	}
	if o.Queues < 1 || o.Queues > 64 {
		return fmt.Errorf("queues %d out of range 1..64", o.Queues)
	}
	if o.Batch < 1 || o.Batch > 1024 {
		return fmt.Errorf("batch %d out of range 1..1024", o.Batch)
	}
	if o.SocketBuffer < 64<<10 || o.SocketBuffer > 1<<30 {
		return fmt.Errorf("socket_buffer %d out of range 65536..1073741824", o.SocketBuffer)
	}
	bs := o.Ring.BlockSize
	if bs < 128<<10 || bs > 64<<20 || bs&(bs-1) != 0 {
		return fmt.Errorf("ring.block_size %d: a power of two from 131072 to 67108864", bs)
	}
	if o.Ring.Blocks < 2 || o.Ring.Blocks > 1024 {
		return fmt.Errorf("ring.blocks %d out of range 2..1024", o.Ring.Blocks)
	}
	if o.Ring.TimeoutMS < 1 || o.Ring.TimeoutMS > 1000 {
		return fmt.Errorf("ring.timeout_ms %d out of range 1..1000", o.Ring.TimeoutMS)
	}
	if fs := o.Ring.FrameSize; fs < 256 || fs > bs || fs%16 != 0 {
		return fmt.Errorf("ring.frame_size %d: a multiple of 16 from 256 to ring.block_size (%d)", fs, bs)
	}
	return nil
}

var (
	_ pipeline.LinkModule  = (*Module)(nil)
	_ pipeline.Provisioner = (*Module)(nil)
	_ pipeline.Validator   = (*Module)(nil)
)
