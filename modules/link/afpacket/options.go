package afpacket

import (
	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/pipeline"
)

// Options configure an Endpoint made without a pipeline file (New). Zero
// fields take the defaults of the module's configuration.
type Options struct {
	// Device is the interface name (required).
	Device string
	// Netns is a network namespace name (/run/netns/NAME) or path; the
	// sockets are made there and stay bound to its device.
	Netns string
	// Mode is ModeRing, ModeMmsg or ModeBlock.
	Mode string
	// Queues is the number of sockets (and reader threads).
	Queues int
	// VnetHdr turns PACKET_VNET_HDR on.
	VnetHdr     bool
	Promiscuous bool
	// Batch is the number of frames per recvmmsg and per delivered batch.
	Batch        int
	SocketBuffer int
	Ring         RingConfig
	// MTU, when set and smaller than the device's, caps it.
	MTU int

	// Name is the link's name (for logs).
	Name   string
	Logger zerolog.Logger
	Pool   *pipeline.Pool
}
