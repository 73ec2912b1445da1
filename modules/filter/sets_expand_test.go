package filter

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestSetPortRangeBound: an addr . port set's port ranges are expanded
// into its table; like prefix . port's, they are bounded (maxExpanded),
// else 1,048,576 elements of 65,536 ports each (pipectl set add, the
// file) would be 2^36 entries.
func TestSetPortRangeBound(t *testing.T) {
	decl := setDecl{name: "wide", typ: setIPPort, maxElem: defaultMaxElem}
	var lines []string
	for i := 0; i <= maxExpanded/65536; i++ {
		lines = append(lines, fmt.Sprintf("10.0.%d.%d . 0-65535", i/256, i%256))
	}
	_, err := newSetLines(decl, lines, time.Unix(1000, 0))
	if err == nil || !strings.Contains(err.Error(), "expand to more than") {
		t.Fatalf("newSet: %v, want the bound", err)
	}
	s, err := newSetLines(setDecl{name: "w", typ: setIPPort, maxElem: defaultMaxElem}, []string{"10.0.0.1 . 1-65535"}, time.Unix(1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if k := s.snap.Load().elems[0].key; !k.v4 || s.snap.Load().lookup(k.loAddr(), 80, 6, 0) < 0 {
		t.Fatal("a range within the bound is not looked up")
	}
}

// TestSetNestedPortExpiry: a port (or addr . port, prefix . port) element
// inside a wider one takes the wider one's entries for its ports in the
// lookup table; once it expires, the wider element, still in the set
// (the listing shows it), must match those ports again — not only after
// the next change rebuilds the table.
func TestSetNestedPortExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	at := now.Add(10 * time.Second).UnixNano()
	for _, c := range []struct {
		typ         setType
		wide, inner string
		addr        string
	}{
		{setPort, "1000-2000", "1500", ""},
		{setPort, "tcp:1000-2000", "tcp:1500", ""},
		{setIPPort, "10.0.0.1 . 1000-2000", "10.0.0.1 . 1500", "10.0.0.1"},
		{setIPPort, "2001:db8::1 . tcp:1000-2000", "2001:db8::1 . tcp:1500", "2001:db8::1"},
		{setNetPort, "10.0.0.0/24 . 1000-2000", "10.0.0.0/24 . 1500", "10.0.0.7"},
		{setNetPort, "2001:db8::/64 . udp:1000-2000", "2001:db8::/64 . udp:1500", "2001:db8::7"},
	} {
		s, err := newSetLines(setDecl{name: "p", typ: c.typ, timeout: time.Hour, maxElem: 100}, []string{c.wide}, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(c.inner, 5*time.Second, now); err != nil {
			t.Fatal(err)
		}
		var a netip.Addr
		if c.addr != "" {
			a = netip.MustParseAddr(c.addr)
		}
		proto := uint8(6)
		if strings.Contains(c.wide, "udp:") {
			proto = 17
		}
		sn := s.snap.Load()
		if e := sn.lookup(a, 1500, proto, now.UnixNano()); e < 0 || elemText(sn, e) != s.Info(now, true).Members[1].Elem {
			t.Fatalf("%s: before the expiry: element %d", c.inner, e)
		}
		if e := sn.lookup(a, 1500, proto, at); e < 0 || elemText(sn, e) != elemText(sn, 0) {
			t.Errorf("%s expired inside %s: port 1500 found %d, want the wider element (members %+v)", c.inner, c.wide, e, s.Info(time.Unix(0, at), true).Members)
		}
	}
}
