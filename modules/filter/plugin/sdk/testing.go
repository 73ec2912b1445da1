package sdk

import (
	"testing"

	"github.com/hashicorp/go-plugin"
)

// TestClient serves impl and connects a Client to it in one process, over
// go-plugin's in-process gRPC test connection (a Unix socket): for tests of
// a plugin's logic and of the host's side without a child process. The
// connection closes when t ends.
func TestClient(t testing.TB, impl *Plugin) *Client {
	t.Helper()
	c, s := plugin.TestPluginGRPCConn(t, false, PluginSet(impl))
	t.Cleanup(func() {
		c.Close()
		s.Stop()
	})
	raw, err := c.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client)
}
