package tcp

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
)

// StackResolver returns a Go resolver (the pure-Go one, PreferGo) whose
// queries go to the DNS server at server ("10.0.0.53:53", an IP literal
// and port) over stack s itself: UDP through transport.udp, and TCP
// through this package when an answer is truncated — never over the
// host's network. Set it as Dialer.Resolver to dial host names on s. The
// resolver's other settings (search domains, timeouts, attempts) are the
// Go resolver's from the host's /etc/resolv.conf; only the server is
// replaced.
func StackResolver(s *pipeline.Stack, server string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		if strings.HasPrefix(network, "udp") {
			return udp.Dial(s, "udp", "", server)
		}
		d := Dialer{Stack: s, KeepAlive: -1}
		return d.DialContext(ctx, "tcp", server)
	}}
}

// dialName dials a host name: its addresses from d.Resolver, of the
// network's family, tried in the resolver's order until one connects.
func (d *Dialer) dialName(ctx context.Context, network, host, port string) (*Conn, error) {
	family := "ip"
	switch network {
	case "tcp4":
		family = "ip4"
	case "tcp6":
		family = "ip6"
	}
	addrs, err := d.Resolver.LookupNetIP(ctx, family, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	one := *d
	one.Resolver = nil
	var first error
	for _, a := range addrs {
		c, err := one.DialTCP(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if first == nil {
		first = &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no suitable address", Name: host, IsNotFound: true}}
	}
	return nil, first
}

// isName: host is neither empty nor an IP literal.
func isName(host string) bool {
	if host == "" {
		return false
	}
	_, err := netip.ParseAddr(host)
	return err != nil
}
