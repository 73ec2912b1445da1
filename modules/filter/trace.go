package filter

import (
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

// policyText is the text a trace shows for a built-in chain's policy (the
// last rule of its compiled chain): iptables' `-P CHAIN POLICY`.
func policyText(c *chain) string {
	p := "ACCEPT"
	if c.policy == pipeline.VerdictDrop {
		p = "DROP"
	}
	return "-P " + strings.ToUpper(c.name) + " " + p
}
