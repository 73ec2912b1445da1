package wire

// IPv6 fixtures are Ethernet frames captured on the host end of a veth pair
// between two network namespaces (Linux 6.18): the host ps6h0
// 02:06:00:00:00:01 (fe80::6:ff:fe00:1, and 2001:db8:1:0:6:ff:fe00:1 by
// SLAAC) and the router ps6r0 02:06:00:00:00:05 (fe80::6:ff:fe00:5,
// 2001:db8:1::1/64, forwarding on, radvd 2.19 advertising 2001:db8:1::/64),
// the router's second veth leading to 2001:db8:3::/64 with MTU 1280. The
// capture is an AF_PACKET/ETH_P_ALL socket in the host namespace, started
// before the interface came up; the traffic came from bringing the interface
// up, radvd, ping -6 (iputils) and a Python UDP socket with sticky extension
// header options; see each fixture. Frames are as captured, checksums
// included: ICMPv6 checksums are computed by the kernel in software, and the
// two UDP datagrams carry full checksums too (the unfragmented one verifies
// as captured, the fragmented one after reassembly).

// frame6MLDv2Report: MLDv2 report (type 143) fe80::6:ff:fe00:1 -> ff02::16,
// sent by Linux when the interface came up: one record (change to exclude, ff02::1:ff00:1). Its
// Hop-by-Hop header holds a Router Alert option (value 0, MLD) and a PadN.
var frame6MLDv2Report = mustHex("" +
	"3333 0000 0016 0206 0000 0001 86dd 6000" +
	"0000 0024 0001 fe80 0000 0000 0000 0006" +
	"00ff fe00 0001 ff02 0000 0000 0000 0000" +
	"0000 0000 0016 3a00 0502 0000 0100 8f00" +
	"7201 0000 0001 0400 0000 ff02 0000 0000" +
	"0000 0000 0001 ff00 0001")

// frame6DADNS: duplicate address detection: neighbor solicitation :: ->
// ff02::1:ff00:1 for the tentative fe80::6:ff:fe00:1, no source link-layer
// address option but a Nonce option (type 14, RFC 7527).
var frame6DADNS = mustHex("" +
	"3333 ff00 0001 0206 0000 0001 86dd 6000" +
	"0000 0020 3aff 0000 0000 0000 0000 0000" +
	"0000 0000 0000 ff02 0000 0000 0000 0000" +
	"0001 ff00 0001 8700 2a89 0000 0000 fe80" +
	"0000 0000 0000 0006 00ff fe00 0001 0e01" +
	"453b 80d9 7e78")

// frame6RS: router solicitation fe80::6:ff:fe00:1 -> ff02::2 with a source
// link-layer address option (02:06:00:00:00:01).
var frame6RS = mustHex("" +
	"3333 0000 0002 0206 0000 0001 86dd 6000" +
	"0000 0010 3aff fe80 0000 0000 0000 0006" +
	"00ff fe00 0001 ff02 0000 0000 0000 0000" +
	"0000 0000 0002 8500 7b20 0000 0000 0101" +
	"0206 0000 0001")

// frame6RA: router advertisement sent by radvd 2.19 from fe80::6:ff:fe00:5 ->
// ff02::1: cur hop limit 64, O flag, router lifetime 1800 s, reachable time
// 30000 ms, retrans timer 1000 ms; options prefix information
// 2001:db8:1::/64 (L, A, valid 86400 s, preferred 14400 s), MTU 1500, RDNSS
// (lifetime 600 s, 2001:db8:1::53 and ::54) and source link-layer address
// 02:06:00:00:00:05. Linux configured 2001:db8:1:0:6:ff:fe00:1/64 and a
// default route from it.
var frame6RA = mustHex("" +
	"3333 0000 0001 0206 0000 0005 86dd 6001" +
	"206e 0068 3aff fe80 0000 0000 0000 0006" +
	"00ff fe00 0005 ff02 0000 0000 0000 0000" +
	"0000 0000 0001 8600 3bcb 4040 0708 0000" +
	"7530 0000 03e8 0304 40c0 0001 5180 0000" +
	"3840 0000 0000 2001 0db8 0001 0000 0000" +
	"0000 0000 0000 1905 0000 0000 0258 2001" +
	"0db8 0001 0000 0000 0000 0000 0053 2001" +
	"0db8 0001 0000 0000 0000 0000 0054 0501" +
	"0000 0000 05dc 0101 0206 0000 0005")

// frame6NS: address resolution: neighbor solicitation
// 2001:db8:1:0:6:ff:fe00:1 -> ff02::1:ff00:1 for 2001:db8:1::1, with a source
// link-layer address option (on the first ping).
var frame6NS = mustHex("" +
	"3333 ff00 0001 0206 0000 0001 86dd 6000" +
	"0000 0020 3aff 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 ff02 0000 0000 0000 0000" +
	"0001 ff00 0001 8700 1d1b 0000 0000 2001" +
	"0db8 0001 0000 0000 0000 0000 0001 0101" +
	"0206 0000 0001")

// frame6NA: the solicited neighbor advertisement answering frame6NS from
// 2001:db8:1::1: R, S and O flags, target link-layer address
// 02:06:00:00:00:05.
var frame6NA = mustHex("" +
	"0206 0000 0001 0206 0000 0005 86dd 6000" +
	"0000 0020 3aff 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 8800 0b61 e000 0000 2001" +
	"0db8 0001 0000 0000 0000 0000 0001 0201" +
	"0206 0000 0005")

// frame6NAProbeReply: neighbor advertisement 2001:db8:1:0:6:ff:fe00:1 ->
// fe80::6:ff:fe00:5 answering the router's unicast reachability probe: S flag
// only, no option.
var frame6NAProbeReply = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 6000" +
	"0000 0018 3aff 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 fe80 0000 0000 0000 0006" +
	"00ff fe00 0005 8800 e09e 4000 0000 2001" +
	"0db8 0001 0000 0006 00ff fe00 0001")

// frame6EchoRequest: echo request 2001:db8:1:0:6:ff:fe00:1 -> 2001:db8:1::1
// (ping -6, ident 0x13ef, seq 1, 56 data bytes, flow label 0xf3b8e).
var frame6EchoRequest = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 600f" +
	"3b8e 0040 3a40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 8000 6f02 13ef 0001 1438" +
	"016b 0000 0000 c7a0 0600 0000 0000 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637")

// frame6EchoReply: the echo reply to frame6EchoRequest.
var frame6EchoReply = mustHex("" +
	"0206 0000 0001 0206 0000 0005 86dd 6008" +
	"c69d 0040 3a40 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 8100 6e02 13ef 0001 1438" +
	"016b 0000 0000 c7a0 0600 0000 0000 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637")

// frame6NoRoute: destination unreachable, code 0 (no route), from
// 2001:db8:1::1 about an echo request to 2001:db8:99::1, quoting it whole.
var frame6NoRoute = mustHex("" +
	"0206 0000 0001 0206 0000 0005 86dd 6008" +
	"04a8 0070 3a40 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 0100 0f24 0000 0000 6003" +
	"faab 0040 3a40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0099 0000 0000" +
	"0000 0000 0001 8000 e7b1 146a 0001 1538" +
	"016b 0000 0000 4cde 0600 0000 0000 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637")

// frame6TimeExceeded: time exceeded, code 0 (hop limit), from 2001:db8:1::1
// about an echo request to 2001:db8:3::2 sent with hop limit 1 (ping -t 1).
var frame6TimeExceeded = mustHex("" +
	"0206 0000 0001 0206 0000 0005 86dd 6005" +
	"8854 0070 3a40 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 0300 7776 0000 0000 600c" +
	"908f 0040 3a01 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0003 0000 0000" +
	"0000 0000 0002 8000 7243 14cb 0001 1638" +
	"016b 0000 0000 c080 0700 0000 0000 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637")

// frame6PacketTooBig: packet too big, MTU 1280, from 2001:db8:1::1 about a
// 1448-byte echo request to 2001:db8:3::2 (ping -s 1400 -M do) that the
// router could not forward onto its 1280-byte link; the quote is cut so that
// the message fills 1280 bytes.
var frame6PacketTooBig = mustHex("" +
	"0206 0000 0001 0206 0000 0005 86dd 600f" +
	"4bbd 04d8 3a40 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 0200 4814 0000 0500 600c" +
	"908f 0580 3a40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0003 0000 0000" +
	"0000 0000 0002 8000 a146 152b 0001 1738" +
	"016b 0000 0000 de93 0700 0000 0000 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637 3839 3a3b 3c3d 3e3f 4041" +
	"4243 4445 4647 4849 4a4b 4c4d 4e4f 5051" +
	"5253 5455 5657 5859 5a5b 5c5d 5e5f 6061" +
	"6263 6465 6667 6869 6a6b 6c6d 6e6f 7071" +
	"7273 7475 7677 7879 7a7b 7c7d 7e7f 8081" +
	"8283 8485 8687 8889 8a8b 8c8d 8e8f 9091" +
	"9293 9495 9697 9899 9a9b 9c9d 9e9f a0a1" +
	"a2a3 a4a5 a6a7 a8a9 aaab acad aeaf b0b1" +
	"b2b3 b4b5 b6b7 b8b9 babb bcbd bebf c0c1" +
	"c2c3 c4c5 c6c7 c8c9 cacb cccd cecf d0d1" +
	"d2d3 d4d5 d6d7 d8d9 dadb dcdd dedf e0e1" +
	"e2e3 e4e5 e6e7 e8e9 eaeb eced eeef f0f1" +
	"f2f3 f4f5 f6f7 f8f9 fafb fcfd feff 0001" +
	"0203 0405 0607 0809 0a0b 0c0d 0e0f 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637 3839 3a3b 3c3d 3e3f 4041" +
	"4243 4445 4647 4849 4a4b 4c4d 4e4f 5051" +
	"5253 5455 5657 5859 5a5b 5c5d 5e5f 6061" +
	"6263 6465 6667 6869 6a6b 6c6d 6e6f 7071" +
	"7273 7475 7677 7879 7a7b 7c7d 7e7f 8081" +
	"8283 8485 8687 8889 8a8b 8c8d 8e8f 9091" +
	"9293 9495 9697 9899 9a9b 9c9d 9e9f a0a1" +
	"a2a3 a4a5 a6a7 a8a9 aaab acad aeaf b0b1" +
	"b2b3 b4b5 b6b7 b8b9 babb bcbd bebf c0c1" +
	"c2c3 c4c5 c6c7 c8c9 cacb cccd cecf d0d1" +
	"d2d3 d4d5 d6d7 d8d9 dadb dcdd dedf e0e1" +
	"e2e3 e4e5 e6e7 e8e9 eaeb eced eeef f0f1" +
	"f2f3 f4f5 f6f7 f8f9 fafb fcfd feff 0001" +
	"0203 0405 0607 0809 0a0b 0c0d 0e0f 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637 3839 3a3b 3c3d 3e3f 4041" +
	"4243 4445 4647 4849 4a4b 4c4d 4e4f 5051" +
	"5253 5455 5657 5859 5a5b 5c5d 5e5f 6061" +
	"6263 6465 6667 6869 6a6b 6c6d 6e6f 7071" +
	"7273 7475 7677 7879 7a7b 7c7d 7e7f 8081" +
	"8283 8485 8687 8889 8a8b 8c8d 8e8f 9091" +
	"9293 9495 9697 9899 9a9b 9c9d 9e9f a0a1" +
	"a2a3 a4a5 a6a7 a8a9 aaab acad aeaf b0b1" +
	"b2b3 b4b5 b6b7 b8b9 babb bcbd bebf c0c1" +
	"c2c3 c4c5 c6c7 c8c9 cacb cccd cecf d0d1" +
	"d2d3 d4d5 d6d7 d8d9 dadb dcdd dedf e0e1" +
	"e2e3 e4e5 e6e7 e8e9 eaeb eced eeef f0f1" +
	"f2f3 f4f5 f6f7 f8f9 fafb fcfd feff 0001" +
	"0203 0405 0607 0809 0a0b 0c0d 0e0f 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637 3839 3a3b 3c3d 3e3f 4041" +
	"4243 4445 4647 4849 4a4b 4c4d 4e4f 5051" +
	"5253 5455 5657 5859 5a5b 5c5d 5e5f 6061" +
	"6263 6465 6667 6869 6a6b 6c6d 6e6f 7071" +
	"7273 7475 7677 7879 7a7b 7c7d 7e7f 8081" +
	"8283 8485 8687 8889 8a8b 8c8d 8e8f 9091" +
	"9293 9495 9697 9899 9a9b 9c9d 9e9f a0a1" +
	"a2a3 a4a5 a6a7 a8a9 aaab acad aeaf b0b1" +
	"b2b3 b4b5 b6b7 b8b9 babb bcbd bebf c0c1" +
	"c2c3 c4c5 c6c7 c8c9 cacb cccd cecf d0d1" +
	"d2d3 d4d5 d6d7 d8d9 dadb dcdd dedf e0e1" +
	"e2e3 e4e5 e6e7 e8e9 eaeb eced eeef f0f1" +
	"f2f3 f4f5 f6f7 f8f9 fafb fcfd feff 0001" +
	"0203 0405 0607 0809 0a0b 0c0d 0e0f 1011" +
	"1213 1415 1617 1819 1a1b 1c1d 1e1f 2021" +
	"2223 2425 2627 2829 2a2b 2c2d 2e2f 3031" +
	"3233 3435 3637 3839 3a3b 3c3d 3e3f 4041" +
	"4243 4445 4647 4849 4a4b 4c4d 4e4f 5051" +
	"5253 5455 5657 5859 5a5b 5c5d 5e5f 6061" +
	"6263 6465 6667 6869 6a6b 6c6d 6e6f 7071" +
	"7273 7475 7677 7879 7a7b 7c7d 7e7f 8081" +
	"8283 8485 8687 8889 8a8b 8c8d 8e8f 9091" +
	"9293 9495 9697 9899 9a9b 9c9d 9e9f")

// frame6UDPDstOpts: a 16-byte UDP datagram to port 9 of 2001:db8:1::1
// with a Destination Options header (sticky IPV6_DSTOPTS: experimental option
// 0x1e, action skip, data "pp", then two Pad1).
var frame6UDPDstOpts = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 600f" +
	"cfdc 0020 3c40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 1100 1e02 7070 0000 ae15" +
	"0009 0018 3360 7878 7878 7878 7878 7878" +
	"7878 7878 7878")

// frame6PortUnreach: destination unreachable, code 4 (port unreachable),
// from 2001:db8:1::1, quoting frame6UDPDstOpts.
var frame6PortUnreach = mustHex("" +
	"0206 0000 0001 0206 0000 0005 86dd 600d" +
	"ce91 0050 3a40 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 0104 985f 0000 0000 600f" +
	"cfdc 0020 3c40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 1100 1e02 7070 0000 ae15" +
	"0009 0018 3360 7878 7878 7878 7878 7878" +
	"7878 7878 7878")

// frame6FragEcho1: first fragment (offset 0, M, ID 0x09635332) of a
// 1308-byte echo request (ping -s 1300) over a 1280-byte link MTU.
var frame6FragEcho1 = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 600f" +
	"3b8e 04d8 2c40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 3a00 0001 0963 5332 8000" +
	"06a1 1681 0001 1a38 016b 0000 0000 fb03" +
	"0900 0000 0000 1011 1213 1415 1617 1819" +
	"1a1b 1c1d 1e1f 2021 2223 2425 2627 2829" +
	"2a2b 2c2d 2e2f 3031 3233 3435 3637 3839" +
	"3a3b 3c3d 3e3f 4041 4243 4445 4647 4849" +
	"4a4b 4c4d 4e4f 5051 5253 5455 5657 5859" +
	"5a5b 5c5d 5e5f 6061 6263 6465 6667 6869" +
	"6a6b 6c6d 6e6f 7071 7273 7475 7677 7879" +
	"7a7b 7c7d 7e7f 8081 8283 8485 8687 8889" +
	"8a8b 8c8d 8e8f 9091 9293 9495 9697 9899" +
	"9a9b 9c9d 9e9f a0a1 a2a3 a4a5 a6a7 a8a9" +
	"aaab acad aeaf b0b1 b2b3 b4b5 b6b7 b8b9" +
	"babb bcbd bebf c0c1 c2c3 c4c5 c6c7 c8c9" +
	"cacb cccd cecf d0d1 d2d3 d4d5 d6d7 d8d9" +
	"dadb dcdd dedf e0e1 e2e3 e4e5 e6e7 e8e9" +
	"eaeb eced eeef f0f1 f2f3 f4f5 f6f7 f8f9" +
	"fafb fcfd feff 0001 0203 0405 0607 0809" +
	"0a0b 0c0d 0e0f 1011 1213 1415 1617 1819" +
	"1a1b 1c1d 1e1f 2021 2223 2425 2627 2829" +
	"2a2b 2c2d 2e2f 3031 3233 3435 3637 3839" +
	"3a3b 3c3d 3e3f 4041 4243 4445 4647 4849" +
	"4a4b 4c4d 4e4f 5051 5253 5455 5657 5859" +
	"5a5b 5c5d 5e5f 6061 6263 6465 6667 6869" +
	"6a6b 6c6d 6e6f 7071 7273 7475 7677 7879" +
	"7a7b 7c7d 7e7f 8081 8283 8485 8687 8889" +
	"8a8b 8c8d 8e8f 9091 9293 9495 9697 9899" +
	"9a9b 9c9d 9e9f a0a1 a2a3 a4a5 a6a7 a8a9" +
	"aaab acad aeaf b0b1 b2b3 b4b5 b6b7 b8b9" +
	"babb bcbd bebf c0c1 c2c3 c4c5 c6c7 c8c9" +
	"cacb cccd cecf d0d1 d2d3 d4d5 d6d7 d8d9" +
	"dadb dcdd dedf e0e1 e2e3 e4e5 e6e7 e8e9" +
	"eaeb eced eeef f0f1 f2f3 f4f5 f6f7 f8f9" +
	"fafb fcfd feff 0001 0203 0405 0607 0809" +
	"0a0b 0c0d 0e0f 1011 1213 1415 1617 1819" +
	"1a1b 1c1d 1e1f 2021 2223 2425 2627 2829" +
	"2a2b 2c2d 2e2f 3031 3233 3435 3637 3839" +
	"3a3b 3c3d 3e3f 4041 4243 4445 4647 4849" +
	"4a4b 4c4d 4e4f 5051 5253 5455 5657 5859" +
	"5a5b 5c5d 5e5f 6061 6263 6465 6667 6869" +
	"6a6b 6c6d 6e6f 7071 7273 7475 7677 7879" +
	"7a7b 7c7d 7e7f 8081 8283 8485 8687 8889" +
	"8a8b 8c8d 8e8f 9091 9293 9495 9697 9899" +
	"9a9b 9c9d 9e9f a0a1 a2a3 a4a5 a6a7 a8a9" +
	"aaab acad aeaf b0b1 b2b3 b4b5 b6b7 b8b9" +
	"babb bcbd bebf c0c1 c2c3 c4c5 c6c7 c8c9" +
	"cacb cccd cecf d0d1 d2d3 d4d5 d6d7 d8d9" +
	"dadb dcdd dedf e0e1 e2e3 e4e5 e6e7 e8e9" +
	"eaeb eced eeef f0f1 f2f3 f4f5 f6f7 f8f9" +
	"fafb fcfd feff 0001 0203 0405 0607 0809" +
	"0a0b 0c0d 0e0f 1011 1213 1415 1617 1819" +
	"1a1b 1c1d 1e1f 2021 2223 2425 2627 2829" +
	"2a2b 2c2d 2e2f 3031 3233 3435 3637 3839" +
	"3a3b 3c3d 3e3f 4041 4243 4445 4647 4849" +
	"4a4b 4c4d 4e4f 5051 5253 5455 5657 5859" +
	"5a5b 5c5d 5e5f 6061 6263 6465 6667 6869" +
	"6a6b 6c6d 6e6f 7071 7273 7475 7677 7879" +
	"7a7b 7c7d 7e7f 8081 8283 8485 8687 8889" +
	"8a8b 8c8d 8e8f 9091 9293 9495 9697 9899" +
	"9a9b 9c9d 9e9f a0a1 a2a3 a4a5 a6a7 a8a9" +
	"aaab acad aeaf b0b1 b2b3 b4b5 b6b7 b8b9" +
	"babb bcbd bebf c0c1 c2c3 c4c5 c6c7 c8c9" +
	"cacb cccd cecf d0d1 d2d3 d4d5 d6d7 d8d9" +
	"dadb dcdd dedf e0e1 e2e3 e4e5 e6e7 e8e9" +
	"eaeb eced eeef f0f1 f2f3 f4f5 f6f7 f8f9" +
	"fafb fcfd feff 0001 0203 0405 0607 0809" +
	"0a0b 0c0d 0e0f 1011 1213 1415 1617 1819" +
	"1a1b 1c1d 1e1f 2021 2223 2425 2627 2829" +
	"2a2b 2c2d 2e2f 3031 3233 3435 3637 3839" +
	"3a3b 3c3d 3e3f 4041 4243 4445 4647 4849" +
	"4a4b 4c4d 4e4f 5051 5253 5455 5657 5859" +
	"5a5b 5c5d 5e5f 6061 6263 6465 6667 6869" +
	"6a6b 6c6d 6e6f 7071 7273 7475 7677 7879" +
	"7a7b 7c7d 7e7f 8081 8283 8485 8687 8889" +
	"8a8b 8c8d 8e8f 9091 9293 9495 9697 9899" +
	"9a9b 9c9d 9e9f a0a1 a2a3 a4a5 a6a7 a8a9" +
	"aaab acad aeaf b0b1 b2b3 b4b5 b6b7 b8b9" +
	"babb bcbd bebf c0c1 c2c3 c4c5 c6c7")

// frame6FragEcho2: the last fragment (offset 1232) of the same request.
var frame6FragEcho2 = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 600f" +
	"3b8e 0054 2c40 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 3a00 04d0 0963 5332 c8c9" +
	"cacb cccd cecf d0d1 d2d3 d4d5 d6d7 d8d9" +
	"dadb dcdd dedf e0e1 e2e3 e4e5 e6e7 e8e9" +
	"eaeb eced eeef f0f1 f2f3 f4f5 f6f7 f8f9" +
	"fafb fcfd feff 0001 0203 0405 0607 0809" +
	"0a0b 0c0d 0e0f 1011 1213")

// frame6FragUDP1: first fragment of a 1300-byte UDP datagram sent with
// sticky IPV6_HOPOPTS (PadN) and IPV6_DSTOPTS: Hop-by-Hop, Destination
// Options, Fragment (ID 0x567ddd1f), UDP. Linux keeps the Destination
// Options header in the unfragmentable part (it precedes the Fragment
// header).
var frame6FragUDP1 = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 6004" +
	"d3fa 04d8 0040 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 3c00 0104 0000 0000 2c00" +
	"1e02 7070 0000 1100 0001 567d dd1f 94c1" +
	"0009 051c 248e 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878")

// frame6FragUDP2: the last fragment (offset 1216) of the same datagram.
var frame6FragUDP2 = mustHex("" +
	"0206 0000 0005 0206 0000 0001 86dd 6004" +
	"d3fa 0074 0040 2001 0db8 0001 0000 0006" +
	"00ff fe00 0001 2001 0db8 0001 0000 0000" +
	"0000 0000 0001 3c00 0104 0000 0000 2c00" +
	"1e02 7070 0000 1100 04c0 567d dd1f 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878 7878 7878 7878" +
	"7878 7878 7878 7878 7878")

// allFrames6 lists every captured IPv6 frame.
var allFrames6 = [][]byte{
	frame6MLDv2Report, frame6DADNS, frame6RS, frame6RA, frame6NS, frame6NA,
	frame6NAProbeReply, frame6EchoRequest, frame6EchoReply, frame6NoRoute,
	frame6TimeExceeded, frame6PacketTooBig, frame6UDPDstOpts, frame6PortUnreach,
	frame6FragEcho1, frame6FragEcho2, frame6FragUDP1, frame6FragUDP2,
}

// ip6Of returns the IPv6 packet inside an Ethernet fixture (a copy).
func ip6Of(frame []byte) IPv6 {
	return IPv6(append([]byte(nil), frame[EthernetHeaderSize:]...))
}

// icmp6Of returns the IPv6 packet of an Ethernet fixture whose upper layer
// is ICMPv6 (after any extension headers) and the ICMPv6 message in it.
func icmp6Of(frame []byte) (IPv6, ICMPv6) {
	ip := ip6Of(frame)
	if err := ip.Check(); err != nil {
		panic(err)
	}
	x, err := ip.WalkExtensions(8)
	if err != nil || x.Protocol != ProtocolICMPv6 {
		panic("not ICMPv6")
	}
	return ip, ICMPv6(ip[x.ProtocolOffset : IPv6HeaderSize+int(ip.PayloadLength())])
}

// icmp6Pseudo returns the pseudo-header sum of an ICMPv6 message in ip.
func icmp6Pseudo(ip IPv6, m ICMPv6) uint16 {
	return IPv6PseudoChecksum(ip, ProtocolICMPv6, uint32(len(m)))
}
