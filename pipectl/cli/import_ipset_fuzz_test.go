package cli

import (
	"strings"
	"testing"
)

// FuzzImportIpset: no ipset save input makes the importer panic; one it
// translates without a problem gives sets that load.
func FuzzImportIpset(f *testing.F) {
	for _, s := range []string{
		"create a hash:net family inet hashsize 1024 maxelem 65536 timeout 600 counters\nadd a 192.0.2.0/24 timeout 5 packets 1 bytes 2\n",
		"create b hash:ip,port family inet\nadd b 10.0.0.1,tcp:80\nadd b 10.0.0.1,udp:1-3\n",
		"create c bitmap:port range 0-1024\nadd c 22\n",
		"create d hash:net,port\nadd d 10.0.0.0/8,tcp:22\n",
		"create e hash:ip family inet6\nadd e 2001:db8::1\n",
		"add x 1.2.3.4\n",
		"create\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, problems := importIpset("in", data)
		if len(problems) > 0 || len(lines) == 0 {
			return
		}
		section := "filter:\n" + strings.Join(lines, "\n") + "\n"
		if err := checkSection([]byte(section)); err != nil && !strings.Contains(err.Error(), "set ") && !strings.Contains(err.Error(), "element") {
			t.Fatalf("translated sets do not load for a reason of their own: %v\n%s", err, section)
		}
	})
}
