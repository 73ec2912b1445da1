package sdk

import (
	"cmp"
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// ProtocolVersion is the newest protocol version, the one the SDK speaks
// with a host that speaks it too. The host offers every version it speaks
// in go-plugin's versioned handshake (PLUGIN_PROTOCOL_VERSIONS=1,2) and the
// plugin answers with the newest one both speak; Configure carries it.
// Version 1 (72-byte records) is what plugins in other languages speak
// (examples/plugin-python); version 2 has 32-byte records (batch.go).
const ProtocolVersion = 2

// ProtocolVersions are the versions the SDK speaks (both sides).
var ProtocolVersions = []int{1, 2}

// Handshake is the go-plugin handshake shared by host and plugin: a binary
// started without the magic cookie in its environment says it is a plugin
// and exits, and a protocol version the other side does not speak fails
// the start.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "PIPESTACK_FILTER_PLUGIN",
	MagicCookieValue: "8c0e3f4e2d6a4b1f9a7e5c3b1d0f2e4a",
}

// PluginName is the name the plugin is dispensed under.
const PluginName = "filter"

// GRPCPlugin is the go-plugin glue: on the plugin side it registers the
// service around Impl, on the host side it makes a Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl *Plugin
	// Version is the protocol version the host's Client speaks (0: the
	// newest).
	Version int
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterFilterPluginServer(s, newServer(p.Impl))
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{c: pb.NewFilterPluginClient(c), version: cmp.Or(p.Version, ProtocolVersion)}, nil
}

// PluginSet is the go-plugin plugin set of one side, for the newest
// protocol version.
func PluginSet(impl *Plugin) plugin.PluginSet { return PluginSetOf(impl, ProtocolVersion) }

// PluginSetOf is the plugin set for one protocol version.
func PluginSetOf(impl *Plugin, version int) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl, Version: version}}
}

// VersionedPluginSets are the plugin sets of every version the SDK speaks
// (go-plugin's VersionedPlugins: the handshake picks the newest both
// sides speak).
func VersionedPluginSets(impl *Plugin) map[int]plugin.PluginSet {
	m := make(map[int]plugin.PluginSet, len(ProtocolVersions))
	for _, v := range ProtocolVersions {
		m[v] = PluginSetOf(impl, v)
	}
	return m
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
