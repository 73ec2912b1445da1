package wire

import (
	"encoding/hex"
	"strings"
)

// Fixtures are frames captured with an AF_PACKET socket on a Linux 6.x guest
// (eth0 02:fc:00:00:00:01, 192.0.2.2/24, gateway 192.0.2.1 at
// 02:fc:00:00:00:05, resolver 10.255.255.53).
//
// The sender uses checksum offload, so in the captured TCP and UDP segments the
// checksum field held only the pseudo-header partial sum (CHECKSUM_PARTIAL);
// the fixtures carry the final checksum the NIC writes, and the captured
// partial value is kept in a constant next to each fixture (it must equal our
// PseudoHeaderChecksum). IP and ICMP checksums are as captured.

// mustHex decodes hex with any whitespace in it.
func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// frameICMPEcho: echo request 192.0.2.2 -> 192.0.2.1, Linux ping layout
// (ident 0x0a5c, seq 1, 16-byte timeval then 0x10..0x37), IP header by Linux
// (DF, TTL 64).
var frameICMPEcho = mustHex("" +
	"02fc 0000 0005 02fc 0000 0001 0800 4500" +
	"0054 936a 4000 4001 233b c000 0202 c000" +
	"0201 0800 a832 0a5c 0001 2532 016b 0000" +
	"0000 5a00 0600 0000 0000 1011 1213 1415" +
	"1617 1819 1a1b 1c1d 1e1f 2021 2223 2425" +
	"2627 2829 2a2b 2c2d 2e2f 3031 3233 3435" +
	"3637")

// frameICMPUnreach: destination unreachable (code 3) from 21.4.0.29 about an
// echo request sent to 10.255.255.53; TOS 0xc0, TTL 63, quotes the whole
// original datagram.
var frameICMPUnreach = mustHex("" +
	"02fc 0000 0001 02fc 0000 0005 0800 45c0" +
	"0070 ec24 0000 3f01 b785 1504 001d c000" +
	"0202 0303 fcfc 0000 0000 4500 0054 e86a" +
	"4000 3e01 8807 c000 0202 0aff ff35 0800" +
	"8330 0a5c 0001 2532 016b 0000 0000 7f02" +
	"0600 0000 0000 1011 1213 1415 1617 1819" +
	"1a1b 1c1d 1e1f 2021 2223 2425 2627 2829" +
	"2a2b 2c2d 2e2f 3031 3233 3435 3637")

// frameDNSQuery: DNS query "example.com IN A" 192.0.2.2:42080 -> 10.255.255.53:53.
var frameDNSQuery = mustHex("" +
	"02fc 0000 0005 02fc 0000 0001 0800 4500" +
	"0039 5496 4000 4011 19e7 c000 0202 0aff" +
	"ff35 a460 0035 0025 a53e 1a2b 0100 0001" +
	"0000 0000 0000 0765 7861 6d70 6c65 0363" +
	"6f6d 0000 0100 01")

// dnsQueryPartialChecksum is the UDP checksum field as captured (offload).
const dnsQueryPartialChecksum = 0xcc6d

// frameDNSResponse: the REFUSED answer to frameDNSQuery (TTL 63).
var frameDNSResponse = mustHex("" +
	"02fc 0000 0001 02fc 0000 0005 0800 4500" +
	"0039 7a1d 4000 3f11 f55f 0aff ff35 c000" +
	"0202 0035 a460 0025 24bb 1a2b 8183 0001" +
	"0000 0000 0000 0765 7861 6d70 6c65 0363" +
	"6f6d 0000 0100 01")

// frameTCPSyn: Linux SYN 192.0.2.2:48328 -> 203.0.113.80:443 with
// MSS 1360, SACK permitted, timestamps, NOP, window scale 10.
var frameTCPSyn = mustHex("" +
	"02fc 0000 0005 02fc 0000 0001 0800 4500" +
	"003c 997a 4000 4006 a2ee c000 0202 cb00" +
	"7150 bcc8 01bb 0020 eff1 0000 0000 a002" +
	"ff00 ac43 0000 0204 0550 0402 080a 97d9" +
	"585a 0000 0000 0103 030a")

// tcpSynPartialChecksum is the TCP checksum field as captured (offload).
const tcpSynPartialChecksum = 0xfe81

// frameTCPSynAck: the SYN-ACK answering frameTCPSyn (MSS 1460, IP ID 0, TTL 63).
var frameTCPSynAck = mustHex("" +
	"02fc 0000 0001 02fc 0000 0005 0800 4500" +
	"003c 0000 4000 3f06 3d69 cb00 7150 c000" +
	"0202 01bb bcc8 faf1 bbc1 0020 eff2 a012" +
	"fe88 3650 0000 0204 05b4 0402 080a 6124" +
	"5e1e 97d9 585a 0103 030a")

// allFrames lists every captured frame.
var allFrames = [][]byte{
	frameICMPEcho, frameICMPUnreach, frameDNSQuery, frameDNSResponse,
	frameTCPSyn, frameTCPSynAck,
}

// ipOf returns the IPv4 packet inside an Ethernet fixture (a copy).
func ipOf(frame []byte) IPv4 {
	return IPv4(append([]byte(nil), frame[EthernetHeaderSize:]...))
}

// l4Of returns the transport bytes inside an Ethernet fixture (a copy) and
// the IPv4 header carrying them.
func l4Of(frame []byte) (IPv4, []byte) {
	ip := ipOf(frame)
	if err := ip.Check(); err != nil {
		panic(err)
	}
	return ip, ip.Payload()
}

// filled returns n bytes of 0xa5.
func filled(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xa5
	}
	return b
}

// firstWritten returns the first index in b[from:] that is not 0xa5, or -1.
func firstWritten(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != 0xa5 {
			return i
		}
	}
	return -1
}
