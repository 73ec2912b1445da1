package sdk

import (
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"

	"github.com/hashicorp/go-plugin"
)

// TestClient serves impl and connects a Client to it in one process, over
// go-plugin's in-process gRPC test connection (a Unix socket): for tests of
// a plugin's logic and of the host's side without a child process. The
// connection closes when t ends.
func TestClient(t testing.TB, impl *Plugin) *Client { return TestClientOf(t, impl, ProtocolVersion) }

// TestClientOf is TestClient speaking one protocol version.
func TestClientOf(t testing.TB, impl *Plugin, version int) *Client {
	t.Helper()
	c, _ := plugin.TestPluginGRPCConn(t, false, PluginSetOf(impl, version))
	// Close sends go-plugin's Shutdown, which stops the server (calling
	// its Stop as well races with that inside go-plugin).
	t.Cleanup(func() { c.Close() })
	raw, err := c.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client)
}

// TestPair serves impl on a gRPC server with the plugin's server options
// and connects a Client with the host's dial options over a Unix socket in
// dir, in one process, without go-plugin's handshake: what the benchmarks
// use to measure the protocol (version 1 or 2) with its codec. stop ends
// both.
func TestPair(dir string, impl *Plugin, version int) (c *Client, stop func(), err error) {
	sock := filepath.Join(dir, "plugin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer(ServerOptions()...)
	pb.RegisterFilterPluginServer(srv, newServer(impl))
	go srv.Serve(ln)
	cc, err := grpc.NewClient("unix://"+sock, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		srv.Stop()
		return nil, nil, err
	}
	return NewClient(pb.NewFilterPluginClient(cc), version), func() { cc.Close(); srv.Stop() }, nil
}
