package pipeline

import "net/netip"

// PrimaryEndpointBehavior says whether an address may be chosen as the
// source for traffic that does not name one (the seed's enumeration).
type PrimaryEndpointBehavior uint8

const (
	// CanBePrimaryEndpoint: may be chosen, in the order added (default).
	CanBePrimaryEndpoint PrimaryEndpointBehavior = iota
	// FirstPrimaryEndpoint: chosen before CanBePrimaryEndpoint addresses;
	// among several, the most recently added first.
	FirstPrimaryEndpoint
	// NeverPrimaryEndpoint: never chosen as a source.
	NeverPrimaryEndpoint
)

// AddressKind is an address's state (the seed's kinds).
type AddressKind uint8

const (
	// Permanent: configured and usable.
	Permanent AddressKind = iota
	// PermanentTentative: configured, duplicate address detection not
	// finished; not usable yet (IPv6).
	PermanentTentative
	// PermanentExpired: configured but deprecated; used as a source only
	// when nothing else exists.
	PermanentExpired
	// Temporary: added by the stack (e.g. SLAAC).
	Temporary
)

func (k AddressKind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case PermanentTentative:
		return "tentative"
	case PermanentExpired:
		return "deprecated"
	case Temporary:
		return "temporary"
	}
	return "kind?"
}

// AddressInfo is one address of a NIC.
type AddressInfo struct {
	Prefix   netip.Prefix
	Behavior PrimaryEndpointBehavior
	Kind     AddressKind
}

// orderPrimary sorts addresses into primary order: FirstPrimary (latest
// first), then CanBePrimary (in order added), then deprecated ones; tentative
// and NeverPrimary addresses are not candidates and come last.
func orderPrimary(in []AddressInfo) []AddressInfo {
	out := make([]AddressInfo, 0, len(in))
	for i := len(in) - 1; i >= 0; i-- {
		if a := in[i]; a.Behavior == FirstPrimaryEndpoint && a.Kind != PermanentExpired && a.Kind != PermanentTentative {
			out = append(out, a)
		}
	}
	for _, a := range in {
		if a.Behavior == CanBePrimaryEndpoint && a.Kind != PermanentExpired && a.Kind != PermanentTentative {
			out = append(out, a)
		}
	}
	for _, a := range in {
		if a.Behavior != NeverPrimaryEndpoint && a.Kind == PermanentExpired {
			out = append(out, a)
		}
	}
	for _, a := range in {
		if a.Behavior == NeverPrimaryEndpoint || a.Kind == PermanentTentative {
			out = append(out, a)
		}
	}
	return out
}

func primaryCandidate(a AddressInfo) bool {
	return a.Behavior != NeverPrimaryEndpoint && a.Kind != PermanentTentative
}
