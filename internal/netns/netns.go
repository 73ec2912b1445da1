// Package netns names and enters Linux network namespaces for the links
// that open devices in one (link.tun, link.afpacket): one meaning of a
// `netns:` value and one way in and back out.
//
// A value is either a name, the file /run/netns/NAME that `ip netns add`
// makes (iproute2's directory; /var/run is a symlink to /run on Debian and
// most distributions), or an absolute path to a namespace file such as
// /proc/PID/ns/net. "" means the caller's own namespace.
package netns

import (
	"fmt"
	"strings"
)

// Dir is where iproute2 keeps named network namespaces.
const Dir = "/run/netns"

// Path is the namespace file of ns: ns itself when it is an absolute path,
// Dir/ns for a name, "" for "".
func Path(ns string) string {
	if ns == "" || strings.HasPrefix(ns, "/") {
		return ns
	}
	return Dir + "/" + ns
}

// Check validates a configured value: "", an absolute path, or a name
// without slashes or white space.
func Check(ns string) error {
	if ns != "" && !strings.HasPrefix(ns, "/") && strings.ContainsAny(ns, "/ \t\n") {
		return fmt.Errorf("netns %q: a name under %s or an absolute path", ns, Dir)
	}
	return nil
}
