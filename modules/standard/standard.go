// Package standard registers every built-in pipestack module. Import it for
// its side effect:
//
//	import _ "github.com/pipestack/pipestack/modules/standard"
//
// cmd/pipectl does; a custom build adds its own modules beside it (see
// package pipectl/cli). Every module registers on every OS; one that cannot
// work on this OS fails when its pipeline is provisioned, with "not
// supported on <os>".
//
// Built in so far: link.channel (in-memory links) and network.ipv4.
package standard

import (
	_ "github.com/pipestack/pipestack/modules/ipv4"         // network.ipv4
	_ "github.com/pipestack/pipestack/modules/link/channel" // link.channel
)
