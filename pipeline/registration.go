package pipeline

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// This file holds every cross-layer interface of pipestack. Each method says
// who owns a packet and what may be changed. Three rules hold everywhere:
//
//  1. Batches. Packets travel in slices ([]*Packet). Whoever is handed a
//     slice owns every non-nil packet in it from the call on; the slice
//     itself stays the caller's. The callee may overwrite slots (set them
//     to nil, reorder them) while it runs but must not keep the slice after
//     it returns.
//  2. Every packet ends exactly once: it is written to a link, delivered to
//     an endpoint, dropped through Batch.Drop (which counts the reason and
//     releases it), or stolen.
//  3. Stolen. A stage that must keep a packet for later (waiting for a
//     neighbor, a fragment waiting for its siblings, a packet at an
//     out-of-process filter) takes it out of the batch: it sets the slot to
//     nil and keeps the pointer. It later hands the packet back through
//     Stack.Reinject at the ResumePoint right after its own stage (a hook
//     h: ResumeAfter(h)), so that the packet goes on exactly where it left
//     and passes no stage twice, or drops it with Stack.DropStolen. A
//     matcher or target stealing inside a hook's tables may instead come
//     back to its very rule, Stack.Resume ("Stealing inside a hook"). No
//     stage ever blocks the worker waiting for another process or a timer.
//
// A packet may share its buffer with other handles (Packet.Share: a
// sender keeping what it sent for retransmission). Owning such a handle
// is owning the packet for every rule above, but its data is read-only:
// a stage may push and write headers in front of it (as every output path
// does) and must Clone before it writes past them (Packet.Shared; see
// "Shared buffers" on Packet).
//
// What lives elsewhere, and why: the module lifecycle (Module, the role
// interfaces LinkModule, NetworkModule, TransportModule, and Provisioner …
// CleanerUpper) is the contract between a module and the pipeline file and
// sits with the registry (registry.go); the time source (Clock, Timer) in
// clock.go; the filter table's JumpTarget with the table (hooks.go). A
// service that one module offers to later stages stays in that module, found
// by a type assertion on its endpoint, unless both IP families offer it:
// then it is here (Defragmenter).

// NICID identifies a NIC (a link attached to the stack). IDs start at 1, are
// stable across reloads for a link of the same name and are never reused.
type NICID uint32

// Defragmenter is the defragmentation service of the IP endpoints
// (network.ipv4, network.ipv6) for later stages: conntrack finds it on the
// endpoint of a packet's NIC,
//
//	d, _ := b.Gen.NetworkEndpoint(pkt.InNIC, pkt.NetProto).(pipeline.Defragmenter)
//
// and calls it at Prerouting (PriorityDefrag) so that raw, conntrack and the
// rules see whole datagrams, as Linux's nf_defrag_ipv4/ipv6.
type Defragmenter interface {
	// Defragment takes ownership of pkt, whose Data() starts at its IP
	// header. For a packet that is not a fragment (an IPv6 atomic fragment
	// is none: RFC 6946) it returns (pkt, true). For a fragment it returns
	// (datagram, true) when pkt completed a datagram — a new packet the
	// caller owns (never pkt's *Packet, so out == pkt means "not a
	// fragment"), with pkt's metadata and its network header marked — and
	// (nil, false) when pkt was held for its siblings (stolen: the
	// caller's slot becomes nil) or dropped (malformed, overlapping, over
	// the memory limits: counted). Reassembly for this service is kept
	// apart from reassembly for local delivery and shares its memory
	// limits (per source and overall) and timeout; it sends no ICMP at all
	// (no time exceeded when a datagram times out, no parameter problem),
	// as Linux's conntrack defragmentation. An IPv6 datagram comes back
	// with PathMTU set to its largest fragment's size (at least 1280):
	// it leaves cut to that size again, as Linux's frag_max_size, or gets
	// Packet Too Big when that size exceeds the egress MTU.
	Defragment(b *Batch, pkt *Packet) (*Packet, bool)
}

// NetworkProtocolNumber is an EtherType (0x0800 IPv4, 0x86dd IPv6, 0x0806 ARP).
type NetworkProtocolNumber uint16

// TransportProtocolNumber is an IP protocol number (6 TCP, 17 UDP, 1 ICMP).
type TransportProtocolNumber uint8

// Well-known protocol numbers.
const (
	IPv4ProtocolNumber NetworkProtocolNumber = wire.EtherTypeIPv4
	IPv6ProtocolNumber NetworkProtocolNumber = wire.EtherTypeIPv6
	ARPProtocolNumber  NetworkProtocolNumber = wire.EtherTypeARP

	ICMPv4ProtocolNumber TransportProtocolNumber = wire.ProtocolICMP
	TCPProtocolNumber    TransportProtocolNumber = wire.ProtocolTCP
	UDPProtocolNumber    TransportProtocolNumber = wire.ProtocolUDP
	ICMPv6ProtocolNumber TransportProtocolNumber = wire.ProtocolICMPv6
)

// LinkCapabilities describe what a link endpoint does for the stack.
type LinkCapabilities uint32

const (
	// CapResolutionRequired: the link needs a destination link address
	// (Packet.RemoteLinkAddr) for every packet it writes: Ethernet.
	CapResolutionRequired LinkCapabilities = 1 << iota
	// CapGSO: the link accepts GSO super-packets (Packet.GSO set) on write.
	CapGSO
	// CapRXChecksumOffload: received packets may carry
	// Packet.CsumVerified; the stack then skips transport checksum checks.
	CapRXChecksumOffload
	// CapTXChecksumOffload: the link (or the device behind it) completes
	// partial checksums described by Packet.GSO.NeedsCsum.
	CapTXChecksumOffload
)

// LinkEndpoint is a link driver's side of a NIC: a TUN device, an AF_PACKET
// socket, a Wintun adapter or an in-memory channel.
//
// A LinkEndpoint outlives generations: when a reload keeps a link with the
// same name and LinkKey, the same endpoint is handed to the new generation
// (Attach is not called again).
type LinkEndpoint interface {
	// MTU is the largest network-layer packet the link carries
	// (excluding its own header).
	MTU() int
	// MaxHeaderLength is how many bytes WritePackets may push in front of
	// the network header. Packets from the stack's pool always have at
	// least DefaultHeadroom bytes of headroom; a link must not need more.
	MaxHeaderLength() int
	// LinkAddress is the link's own address (zero for IP-only links).
	LinkAddress() wire.MAC
	// Capabilities of this link.
	Capabilities() LinkCapabilities

	// Attach starts delivering received batches to d. The link reads in
	// batches on its own goroutines (or, for an in-memory link, on the
	// injecting goroutine) and calls d.DeliverNetworkPackets with them.
	// Attach(nil) stops delivery; it returns once no delivery is in
	// flight.
	Attach(d NetworkDispatcher)

	// WritePackets sends a batch. Each non-nil packet's Data() starts at
	// its network header and NetProto is set; with CapResolutionRequired
	// RemoteLinkAddr is set too, and the link pushes its own header into
	// the headroom. WritePackets takes ownership of every non-nil packet,
	// whether it is sent or dropped (a drop is counted by the link), and
	// returns how many were sent. It must not block for long: a link whose
	// device is full drops and counts.
	WritePackets(pkts []*Packet) int

	// Close stops the link's goroutines and releases its device. After
	// Close returns no delivery is in flight and WritePackets drops.
	Close() error
}

// LinkStateDispatcher is implemented by the dispatcher the stack hands to
// LinkEndpoint.Attach: a link reports through it that its device is gone.
// The contract of a device that goes away and comes back:
//
//   - The link (on any of its goroutines: a reader that got ENODEV,
//     EBADFD, a POLLERR, …) type-asserts the dispatcher it was attached
//     with to LinkStateDispatcher and calls LinkDown(err) when the device
//     is gone for good (deleted, its namespace gone), not when it is only
//     administratively down. Once per endpoint is enough; more calls
//     (one per queue) are harmless. LinkDown does not block and does not
//     call back into the link, so a reader may call it and return.
//   - After LinkDown the link stops its readers as it likes; WritePackets
//     must keep dropping and counting, and Close must still work.
//   - The stack (its link supervisor, a goroutine of its own, never the
//     caller's) then swaps in a placeholder that drops, calls Attach(nil)
//     and Close on the endpoint, withdraws every route through the link,
//     and calls LinkModule.OpenLink again on the running generation's
//     module (same configuration) with backoff until it succeeds; the new
//     endpoint is attached to the same NIC (same ID, counters, neighbor
//     table, addresses) and the routes return. OpenLink may therefore be
//     called more than once on one provisioned module, each time for a
//     fresh endpoint, while the previous one is closed.
//   - A dispatcher that is not a LinkStateDispatcher (a test's) ignores it:
//     the link then behaves as before (it stops receiving).
type LinkStateDispatcher interface {
	NetworkDispatcher
	// LinkDown reports that the device behind the endpoint is gone; err
	// says why (shown by pipectl stats and logged).
	LinkDown(err error)
}

// LinkUpListener is implemented by a network endpoint that restarts
// link-level work when its NIC's device is back after LinkDown, as a Linux
// device coming up does (network.ipv6 runs duplicate address detection
// again for its addresses, and solicits routers again or sends an early
// advertisement, so that the hosts behind the new device learn their
// routes at once). The stack's link supervisor calls LinkUp on its own
// goroutine, with the stack's control lock held, after the new endpoint is
// attached and the routes are back: LinkUp must not block nor call Stack
// control methods (Apply, NIC, NICs, Close); it may arm timers and use
// Stack.Do from them.
type LinkUpListener interface {
	LinkUp()
}

// AddressListener is implemented by a module of the pipeline (one under
// modules:, a link's module, a section's) that keeps state bound to a
// link's addresses or to its device being there, as Linux's MASQUERADE
// keeps each binding to the out-device and the address it took
// (nf_nat_masquerade's inetaddr and netdevice notifiers flush them).
// The stack calls AddressEvent on the running generation's modules (after
// a reload: the new generation's), off the packet path, once the change
// is in effect for new packets (pipeline/addrevents.go):
//
//   - Down: the link's device went down (LinkDown, on the link
//     supervisor's goroutine) or the link left the stack (a reload without
//     it, after the old generation drained). Removed is nil.
//   - Removed: addresses the NIC no longer has: a reload that dropped them
//     from the link's configured addresses (compared with the previous
//     generation's, after it drained), or NIC.RemoveDynamicAddress (on its
//     caller's goroutine: an IPv6 SLAAC or link-local address).
//
// The first two come with the stack's control lock held: AddressEvent
// must not block for long nor call Stack control methods (Apply, NIC,
// NICs, Close). Nothing is sent for an address added or a link back up.
type AddressListener interface {
	AddressEvent(ev AddressEvent)
}

// AddressEvent is what AddressListener is told.
type AddressEvent struct {
	NIC     NICID
	Down    bool
	Removed []netip.Addr
}

// PacketDropListener is implemented by a module that keeps state a packet
// owns until the packet has passed every hook: netfilter.conntrack's entry
// of a flow's first packet, unconfirmed until the packet passes Postrouting
// or Input (Linux frees such an entry with the skb when the packet is
// dropped; kept, a flood of dropped first packets would fill the table
// with entries nothing can evict). Batch.Drop — every drop of a hook
// verdict and of a protocol module's checks that goes through it — calls
// PacketDropped before it releases a packet whose ConnTrack is set, on the
// dropping worker, the packet still intact: it must not block, allocate
// nor keep the packet. The generation's modules that implement it are
// found once, when the generation is built.
type PacketDropListener interface {
	PacketDropped(p *Packet)
}

// LinkMTUSetter is implemented by a link endpoint that can change its
// device's MTU while open. A reload that changes a kept link's mtu calls
// SetMTU (on the reload's goroutine, with no delivery lock held) before
// the new generation runs; the stack's effective MTU is then the
// configured one capped by MTU(). An endpoint without it keeps its MTU and
// the stack caps the effective one by the configured mtu.
type LinkMTUSetter interface {
	SetMTU(mtu int) error
}

// LinkCounterReader is implemented by a link endpoint that keeps counters
// of its own (drops by reason at the device, offload statistics); they are
// shown by `pipectl stats` and the metrics endpoint next to the stack's.
type LinkCounterReader interface {
	LinkCounters() []CounterValue
}

// NetworkDispatcher is the stack's side of a NIC, handed to
// LinkEndpoint.Attach.
type NetworkDispatcher interface {
	// DeliverNetworkPackets hands a received batch to the stack. It takes
	// ownership of every non-nil packet; the slice stays the caller's and
	// may be reused when the call returns. The batch runs to completion on
	// the calling goroutine (including transmission of what it forwards).
	// Each packet's Data() starts at the network header, NetProto is set
	// and, for framed links, the link header is marked (SetLinkHeader).
	// Safe for concurrent use by several goroutines (one per queue).
	DeliverNetworkPackets(pkts []*Packet)
}

// NetworkInterface is what a network endpoint sees of its NIC in the
// generation it was made for.
type NetworkInterface interface {
	ID() NICID
	Name() string
	// MTU is the effective network-layer MTU: the configured one, capped
	// by the link's.
	MTU() int
	LinkAddress() wire.MAC
	Capabilities() LinkCapabilities
	// Addresses lists the NIC's addresses of one family (4 or 6) in
	// primary order (see PrimaryEndpointBehavior). IPv6 lists include the
	// dynamic addresses (link-local, SLAAC) with their current kind, and
	// configured addresses with their run-time kind (tentative while
	// duplicate address detection runs): see dynamic.go. The slice is
	// shared: do not modify it.
	Addresses(family int) []AddressInfo
	// PrimaryAddress returns the address the stack uses as a source on
	// this NIC for the given destination's family, per the seed's rules:
	// FirstPrimaryEndpoint addresses first, then CanBePrimaryEndpoint ones
	// in the order added, never NeverPrimaryEndpoint ones nor tentative
	// ones; deprecated addresses only when no other exists.
	PrimaryAddress(family int) (netip.Prefix, bool)
	// SourceAddress returns the source address for a packet to dst
	// leaving through this NIC: for IPv4 the primary address, preferring
	// one whose subnet holds dst; for IPv6 the choice of SelectSource6
	// (same scope as dst first, so a link-local destination gets the
	// link-local address).
	SourceAddress(dst netip.Addr) (netip.Addr, bool)
	// NIC is the long-lived NIC behind this generation's view: its
	// neighbor table, counters and dynamic addresses.
	NIC() *NIC
	// Forwarding reports whether packets not addressed to the stack and
	// received on this NIC may be forwarded.
	Forwarding(family int) bool
	// Transparent reports whether the NIC takes every unicast packet it
	// receives as addressed to the stack (the link's `transparent: true`;
	// never the loopback NIC). An IP endpoint then delivers a unicast
	// packet (PktType PacketHost; not broadcast or multicast) to a
	// destination that is not the stack's through the Input hook to its
	// transport instead of forwarding it: the transport's forwarder
	// (tcp.Forwarder, udp.Forwarder) learns the original destination from
	// the network header, and the stack answers from that address — the
	// ICMP errors it sends about such a packet (port unreachable) and its
	// echo replies come from the packet's destination, a transport's
	// replies too. Multicast and broadcast keep their usual handling; an
	// IP endpoint that does not support it ignores it (it forwards).
	Transparent() bool
}

// NetworkProtocol is a network-layer protocol module's protocol object
// (network.ipv4, network.ipv6, network.arp). One instance per generation.
type NetworkProtocol interface {
	// Number is the EtherType this protocol handles.
	Number() NetworkProtocolNumber
	// NewEndpoint makes the protocol's endpoint for one NIC in the
	// generation being built.
	NewEndpoint(nic NetworkInterface) NetworkEndpoint
}

// NetworkEndpoint is one network protocol on one NIC.
type NetworkEndpoint interface {
	// HandlePackets processes a batch received on the endpoint's NIC: each
	// packet has NetProto == the protocol's number, InNIC set and Data() at
	// the network header. It takes ownership of every packet: each is
	// forwarded (Batch.Output), delivered to a transport, stolen or dropped
	// (Batch.Drop). Malformed packets are counted and dropped, never a panic.
	// An IP protocol runs the hooks on the way (Batch.RunHook): Prerouting
	// after validation, then the route decision; Forward on forwarded
	// packets after the forwarding checks (TTL, MTU: Linux's ip_forward
	// order); Input on local ones after reassembly. It fragments nothing:
	// Batch.Output fragments at transmit, after Postrouting (Fragmenter).
	HandlePackets(b *Batch, pkts []*Packet)

	// WritePackets sends locally generated packets from this NIC: Data()
	// starts at the transport header (TransProto set); the endpoint pushes
	// its header built from r and params, sets PathMTU (r.MTU or the path
	// MTU it knows), runs the Output hook and hands them, whole, to
	// Batch.Output. Takes ownership of every packet.
	WritePackets(b *Batch, r RouteInfo, params NetworkHeaderParams, pkts []*Packet)

	// ReturnError sends the error message a host sends about pkt (ICMP
	// port unreachable and the like; rate limited by the protocol) and
	// takes ownership of pkt. pkt is as it was delivered to the transport:
	// network header marked.
	ReturnError(b *Batch, pkt *Packet, kind TransportErrorKind)

	// Close releases the endpoint's resources; called when its
	// generation stops.
	Close()
}

// NUDDispatcher receives neighbor table events (the seed's contract). It may
// be called concurrently with other tables' events and may block without
// disturbing the stack: a table queues its events (bounded; overflow is
// counted in neighbor.events_dropped) and delivers them, in order, from a
// goroutine of its own, never from the packet path or a timer.
// Entries are passed by value: the dispatcher may keep them.
type NUDDispatcher interface {
	// OnNeighborAdded: an entry was created in the NIC's table.
	OnNeighborAdded(NICID, NeighborEntry)
	// OnNeighborChanged: the entry's state or link address changed.
	OnNeighborChanged(NICID, NeighborEntry)
	// OnNeighborRemoved: the entry left the table.
	OnNeighborRemoved(NICID, NeighborEntry)
}

// LinkAddressResolver is implemented by a network protocol that resolves
// link addresses for another (network.arp for IPv4; NDP for IPv6). The
// neighbor table of each NIC runs the NUD state machine (nud.go); the
// resolver only speaks the protocol: it sends probes and feeds what it
// hears to the table (NeighborTable.HandleProbe, HandleConfirmation).
type LinkAddressResolver interface {
	// ResolvesFor is the network protocol whose next hops it resolves.
	ResolvesFor() NetworkProtocolNumber

	// ResolveLinkAddress is called from the transmit path for a packet
	// (NetProto == ResolvesFor(), OutNIC and NextHop set, Postrouting and
	// fragmentation done: the packet is marked past Postrouting, so one
	// it outputs again does not pass the hook twice) whose next hop has
	// no usable entry in nic's table. It takes
	// ownership of pkt and either addresses it itself (a broadcast or
	// multicast next hop: Packet.SetRemoteLinkAddr, then Batch.Output),
	// hands it to the state machine with NeighborTable.QueuePacket (which
	// steals it into the entry's bounded queue, probes, and re-injects it
	// once resolved), or drops it (Batch.Drop).
	ResolveLinkAddress(b *Batch, nic NetworkInterface, pkt *Packet)

	// LinkAddressRequest sends one probe for addr out of nic: a broadcast
	// (or multicast) solicitation when remote is zero, one unicast to
	// remote otherwise. The state machine calls it inside a batch, from
	// the transmit path or from its timers; it must not block. It reports
	// whether a probe left (false: e.g. no source address on nic).
	LinkAddressRequest(b *Batch, nic NetworkInterface, addr netip.Addr, remote wire.MAC) bool

	// NUDConfigurations are the state machine's parameters for this
	// protocol's entries, read at every transition (a reload that changes
	// them takes effect at the next one). Zero or invalid fields mean the
	// defaults (DefaultNUDConfigurations).
	NUDConfigurations() NUDConfigurations
}

// HookResumer is implemented by a network endpoint that runs hooks
// (network.ipv4, network.ipv6), so that packets stolen at them go on where
// they left (Stack.Reinject with ResumeAfter(h); see ResumePoint). The stack
// calls the endpoint of the packet's InNIC for Prerouting and Input, of its
// OutNIC for Forward and Output, with runs of packets of this protocol.
type HookResumer interface {
	// ResumeAfter continues packets exactly after hook h accepted them:
	// after Prerouting the route decision and what follows (Forward or
	// reassembly and Input); after Input local delivery; after Forward and
	// Output the output queue (Batch.Output). Each packet is as the hook
	// left it: Data() at the network header, with what the stages before
	// it set (for Forward: TTL decremented, OutNIC and NextHop). Counters
	// of the later stages count it then. It takes ownership of every
	// packet; nil slots are skipped. A hook the endpoint does not run
	// drops (counted).
	ResumeAfter(b *Batch, h Hook, pkts []*Packet)
}

// Fragmenter is implemented by a network endpoint whose protocol
// fragments (network.ipv4, network.ipv6). Fragmentation is part of the
// output path, after the Postrouting hook (which sees whole datagrams) and
// before neighbor resolution, per egress NIC, as in Linux's
// ip_finish_output: Batch.Output's transmit calls Fragment of the endpoint
// on the packet's OutNIC for a packet (not a GSO super-packet) larger than
// its limit, the lesser of the NIC's MTU and the packet's PathMTU.
type Fragmenter interface {
	// Fragment takes ownership of pkt (Data() at its network header,
	// routed, past Postrouting, Len() > mtu) and appends to dst the
	// packets to send in its place, first fragment first, each at most
	// mtu bytes with pkt's metadata (CopyMeta; pkt itself may be the first
	// one), and returns dst. A packet it must not or cannot fragment (IPv4
	// with DF, a forwarded IPv6 packet, one already cut to the minimum) is
	// dropped and counted, with the ICMP error a router sends (Batch.Output
	// may be called for it, never for the fragments) — about the stack's
	// own packet to the stack itself, through the loopback NIC, as
	// Linux's ip_fragment does; nothing is appended.
	// It must not keep dst.
	Fragment(b *Batch, pkt *Packet, mtu int, dst []*Packet) []*Packet
}

// NetworkHeaderParams are the fields of a locally generated network header
// that are not taken from the route.
type NetworkHeaderParams struct {
	Protocol TransportProtocolNumber
	TTL      uint8 // 0: the protocol's default
	TOS      uint8
}

// RouteInfo is a resolved route for one destination: what an endpoint needs
// to send a packet.
type RouteInfo struct {
	NIC        NICID
	LocalAddr  netip.Addr // source address
	RemoteAddr netip.Addr // final destination
	NextHop    netip.Addr // gateway, or RemoteAddr when on-link
	MTU        int
}

// TransportErrorKind names an error a transport asks the network layer to
// report, or a network layer reports to a transport endpoint.
type TransportErrorKind uint8

const (
	ErrorPortUnreachable TransportErrorKind = iota + 1
	ErrorProtocolUnreachable
	ErrorNetUnreachable
	ErrorHostUnreachable
	ErrorAdminProhibited
	// ErrorPacketTooBig: a packet the stack sent was over the path's MTU
	// (ICMP fragmentation needed, ICMPv6 Packet Too Big); the handler's
	// info is the path MTU now in force (TransportErrorHandler).
	ErrorPacketTooBig
	ErrorTTLExceeded
	// ErrorNetProhibited and ErrorHostProhibited are IPv4's
	// destination-unreachable codes 9 and 10 (a filter's REJECT
	// --reject-with icmp-net-prohibited / icmp-host-prohibited); an IPv6
	// endpoint sends administratively prohibited for them.
	ErrorNetProhibited
	ErrorHostProhibited
)

// TransportProtocol is a transport module's protocol object (transport.udp,
// transport.tcp). One instance per generation; its endpoint tables live
// outside the generation so that sockets survive a reload.
type TransportProtocol interface {
	Number() TransportProtocolNumber
	// ParsePorts reads the ports from a packet whose Data() starts at the
	// transport header; ok is false when it is too short.
	ParsePorts(b []byte) (src, dst uint16, ok bool)
	// HandlePackets receives packets addressed to the stack: NetHdr set,
	// Data() at the transport header, TransProto set. It takes ownership of
	// every packet. A packet for no endpoint is answered through
	// NetworkEndpoint.ReturnError of Batch.NetworkEndpoint(pkt) (which also
	// takes ownership) or dropped.
	HandlePackets(b *Batch, pkts []*Packet)
}

// TransportErrorHandler is implemented by a transport protocol that wants
// the errors reported about packets it sent: the network layer parses an
// ICMP error, finds the protocol of the packet it quotes and calls it, so a
// connected socket learns of port unreachable (ECONNREFUSED) or a smaller
// path MTU.
type TransportErrorHandler interface {
	// HandleError reports kind about the packet quoted: quoted is its
	// network header and at least 8 bytes of its transport header (the
	// ports), as the error carried them — the quoted packet's source is
	// the stack's address, its destination the remote. quoted points into
	// pkt (the error message); the callee takes ownership of pkt.
	//
	// For ErrorPacketTooBig (ICMP fragmentation needed, ICMPv6 Packet Too
	// Big) info is the path MTU towards the quoted destination that the
	// network layer now uses for the stack's packets (PathMTUReporter
	// answers the same until it expires): the reported next-hop MTU after
	// the protocol's checks — never below its minimum (IPv4: path_mtu.min,
	// default 552, Linux's min_pmtu; IPv6: 1280), never above what was
	// known. A transport that sizes its own segments (TCP) resends what
	// was lost at that size. The network layer has already checked that
	// the quoted packet is ours (our source address; IPv4: DF set and
	// longer than the reported MTU) and dropped the message otherwise.
	// For every other kind info is 0.
	HandleError(b *Batch, kind TransportErrorKind, info uint32, quoted []byte, pkt *Packet)
}

// PathMTUReporter is implemented by the network endpoints that keep a path
// MTU cache (network.ipv4, RFC 1191; network.ipv6, RFC 8201), found by a
// type assertion on Batch.Gen.NetworkEndpoint(nic, proto).
type PathMTUReporter interface {
	// PathMTU is the largest packet, network header included, that the
	// stack's own packets to dst may leave this endpoint's NIC with, as
	// WritePackets sets Packet.PathMTU: routeMTU (RouteInfo.MTU; 0 for
	// the NIC's MTU) lowered by what ICMP taught about dst (and for IPv6
	// by a Router Advertisement's MTU), never below the protocol's
	// minimum. A transport that segments itself (transport.tcp) sizes its
	// segments by it (MSS = PathMTU − headers) and asks again after an
	// ErrorPacketTooBig. It does not allocate; with nothing learnt it
	// costs one atomic load.
	PathMTU(b *Batch, dst netip.Addr, routeMTU int) int
}

// TransportDispatcher finds the transport protocol configured for a number
// in the batch's generation; a *Batch implements it. nil means none is
// configured, and the network layer answers as a host without such a
// socket does: a TCP reset for TCP, ICMP port unreachable for UDP, ICMP
// protocol unreachable for any other protocol.
type TransportDispatcher interface {
	TransportProtocol(n TransportProtocolNumber) TransportProtocol
}

// TransportEndpointID identifies a transport endpoint (a socket).
type TransportEndpointID struct {
	LocalPort     uint16
	LocalAddress  netip.Addr
	RemotePort    uint16
	RemoteAddress netip.Addr
}

// TransportEndpoint is one socket of a transport protocol. transport.udp's
// sockets implement it now; transport.tcp (the next transport) implements it
// for its listeners and connections, so it stays although the stack itself
// does not call it yet: protocols demultiplex to their own endpoints.
type TransportEndpoint interface {
	// HandlePackets receives packets demultiplexed to this endpoint and
	// takes ownership of them. It must not block: a full receive queue
	// drops and counts.
	HandlePackets(b *Batch, id TransportEndpointID, pkts []*Packet)
	// HandleError reports an error received about a packet this endpoint
	// sent (an ICMP error); pkt is the error's packet, owned by the callee.
	// info is as in TransportErrorHandler.HandleError: for
	// ErrorPacketTooBig the path MTU now in force towards the remote.
	HandleError(kind TransportErrorKind, info uint32, pkt *Packet)
	// Close tears the endpoint down.
	Close() error
}

// Hook names the five places where a filter runs, as in netfilter.
type Hook uint8

const (
	// Prerouting runs on every received IP packet before the route
	// decision (and before reassembly, unless the protocol defragments
	// forwarded packets too).
	Prerouting Hook = iota
	// Input runs on packets addressed to the stack, after reassembly
	// (whole datagrams), before local delivery.
	Input
	// Forward runs on packets being forwarded, after the route decision
	// and the forwarding checks (TTL already decremented; a packet over
	// the egress MTU that may not be fragmented was answered with ICMP
	// and never reaches it).
	Forward
	// Output runs on locally generated packets, whole (before
	// fragmentation).
	Output
	// Postrouting runs on every IP packet leaving through a NIC, forwarded
	// or local, once, per output batch: on whole datagrams, before
	// fragmentation, neighbor resolution, software GSO and the link.
	Postrouting
	// NumHooks is the number of hooks.
	NumHooks
)

var hookNames = [NumHooks]string{"prerouting", "input", "forward", "output", "postrouting"}

func (h Hook) String() string {
	if h < NumHooks {
		return hookNames[h]
	}
	return "hook?"
}

// Tuple is the 5-tuple of a packet as seen at a hook. Ports are zero for
// protocols without ports and for non-first fragments.
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            TransportProtocolNumber
}

// CTInfo is a packet's connection-tracking state as the stateful matchers
// see it (Packet.CTInfo): the state in the low bits, CTReply when the
// packet travels in the entry's reply direction. The conntrack module sets
// it at its hook (Prerouting and Output, priority PriorityConntrack); the
// matchers of later hooks read it from PacketContext.Pkt, so that it
// survives from hook to hook and while the packet is stolen.
type CTInfo uint8

// Connection-tracking states (iptables' --ctstate words).
const (
	CTNone        CTInfo = iota // not seen by conntrack (none configured, or not yet)
	CTNew                       // the first packets of a flow (no reply seen)
	CTEstablished               // a flow that has seen packets both ways
	CTRelated                   // an ICMP error about a tracked flow
	CTInvalid                   // conntrack could not make sense of it
	CTUntracked                 // NOTRACK in the raw table: conntrack skips it

	CTStateMask CTInfo = 0x0f
	CTReply     CTInfo = 0x80 // the packet goes in the reply direction
)

// State is the state without the direction bit.
func (c CTInfo) State() CTInfo { return c & CTStateMask }

// PacketContext is what a matcher and a target see of a packet: parsed once
// per packet per hook, shared by every rule and every table of the hook.
// The hook owns it and the packet: a matcher or target borrows both for
// the one call and must not keep either (nor a slice of the packet's
// bytes) after it returns, unless it steals the packet; the context itself
// is never kept — it is the hook run's and is reused for the next packet.
// Tuple and Fragment are parsed before the first rule and are not updated
// when a target rewrites the packet; L4End is, by a target that changes
// the packet's length (see Target).
//
// One context per packet at a time, not one per packet of the batch: the
// engine evaluates a batch packet by packet (each packet's tables to the
// end), so a context per hook run holds everything a rule sees, and a
// stolen packet's context does not outlive its steal — the resume token
// (Stack.Resume) keeps its place and the resume parses its headers again
// into a fresh context, which costs a ParseTuple per resumed packet and
// saves holding a context per packet at a plugin. A matcher that wants
// the whole batch (an out-of-process one) steals each packet and answers
// them together from its BatchFlusher (see "Stealing inside a hook").
type PacketContext struct {
	Hook          Hook
	InNIC, OutNIC NICID // 0 when not known at this hook
	Tuple         Tuple
	// Src4 and Dst4 are Tuple's IPv4 addresses as numbers (host order),
	// for matchers that compare them under a mask; 0 for IPv6.
	Src4, Dst4 uint32
	// Fragment is true for every fragment but the first (ports unknown).
	Fragment bool
	// L4Off and L4End bound the upper-layer header and payload within
	// Pkt.NetworkHeader() (past IPv6 extension headers; L4End is the end
	// the IP length field gives), and FragOff is the fragment offset in
	// bytes: parsed once per hook by ParseTuple so that matchers do not
	// walk the headers again per rule. L4End 0: not parsed.
	L4Off, L4End int
	FragOff      int
	// L4Unknown: ParseTuple could not walk the IPv6 extension header
	// chain to the upper layer (a header to read past the end, more than
	// 64 headers): Tuple.Proto, the ports, L4Off and L4End are zero. (An
	// upper-layer header that starts past the end has its protocol known
	// and L4Off == L4End: nothing to read.) A matcher that needs the protocol or the transport
	// header hotdrops (as ip6tables' -p does); the others judge the
	// packet as usual.
	L4Unknown bool
	Pkt       *Packet // Data() at the network header
	// Batch is the batch the hook runs in: its clock (Now), its
	// generation (IsLocal4, NIC names) and the network endpoints a target
	// answers through (ReturnError). Nil when a table is evaluated
	// outside a batch (tests).
	Batch *Batch

	gen  *Generation // whose tables run (a resume: the token's); nil: Batch.Gen
	slot uint8       // the table's priority slot at the hook
	held bool        // Steal was called: the target's steal is resumable
}

// Steal is how a target steals the packet for a later Stack.Resume: it
// returns VerdictStolen for Action to return (return pc.Steal()). The
// engine then leaves a resume token in pc.Pkt — its place: generation,
// hook, slot, chain, rule, jump stack — and the packet is the target's
// (see "Stealing inside a hook"). A target that returns VerdictStolen
// without Steal takes the packet for good (REJECT's error, a packet
// re-injected with Reinject); its packet gets no token.
func (pc *PacketContext) Steal() (Verdict, int) {
	pc.held = true
	return VerdictStolen, 0
}

// MatchStolen is what a matcher's Match returns when it steals the packet
// (return pipeline.MatchStolen()): matches and hotdrop both true, a pair
// no other answer uses. See "Stealing inside a hook".
func MatchStolen() (matches, hotdrop bool) { return true, true }

// Stealing inside a hook. A packet can leave its hook's tables at a rule
// and come back to exactly that point later, without a worker waiting: an
// out-of-process matcher or target answers a batch of packets later, on
// another goroutine.
//
//   - A matcher steals by returning MatchStolen(); a target by returning
//     pc.Steal(). The engine ends the packet's evaluation there and leaves
//     a resume token in the packet: the generation (pinned: its modules
//     are not cleaned up while the token is out), the hook, the priority
//     slot of the table, the chain and rule, the matcher's index (or the
//     target) and the jump stack. Ownership passes to the stealer when
//     the call returns, with one restriction: the engine writes the token
//     after the call, so the stealer keeps the packet on the worker's
//     goroutine until its flush (below) or the batch's end — it must not
//     hand it to another goroutine from inside Match or Action. While it
//     holds the packet it may rewrite it, its length too: a resume parses
//     the headers again. Ordinary matchers pay nothing for this (the
//     engine looks at matches only on the hotdrop branch it has anyway).
//   - Flush: a stealer calls pc.Batch.OnFinish(self) at each steal and
//     gets one FlushBatch call when the batch finishes, however many
//     packets it stole in it: there it sends them (one message per batch
//     for an out-of-process matcher). Nothing is paid by batches in which
//     nobody stole.
//   - Resume: the stealer hands packets back with Stack.Resume(pkts,
//     answers), any goroutine, any batch size: a matcher's answer (match:
//     the rule's next matcher then its target; no match: the next rule;
//     hotdrop) or a target's verdict (continue, accept, drop, return, jump,
//     goto). The rest of the traversal runs in the token's rule set, even
//     after a reload; the hook's later tables follow, then the packet goes
//     on at ResumeAfter(hook) in the running generation, as with Reinject.
//     A packet may be stolen again on the way.
//   - Or it gives up: Stack.Reinject(ResumeAfter(hook), …) continues after
//     the hook (the token is spent), Stack.DropStolen or Packet.Release
//     drops it (the token goes back, the pin with it). A failure policy is
//     an answer too: no match or continue lets the rule set go on (fail
//     open), hotdrop or drop ends the packet (fail closed).
//   - Bounded: a token is good for Options.ResumeTimeout (1 s by default)
//     after its steal; later, or once its generation stopped, Resume drops
//     the packet (stack.resume_stale). A reload waits that long at most
//     for the old generation's tokens before stopping it. A stealer that
//     bounds its holding time itself (a deadline, then a failure policy:
//     the out-of-process plugins) resumes with Stack.ResumeLate, which
//     looks at the generation only: a late answer or policy is applied,
//     not dropped. Such a stealer's bound must fit in ResumeTimeout for
//     its packets to survive a reload (Stack.ResumeTimeout).
//
// Why not a batch form of Match (the engine evaluating rule k for every
// packet of the batch before rule k+1, contexts for all of them): every
// ordinary matcher would pay for it, and the traversal order would no
// longer be netfilter's per packet; stealing plus a flush gives the
// plugin its one message per batch with the engine unchanged, and the
// plugin's answers come back in one Resume call.

// BatchFlusher is a guest module (matcher, target) that wants one call at
// the end of a batch in which it stole packets (Batch.OnFinish). FlushBatch
// runs on the worker's goroutine after the batch's output left; from then
// on the stolen packets may go to other goroutines. It must not block: it
// hands the packets on (a queue, a send that does not wait).
type BatchFlusher interface {
	FlushBatch(b *Batch)
}

// FieldSet is the set of header fields a matcher constrains. A rule
// compiler uses it to build a classifier instead of testing every rule.
type FieldSet uint32

const (
	FieldSrcAddr FieldSet = 1 << iota
	FieldDstAddr
	FieldProto
	FieldSrcPort
	FieldDstPort
	FieldInNIC
	FieldOutNIC
	FieldMark
	// FieldOther: the matcher looks at something else (payload, flags,
	// state); a classifier must always call it.
	FieldOther
	// FieldICMPType: an ICMP or ICMPv6 header's type and code, as
	// type<<8 | code (Ranges; after FieldOther so that the older values
	// keep their numbers). Only for packets of the protocol the same
	// Constraint() requires (1 or 58), whose header is at least 8 bytes:
	// a matcher that constrains it constrains FieldProto too, and for
	// other packets (a short header, a non-first fragment) says nothing.
	FieldICMPType
	// FieldTCPFlags: a TCP header's flags byte (offset 13) ANDed with
	// Mask, in Ranges; as FieldICMPType, only beside a FieldProto
	// constraint on 6 and for a header of at least 20 bytes.
	FieldTCPFlags
	// FieldCTState: the packet's connection-tracking state,
	// Pkt.CTInfo.State() (0–15, without CTReply), in Ranges.
	FieldCTState
)

// FieldConstraint is one constraint of a matcher as data, for a rule
// compiler that builds a classifier instead of calling every matcher: the
// packet's Field (one bit of FieldSet) must lie in Prefixes (addresses),
// Ranges (ports, protocol, lengths, TTL: inclusive bounds) or Names (NIC
// names; a trailing "+" matches every name with that prefix); with Mask set
// (marks) the field ANDed with Mask must lie in Ranges. Several entries of
// one constraint are alternatives (any one matches); Invert negates the
// whole. Several constraints of one matcher must all hold. A matcher whose
// constraints say all it tests returns them; one that tests more also
// declares FieldOther in Fields and a classifier still calls it.
type FieldConstraint struct {
	Field    FieldSet
	Prefixes []netip.Prefix
	Ranges   []ValueRange
	Names    []string
	Mask     uint32
	Invert   bool
}

// ValueRange is an inclusive range of a numeric field.
type ValueRange struct{ Lo, Hi uint32 }

// ConstraintDescriber is implemented by matchers that describe their
// constraint as data (see FieldConstraint).
type ConstraintDescriber interface {
	Constraint() []FieldConstraint
}

// Matcher decides whether a rule applies to a packet. The filter module
// makes one per rule (a filter.match.<name> module, decoded, provisioned
// and validated when the generation is built) and calls it from every
// worker at once: Match must be safe for concurrent use, so state it
// changes per packet (a rate limit's bucket) is atomic or sharded by
// pc.Batch.Shard(). Everything it needs is built in Provision: Match runs
// on the hot path and must not allocate, block, log or do I/O.
type Matcher interface {
	// Fields declares what Match looks at (FieldOther for anything not in
	// FieldSet: payload, flags, state). A matcher that may hotdrop, or
	// whose Match changes state that later packets see (a rate limit's
	// bucket), declares FieldOther: a classifier (pipeline/classify) then
	// never skips a rule on the constraint of a matcher after it.
	Fields() FieldSet
	// Match reports whether pc matches and whether the packet must be
	// dropped at once (hotdrop) as malformed or hostile; both true
	// (MatchStolen) steal the packet (see "Stealing inside a hook"). The
	// caller owns pc and the packet: Match may only read them, must not
	// keep them (but a packet it steals), and must not panic on any bytes
	// (check lengths before reading past the network header;
	// pc.Pkt.TransportHeader() may be short).
	Match(pc *PacketContext) (matches, hotdrop bool)
}

// Tracer sees how the hook tables decide the packets it selects (pipectl
// replay and trace). Stack.SetTracer installs one; a batch reads it once
// when it starts, so with none the hooks pay one nil check per hook run,
// never per packet or per rule. With one set, every packet a hook runs on
// is offered to Select; the selected ones are evaluated by a traced copy of
// HookTable.Evaluate that records each rule whose target ran, and Trace
// gets the record. The others are evaluated as without a tracer. Both are
// called on the worker's goroutine, possibly by several workers at once.
type Tracer interface {
	// Select reports whether the packet at pc (tuple parsed, before any
	// table ran) is traced at this hook. It must not keep pc or modify
	// the packet.
	Select(pc *PacketContext) bool
	// Trace receives what the tables at one hook did to one selected
	// packet, before a dropped packet is released. ht, its slices and
	// ht.Pkt are valid only during the call and are the stack's: Trace
	// copies what it keeps and modifies nothing. (trace.go)
	Trace(ht *HookTrace)
}

// Verdict is what a target decides.
type Verdict uint8

const (
	// VerdictContinue: go on with the next rule.
	VerdictContinue Verdict = iota
	// VerdictAccept: stop traversing this hook; the packet goes on.
	VerdictAccept
	// VerdictDrop: the packet is dropped (counted as a filter drop).
	VerdictDrop
	// VerdictReturn: return to the calling chain (the policy at a
	// built-in chain).
	VerdictReturn
	// VerdictJump: continue in the chain whose index Action returned.
	VerdictJump
	// VerdictStolen: the target took ownership of the packet (see the
	// stolen rule at the top of this file). Returned through pc.Steal(),
	// the packet carries a resume token and Stack.Resume continues it at
	// the rule with the target's later verdict ("Stealing inside a
	// hook"); otherwise it has none, and the target hands it back with
	// Stack.Reinject(ResumeAfter(pc.Hook), …) — the packet goes on as if
	// the hook had accepted it, no hook runs on it twice — or ends it.
	VerdictStolen
	// VerdictGoto: continue in the chain whose index Action returned,
	// without a return frame (netfilter's goto): a return (or the end)
	// of that chain goes back to the chain that jumped to the current
	// one, or to the policy.
	VerdictGoto
)

// Target acts on a packet whose rule matched. Like a Matcher it is made
// per rule when the generation is built, called from every worker at once
// (safe for concurrent use) and must not allocate, block or log per packet
// (a logging target hands entries to a bounded ring drained elsewhere).
type Target interface {
	// Action returns the verdict and, for VerdictJump and VerdictGoto,
	// the chain index.
	//
	// Ownership: the caller owns pc and pc.Pkt unless Action returns
	// VerdictStolen; then Action owns pc.Pkt (it must resume it with
	// Stack.Resume after pc.Steal(), re-inject it with Stack.Reinject or
	// release it) but not pc.
	//
	// What it may change: the packet's bytes in place from the network
	// header on (addresses, TTL, TOS/traffic class, options, payload) and
	// its metadata (Mark), keeping every checksum it touches valid
	// (incrementally, wire.ChecksumUpdate16/32; with GSO.NeedsCsum the
	// transport checksum field holds only the pseudo-header sum, which
	// changes with addresses and length, not with the bytes it covers).
	// It may also change the packet's length at its end, within the
	// tailroom (Packet.Append, which refuses beyond it; Packet.Truncate),
	// not a GSO super-packet's: TCPMSS inserting an MSS option. The
	// target then fixes everything the length is in — the IPv4 total
	// length and header checksum or the IPv6 payload length, the
	// transport header and checksum — and pc.L4End, so that the rules
	// after it see the packet as it is now (the rest of pc stays as
	// parsed). Not its headroom or network header position, unless it
	// steals the packet. A verdict other than stolen leaves pc.Pkt where
	// it was. It must not panic on any bytes: check header lengths first.
	Action(pc *PacketContext) (Verdict, int)
}
