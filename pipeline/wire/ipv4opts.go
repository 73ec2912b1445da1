package wire

// IPv4 option types (RFC 791 and the IANA registry); the type byte holds the
// copied flag, the class and the number.
const (
	IPv4OptionEOL         = 0
	IPv4OptionNOP         = 1
	IPv4OptionRecordRoute = 7
	IPv4OptionTimestamp   = 68
	IPv4OptionLSRR        = 131
	IPv4OptionSSRR        = 137
	IPv4OptionRouterAlert = 148

	// IPv4OptionCopied is the copied flag of an option type: the option is
	// repeated in every fragment, not only the first.
	IPv4OptionCopied = 0x80
)

// OptionsError walks the options of a header that passed Check and returns
// -1 when they are well formed, or else the offset, from the start of the IP
// header, of the first offending byte: what an ICMP parameter problem points
// at. It checks the TLV structure (an option's length byte missing, below 2
// or running past the header) and the pointer of the options that have one
// (record route and source routes: length at least 3, pointer at least 4;
// timestamp: length at least 4, pointer at least 5). Unknown options with a
// valid length are accepted. It never panics and never allocates.
func (b IPv4) OptionsError() int {
	hl := b.HeaderLength()
	for i := IPv4MinimumSize; i < hl; {
		t := b[i]
		switch t {
		case IPv4OptionEOL:
			return -1
		case IPv4OptionNOP:
			i++
			continue
		}
		if i+1 >= hl {
			return i // no room for the length byte
		}
		l := int(b[i+1])
		if l < 2 || i+l > hl {
			return i + 1
		}
		switch t {
		case IPv4OptionRecordRoute, IPv4OptionLSRR, IPv4OptionSSRR:
			if l < 3 {
				return i + 1
			}
			if b[i+2] < 4 {
				return i + 2
			}
		case IPv4OptionTimestamp:
			if l < 4 {
				return i + 1
			}
			if b[i+2] < 5 {
				return i + 2
			}
		}
		i += l
	}
	return -1
}

// SourceRouted reports whether the options carry a loose or strict source
// route. The options must have passed OptionsError.
func (b IPv4) SourceRouted() bool {
	hl := b.HeaderLength()
	for i := IPv4MinimumSize; i < hl; {
		switch t := b[i]; t {
		case IPv4OptionEOL:
			return false
		case IPv4OptionNOP:
			i++
			continue
		case IPv4OptionLSRR, IPv4OptionSSRR:
			return true
		}
		if i+1 >= hl || b[i+1] < 2 {
			return false
		}
		i += int(b[i+1])
	}
	return false
}

// IPv4FragmentOptions writes into dst the options of opts (well formed, as
// OptionsError accepts them) that every fragment after the first repeats —
// those with the copied flag (RFC 791 §3.2) — padded with EOL bytes to a
// multiple of 4, and returns how many bytes it wrote. dst must hold at least
// len(opts)+3 bytes.
func IPv4FragmentOptions(dst, opts []byte) int {
	n := 0
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == IPv4OptionEOL {
			break
		}
		if t == IPv4OptionNOP {
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			break
		}
		l := int(opts[i+1])
		if t&IPv4OptionCopied != 0 {
			n += copy(dst[n:], opts[i:i+l])
		}
		i += l
	}
	for n%4 != 0 {
		dst[n] = IPv4OptionEOL
		n++
	}
	return n
}

// IPv4FragmentPayloadSize is the payload each fragment but the last carries
// when a packet with an hdrLen-byte header is fragmented for mtu: the room
// left by the header, rounded down to a multiple of 8. It is 0 when the MTU
// leaves no room for 8 bytes.
func IPv4FragmentPayloadSize(mtu, hdrLen int) int {
	n := (mtu - hdrLen) &^ 7
	if n < 8 {
		return 0
	}
	return n
}
