package pipelinetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// The transparent-proxy topology of the transport forwarders' tests
// (transport.tcp's and transport.udp's Forwarder): a client host whose
// default routes go to a proxy stack; the proxy's link is transparent and
// has no address of its own, so what arrives for any destination is the
// proxy's to take.
//
//	client 10.0.1.2, fd00:1::2 ──(a)── proxy (transparent, no address)

// ProxyClientConfig is the client's pipeline file, with the transport
// module transport ("transport.tcp", "transport.udp").
func ProxyClientConfig(transport string) string {
	return fmt.Sprintf(`
name: client
modules: [network.ipv4, network.ipv6, %s]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.2/24, "fd00:1::2/64"]}
routes:
  - {to: default4, via: 10.0.1.1, link: a}
  - {to: default6, via: "fd00:1::1", link: a}
`, transport)
}

// ProxyConfig is the proxy's pipeline file, with the transport module
// transport; forwarding turns IP forwarding on (a forwarder must take the
// packets all the same).
func ProxyConfig(transport string, forwarding bool) string {
	fwd := ""
	if forwarding {
		fwd = "forwarding: {ipv4: true, ipv6: true}\n"
	}
	return fmt.Sprintf(`
name: proxy
modules: [network.ipv4, network.ipv6, %s]
%slinks:
  - {name: a, module: link.channel, framing: ip, transparent: true}
routes:
  - {to: 10.0.1.0/24, link: a}
  - {to: "fd00:1::/64", link: a}
`, transport, fwd)
}

// NewProxyPair builds the client and the proxy, connected (see
// ProxyClientConfig and ProxyConfig).
func NewProxyPair(t testing.TB, transport string, forwarding bool, opts pipeline.Options) (client, proxy *Node) {
	t.Helper()
	client = NewNode(t, "client", ProxyClientConfig(transport), opts)
	proxy = NewNode(t, "proxy", ProxyConfig(transport, forwarding), opts)
	Connect(t, client, "a", proxy, "a")
	return client, proxy
}

// NextRequest returns a forwarder's next request: it calls next (the
// forwarder's Next) with a 10 s deadline and fails t on an error.
func NextRequest[R any](t testing.TB, next func(context.Context) (R, error)) R {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
