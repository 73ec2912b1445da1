// Package standard registers every built-in pipestack module. Import it for
// its side effect:
//
//	import _ "github.com/pipestack/pipestack/modules/standard"
//
// cmd/pipectl does; a custom build adds its own modules beside it (see
// package pipectl/cli). Every module registers on every OS; one that cannot
// work on this OS fails when its pipeline is provisioned, with "not
// supported on <os>".
//
// Built in so far: link.channel (in-memory links), link.tun (Linux TUN
// devices), link.afpacket (Linux AF_PACKET), link.sniffer (pcap capture
// around any link), link.wintun (Windows), network.ipv4, network.arp,
// network.ipv6, transport.udp and the filter (filter:, filter.match.*,
// filter.target.*).
package standard

import (
	_ "github.com/pipestack/pipestack/modules/arp"           // network.arp
	_ "github.com/pipestack/pipestack/modules/conntrack"     // netfilter.conntrack, filter.match.conntrack/state/connmark/connbytes, filter.target.connmark
	_ "github.com/pipestack/pipestack/modules/filter"        // filter, filter.match.*, filter.target.*
	_ "github.com/pipestack/pipestack/modules/filter/plugin" // plugins, filter.target.plugin
	_ "github.com/pipestack/pipestack/modules/ipv4"          // network.ipv4
	_ "github.com/pipestack/pipestack/modules/ipv6"          // network.ipv6
	_ "github.com/pipestack/pipestack/modules/link/afpacket" // link.afpacket
	_ "github.com/pipestack/pipestack/modules/link/channel"  // link.channel
	_ "github.com/pipestack/pipestack/modules/link/impair"   // link.impair
	_ "github.com/pipestack/pipestack/modules/link/sniffer"  // link.sniffer
	_ "github.com/pipestack/pipestack/modules/link/tun"      // link.tun
	_ "github.com/pipestack/pipestack/modules/link/wintun"   // link.wintun
	_ "github.com/pipestack/pipestack/modules/tcp"           // transport.tcp, tcp.cc.newreno
	_ "github.com/pipestack/pipestack/modules/udp"           // transport.udp
)
