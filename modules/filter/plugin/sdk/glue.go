package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// ProtocolVersion is the protocol's version in the handshake.
const ProtocolVersion = 1

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
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterFilterPluginServer(s, newServer(p.Impl))
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{c: pb.NewFilterPluginClient(c)}, nil
}

// PluginSet is the go-plugin plugin set of one side.
func PluginSet(impl *Plugin) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
