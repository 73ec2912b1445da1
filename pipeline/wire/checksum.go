package wire

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the RFC 1071 one's-complement sum of b, folded to 16 bits
// and added (one's-complement) to initial. The result is NOT inverted, so it
// can be fed back as initial to sum discontiguous pieces, provided every piece
// but the last has an even length. An odd trailing byte is padded with zero.
//
// The result is 0 only when initial and every byte of b are zero; otherwise
// it lies in [1, 0xffff], exactly as a naive 16-bit loop with end-around carry
// would compute it.
func Checksum(b []byte, initial uint16) uint16 {
	// The one's-complement sum is byte-order independent (RFC 1071 §2(B)):
	// summing little-endian words and swapping the folded result gives the
	// big-endian sum, and little-endian loads need no byte swap on the
	// common hosts. Eight bytes are added at a time, carries chained.
	//
	// The main loop adds 64 bytes per step in one chain of add-with-carry
	// and takes the last carry in at the end of the step (as gVisor's
	// checksum package does): the carry never lives across the loop's
	// branch, so the compiler keeps the whole step in registers and flags
	// (eight loads, ADDQ and seven ADCQ, one SBBQ), and slicing the step's
	// 64 bytes first leaves no bounds check inside. The older loop of 32
	// bytes that chained the carry across steps saved and restored the
	// flag each step: 1.6–1.7× slower over 64 KiB.
	sum := uint64(bits.ReverseBytes16(initial))
	var c uint64
	for len(b) >= 64 {
		x := b[:64:64]
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[0:]), 0)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[8:]), c)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[16:]), c)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[24:]), c)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[32:]), c)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[40:]), c)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[48:]), c)
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(x[56:]), c)
		sum += c // cannot carry again: the sum is at most 2^64 − 2 after a carry
		b = b[64:]
	}
	c = 0
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		sum, c = bits.Add64(sum, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, c = bits.Add64(sum, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// Little-endian: the lone byte is the high byte of a big-endian
		// word whose low byte is the zero pad.
		sum, c = bits.Add64(sum, uint64(b[0]), c)
	}
	sum, c = bits.Add64(sum, 0, c)
	sum += c // cannot carry again: sum was 0 if c is 1

	// Fold with end-around carry; each step keeps a nonzero sum nonzero.
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return bits.ReverseBytes16(uint16(sum))
}

// ChecksumCombine returns the one's-complement sum of a and b.
func ChecksumCombine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// PseudoHeaderChecksum returns the non-inverted partial sum of the TCP/UDP
// pseudo-header: source and destination addresses (4 bytes each for IPv4,
// 16 for IPv6), the protocol number and the transport length. Pass it as the
// pseudo argument of UDP.CalculateChecksum or TCP.CalculateChecksum. It is
// also the value a sender using checksum offload leaves in the checksum field.
func PseudoHeaderChecksum(proto uint8, src, dst []byte, length uint16) uint16 {
	sum := Checksum(src, 0)
	sum = Checksum(dst, sum)
	return ChecksumCombine(sum, ChecksumCombine(uint16(proto), length))
}

// ChecksumUpdate16 returns the new value of a stored (inverted) checksum field
// after one 16-bit word covered by it changed from old to new, using RFC 1624
// eqn. 3: HC' = ~(~HC + ~m + m'). For any data that is not all zero the
// result equals a full recomputation, including when either value is 0x0000
// or 0xffff and when the old or new checksum is 0x0000. (If the new data is
// all zero the result is 0x0000 where a recomputation gives 0xffff; the two
// cannot be told apart from the checksum alone. An IPv4 header is never all
// zero.)
//
// UDP callers must not update a zero (absent) checksum and must store a zero
// result as 0xffff.
func ChecksumUpdate16(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// ChecksumUpdate32 is ChecksumUpdate16 for a 32-bit value (two adjacent,
// 16-bit aligned words), such as an IPv4 address or a TCP sequence number.
func ChecksumUpdate32(sum uint16, old, new uint32) uint16 {
	s := uint64(^sum) +
		uint64(^uint16(old>>16)) + uint64(^uint16(old)) +
		uint64(new>>16) + uint64(new&0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// CopyChecksum copies src into dst, as copy does, and returns how many
// bytes it copied and their sum: Checksum(dst[:n], initial), computed in the
// same pass. A sender that copies data into a packet gets the data's sum
// for the cost of the copy: the bytes are loaded once, not a second time
// (from a cache farther away by then) to sum them.
//
// The main loop moves 64 bytes per step: eight loads, eight stores and the
// one add-with-carry chain of Checksum's step, the carry taken in at the
// end of the step. The stores do not touch the flags, so the chain stays
// in flags and registers as in Checksum.
//
// To combine sums of pieces that start at odd offsets of a buffer, swap the
// bytes of the piece's sum first (RFC 1071 §2(B)): see ChecksumShift.
func CopyChecksum(dst, src []byte, initial uint16) (int, uint16) {
	n := min(len(dst), len(src))
	d, s := dst[:n], src[:n]
	sum := uint64(bits.ReverseBytes16(initial))
	var c uint64
	i := 0
	for ; i <= n-64; i += 64 {
		x, y := s[i:i+64:i+64], d[i:i+64:i+64]
		a0 := binary.LittleEndian.Uint64(x[0:])
		a1 := binary.LittleEndian.Uint64(x[8:])
		a2 := binary.LittleEndian.Uint64(x[16:])
		a3 := binary.LittleEndian.Uint64(x[24:])
		binary.LittleEndian.PutUint64(y[0:], a0)
		binary.LittleEndian.PutUint64(y[8:], a1)
		binary.LittleEndian.PutUint64(y[16:], a2)
		binary.LittleEndian.PutUint64(y[24:], a3)
		sum, c = bits.Add64(sum, a0, 0)
		sum, c = bits.Add64(sum, a1, c)
		sum, c = bits.Add64(sum, a2, c)
		sum, c = bits.Add64(sum, a3, c)
		a0 = binary.LittleEndian.Uint64(x[32:])
		a1 = binary.LittleEndian.Uint64(x[40:])
		a2 = binary.LittleEndian.Uint64(x[48:])
		a3 = binary.LittleEndian.Uint64(x[56:])
		binary.LittleEndian.PutUint64(y[32:], a0)
		binary.LittleEndian.PutUint64(y[40:], a1)
		binary.LittleEndian.PutUint64(y[48:], a2)
		binary.LittleEndian.PutUint64(y[56:], a3)
		sum, c = bits.Add64(sum, a0, c)
		sum, c = bits.Add64(sum, a1, c)
		sum, c = bits.Add64(sum, a2, c)
		sum, c = bits.Add64(sum, a3, c)
		sum += c // cannot carry again, as in Checksum
	}
	s, d = s[i:], d[i:]
	// The tail (under 64 bytes): copied, then summed by Checksum's tail
	// loop from the copy, with the folded sum so far as its initial value.
	copy(d, s)
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return n, Checksum(d, bits.ReverseBytes16(uint16(sum)))
}

// ChecksumShift returns the sum (Checksum's, not inverted) of a piece as it
// counts in a buffer where the piece starts at offset off: swapped when off
// is odd (RFC 1071 §2(B): a byte's place in its 16-bit word flips). Sums of
// a buffer's consecutive pieces, each shifted so, add up (ChecksumCombine)
// to the buffer's sum.
func ChecksumShift(sum uint16, off int) uint16 {
	if off&1 != 0 {
		return bits.ReverseBytes16(sum)
	}
	return sum
}
