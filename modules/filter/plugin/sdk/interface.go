// Package sdk is what an out-of-process filter plugin for pipestack is
// written with: implement a Matcher and/or a Target over a batch of
// packets, fill a Plugin and call Serve from main. The SDK speaks the
// protocol (../proto/filterplugin.proto) over hashicorp/go-plugin and gRPC:
// it decodes each batch the host sends, calls the plugin once per batch,
// sends the answers back in order, answers health checks, and exits when
// the host is gone.
//
// The package is laid out as go-plugin's own gRPC example is: interface.go
// (the plugin author's interface), glue.go (the go-plugin Plugin, the
// handshake), server.go (the plugin side of the gRPC service), client.go
// (the host side, used by modules/filter/plugin), serve.go (Serve) and
// testing.go (host and plugin in one process, for tests).
//
// A plugin sees only what it asked for in its Needs: the parsed fields of
// every packet always, and the packet's headers or bytes when it asks.
package sdk

import (
	"fmt"
	"net/netip"
)

// Hook is where in the host's stack the packet was stolen (netfilter's
// hooks).
type Hook uint8

const (
	Prerouting Hook = iota
	Input
	Forward
	Output
	Postrouting
)

func (h Hook) String() string {
	switch h {
	case Prerouting:
		return "prerouting"
	case Input:
		return "input"
	case Forward:
		return "forward"
	case Output:
		return "output"
	case Postrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", uint8(h))
}

// Kind says what the host asks about a packet.
type Kind uint8

const (
	// KindMatch: a rule's matcher (-m plugin): answer NoMatch, Match or
	// Hotdrop.
	KindMatch Kind = iota
	// KindTarget: a rule's target (-j PLUGIN): answer Continue, Accept or
	// Drop, and optionally set the mark or rewrite the bytes.
	KindTarget
)

// Answer is the plugin's answer about one packet.
type Answer uint8

const (
	NoMatch  Answer = iota // matcher: the rule does not apply
	Match                  // matcher: the rule applies
	Hotdrop                // matcher: drop the packet at once
	Continue               // target: go on with the next rule
	Accept                 // target: the packet passes this hook's table
	Drop                   // target: the packet is dropped
)

var answerNames = [...]string{"no-match", "match", "hotdrop", "continue", "accept", "drop"}

func (a Answer) String() string {
	if int(a) < len(answerNames) {
		return answerNames[a]
	}
	return fmt.Sprintf("answer%d", uint8(a))
}

// Packet is one packet of a batch as the plugin sees it. It and Data are
// valid only during the call that hands them over: copy what you keep.
type Packet struct {
	// ID is the packet's index in the batch the host sent.
	ID   uint32
	Hook Hook
	Kind Kind
	// Fragment: a non-first fragment (ports are 0).
	Fragment bool
	Src, Dst netip.Addr
	SrcPort  uint16
	DstPort  uint16
	// Proto is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
	Proto uint8
	// InLink and OutLink are the host's link names ("" when not known at
	// the hook: no OutLink at Prerouting and Input).
	InLink, OutLink string
	Mark            uint32
	// Tag is the rule's tag (tag: in YAML, --tag in iptables form): one
	// plugin may serve rules that ask different questions.
	Tag uint32
	// Len is the packet's length from its network header.
	Len int
	// Data holds the bytes the plugin asked for in Needs (nil for
	// DataNone), from the network header on.
	Data []byte
}

// Result is a target's answer about one packet.
type Result struct {
	// Answer is Continue, Accept or Drop (a zero Result is NoMatch, which
	// the host takes as Continue for a target).
	Answer Answer
	// SetMark sets the packet's mark to Mark (Needs.SetMark required).
	SetMark bool
	Mark    uint32
	// Rewrite, when not nil, replaces the packet's bytes from the network
	// header on (Needs.Rewrite required); it must have the length of the
	// bytes the plugin was given, keep the packet's length and keep every
	// checksum valid. The SDK copies it before the next batch.
	Rewrite []byte
}

// Matcher answers for the packets of a batch a rule's matcher asks about
// (Kind KindMatch): out[i] for pkts[i]; len(out) == len(pkts). It is called
// for one batch at a time per stream; several streams (one per host
// worker) may call it at once, so it must be safe for concurrent use.
type Matcher interface {
	Match(pkts []*Packet, out []Answer)
}

// Target decides for the packets of a batch a rule's target is asked about
// (Kind KindTarget): out[i] for pkts[i]. Concurrency as for Matcher.
type Target interface {
	Action(pkts []*Packet, out []Result)
}

// Data says which bytes of each packet the plugin gets.
type Data uint8

const (
	// DataNone: the parsed fields only (no bytes cross).
	DataNone Data = iota
	// DataHeaders: the IP header (options, extension headers) and up to
	// 60 bytes from the transport header on.
	DataHeaders
	// DataPacket: the packet from its network header, up to MaxBytes.
	DataPacket
)

// Needs is what the plugin declares when it is configured.
type Needs struct {
	Data Data
	// MaxBytes caps DataPacket (0: the whole packet).
	MaxBytes int
	// Rewrite: a Target may return Result.Rewrite.
	Rewrite bool
	// SetMark: a Target may set marks.
	SetMark bool
	// CacheTTLMillis > 0: a verdict may be reused for the rest of the
	// flow's packets for this long (per conntrack entry, when the host has
	// conntrack).
	CacheTTLMillis uint32
}

// Plugin is what main hands to Serve.
type Plugin struct {
	// Version is shown by `pipectl plugins` (e.g. "1.2.0" or a git hash).
	Version string
	// Configure, when set, receives the plugin's name and its config:
	// block from the pipeline file as JSON, once before any packet, and
	// returns the plugin's needs; an error refuses the config (the host
	// reports it). Nil: Needs is used.
	Configure func(name string, configJSON []byte) (Needs, error)
	// Needs is used when Configure is nil.
	Needs Needs
	// Matcher and Target: at least one.
	Matcher Matcher
	Target  Target
}
