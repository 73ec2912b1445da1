// Package sdk is what an out-of-process filter plugin for pipestack is
// written with: implement a Matcher and/or a Target over a batch of
// packets, fill a Plugin and call Serve from main. The SDK speaks the
// protocol (../proto/filterplugin.proto) over hashicorp/go-plugin and gRPC:
// it decodes each batch the host sends, calls the plugin once per batch,
// sends the answers back in order, answers health checks, and exits when
// the host is gone.
//
// The package is laid out as go-plugin's own gRPC example is: interface.go
// (the plugin author's interface), batch.go (Batch, Packet and Results:
// views of protocol 2's records, and protocol 1's conversion), glue.go (the go-plugin Plugin, the
// handshake), server.go (the plugin side of the gRPC service), client.go
// (the host side, used by modules/filter/plugin), serve.go (Serve) and
// testing.go (host and plugin in one process, for tests).
//
// A plugin sees only what it asked for in its Needs: the parsed fields of
// every packet always, and the packet's headers or bytes when it asks.
// A Packet is a view of its record in the message (batch.go): its methods
// read the record when called, nothing is decoded per packet before.
package sdk

import "fmt"

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

// Matcher answers for the packets of a batch a rule's matcher asks about
// (Kind KindMatch): out[i] for b.Packet(i), each NoMatch until set;
// len(out) == b.Len(). It is called for one batch at a time per stream;
// several streams (one per host lane) may call it at once, so it must be
// safe for concurrent use.
type Matcher interface {
	Match(b *Batch, out []Answer)
}

// Target decides for the packets of a batch a rule's target is asked about
// (Kind KindTarget): out.Answers[i] for b.Packet(i), each Continue until
// set, and out.SetMark, out.Rewrite. Concurrency as for Matcher.
type Target interface {
	Action(b *Batch, out *Results)
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
