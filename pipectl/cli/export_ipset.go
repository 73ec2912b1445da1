package cli

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
)

// writeIpset writes sets as `ipset save` does, one family's elements (an
// ipset set holds one family; ours both): create NAME TYPE family …, then
// add NAME ELEMENT [timeout N]. What ipset cannot say is a comment: an
// element without a protocol (ours: any protocol with ports; ipset's
// default is tcp) is written for tcp and udp, a bitmap:port element's
// protocol is dropped, verdict maps are not sets.
func writeIpset(w io.Writer, sets []filter.SetInfo, family int) {
	fam := "inet"
	if family == 6 {
		fam = "inet6"
	}
	for _, s := range sets {
		if s.Map {
			fmt.Fprintf(w, "# %s is a verdict map (nftables' vmap): ipset has no form for it\n", s.Name)
			continue
		}
		head := "create " + s.Name + " " + s.Type
		if s.Type == "bitmap:port" {
			head += " range 0-65535"
		} else {
			head += " family " + fam
		}
		if s.Timeout > 0 {
			head += fmt.Sprintf(" timeout %d", s.Timeout)
		}
		if s.Counters {
			head += " counters"
		}
		head += fmt.Sprintf(" maxelem %d", s.MaxElem)
		fmt.Fprintln(w, head)
		for _, e := range s.Members {
			addr, port, two := strings.Cut(e.Elem, " . ")
			if s.Type == "bitmap:port" {
				addr, port, two = "", e.Elem, true
			}
			if addr != "" && !familyOf(addr, family) {
				continue
			}
			var elems []string
			switch {
			case !two:
				elems = []string{addr}
			case s.Type == "bitmap:port":
				if p, rest, ok := strings.Cut(port, ":"); ok {
					fmt.Fprintf(w, "# %s: %s is %s only here; bitmap:port has no protocol\n", s.Name, e.Elem, p)
					port = rest
				}
				elems = []string{port}
			case strings.Contains(port, ":"):
				elems = []string{addr + "," + port}
			default:
				fmt.Fprintf(w, "# %s: %s is any protocol with ports here; ipset's default is tcp: written for tcp and udp\n", s.Name, e.Elem)
				elems = []string{addr + ",tcp:" + port, addr + ",udp:" + port}
			}
			for _, el := range elems {
				line := "add " + s.Name + " " + el
				if e.Timeout > 0 {
					line += fmt.Sprintf(" timeout %d", e.Timeout)
				}
				if s.Counters {
					line += fmt.Sprintf(" packets %d bytes %d", e.Packets, e.Bytes)
				}
				fmt.Fprintln(w, line)
			}
		}
	}
}

// familyOf: an element's address (or range, prefix) is of family.
func familyOf(s string, family int) bool {
	a, _, _ := strings.Cut(s, "-")
	a, _, _ = strings.Cut(a, "/")
	x, err := netip.ParseAddr(a)
	return err == nil && (x.Is4() == (family == 4))
}
