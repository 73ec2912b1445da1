#!/usr/bin/python3
"""A bounded burst of malformed IPv4 and IPv6 packets (e2e TestScapyMalformed).

Run with Debian's /usr/bin/python3 (python3-scapy) inside host A's network
namespace:

    malformed.py DEV COUNT SECONDS [SRC_MAC DST_MAC]

Writes COUNT packets, cycling through the kinds below, over about SECONDS
seconds, on DEV through a packet socket (raw bytes as built: a raw IP
socket would have the kernel fix the lengths and the checksum or refuse
the packet). With the MACs DEV is Ethernet (a veth) and each packet gets an
Ethernet header; without them DEV is a TUN device and takes bare IP.
Prints one line per kind ("kind NAME LEN") and "sent N of M" at the end.
"""
import socket
import sys
import time

from scapy.all import (ICMP, IP, TCP, UDP, IPOption, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, ICMPv6EchoRequest, Raw, HBHOptUnknown,
                       Ether, fragment)
from scapy.utils import checksum

A4, B4, R4 = "10.10.1.2", "10.10.2.2", "10.10.1.1"
A6, B6, R6 = "fd00:10:1::2", "fd00:10:2::2", "fd00:10:1::1"


def with_options(opts, payload):
    """An IPv4 header A4 -> B4 carrying the raw option bytes opts (a
    multiple of 4, scapy would refuse to build bad ones), a valid checksum."""
    b = bytearray(bytes(IP(src=A4, dst=B4, options=[IPOption(b"\x01" * len(opts))]) / payload))
    b[20:20 + len(opts)] = opts
    b[10:12] = b"\x00\x00"
    b[10:12] = checksum(bytes(b[:20 + len(opts)])).to_bytes(2, "big")
    return bytes(b)


def patched(pkt, off, val):
    b = bytearray(bytes(pkt))
    b[off] = val
    return bytes(b)


def kinds():
    ping = IP(src=A4, dst=B4) / ICMP(id=7) / Raw(b"x" * 32)
    k = {
        "v4_ihl_below_5": patched(ping, 0, 0x43),
        "v4_ihl_beyond_packet": patched(IP(src=A4, dst=B4) / Raw(b"y" * 8), 0, 0x4F),
        "v4_total_length_beyond_packet": bytes(IP(src=A4, dst=B4, len=1000) / ICMP() / Raw(b"z" * 8)),
        "v4_total_length_below_header": bytes(IP(src=A4, dst=B4, len=12) / ICMP()),
        "v4_bad_version": patched(ping, 0, 0x55),
        "v4_bad_checksum": bytes(IP(src=A4, dst=B4, chksum=0x1234) / ICMP()),
        "v4_truncated_header": bytes(ping)[:12],
        "v4_truncated_tcp": bytes(IP(src=A4, dst=B4, proto=6) / Raw(b"\x1f\x90\x00")),
        "v4_bad_option_length": with_options(b"\x44\x00\x00\x00", ICMP()),
        "v4_option_beyond_header": with_options(b"\x07\x27\x04\x00", ICMP()),
        "v4_source_route": with_options(b"\x83\x07\x04\x0a\x0a\x02\x02\x00", ICMP()),
        "v4_ttl_1": bytes(IP(src=A4, dst=B4, ttl=1) / UDP(sport=1, dport=33434)),
        "v4_martian_source": bytes(IP(src="127.0.0.1", dst=B4) / ICMP()),
        "v4_one_byte": b"\x45",
    }
    # Overlapping fragments, to the router itself (it reassembles) and
    # across it: the second fragment starts inside the first.
    for name, dst in (("v4_overlap_to_router", R4), ("v4_overlap_across", B4)):
        big = IP(src=A4, dst=dst, id=0x7777) / ICMP(id=9) / Raw(b"o" * 200)
        f1, f2 = fragment(big, fragsize=96)[:2]
        f2.frag = 4  # 32 bytes: inside f1's 96
        k[name + "_1"] = bytes(f1)
        k[name + "_2"] = bytes(f2)
    # A fragment whose offset + length passes 65535.
    k["v4_fragment_past_64k"] = bytes(IP(src=A4, dst=R4, id=0x7778, flags=0, frag=8190) / Raw(b"p" * 64))

    echo6 = IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=7, data=b"x" * 32)
    k.update({
        "v6_payload_length_beyond_packet": bytes(IPv6(src=A6, dst=B6, plen=900) / ICMPv6EchoRequest()),
        "v6_truncated_header": bytes(echo6)[:20],
        "v6_bad_version": patched(echo6, 0, 0x70),
        "v6_hbh_beyond_packet": bytes(echo6)[:40] and patched(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(), 41, 20),
        "v6_hbh_unknown_option_discard": bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x9E, optdata=b"\x00\x00\x00\x00")]) / ICMPv6EchoRequest()),
        "v6_routing_type_0": bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrRouting(type=0, segleft=1, addresses=["fd00:10:2::9"]) / ICMPv6EchoRequest()),
        "v6_truncated_fragment_header": bytes(IPv6(src=A6, dst=R6) / IPv6ExtHdrFragment(id=5, m=1) / ICMPv6EchoRequest())[:44],
        "v6_hop_limit_1": bytes(IPv6(src=A6, dst=B6, hlim=1) / UDP(sport=1, dport=33434)),
        "v6_ext_header_chain": bytes(IPv6(src=A6, dst=B6) / (IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()) / ICMPv6EchoRequest()),
        "v6_hbh_not_first": bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest()),
        "v6_truncated_icmp_to_router": bytes(IPv6(src=A6, dst=R6) / ICMPv6EchoRequest())[:42],
    })
    payload = bytes(ICMPv6EchoRequest(id=9, data=b"o" * 200))
    for name, dst in (("v6_overlap_to_router", R6), ("v6_overlap_across", B6)):
        f1 = IPv6(src=A6, dst=dst, nh=44) / IPv6ExtHdrFragment(nh=58, id=0x7777, offset=0, m=1) / Raw(payload[:96])
        f2 = IPv6(src=A6, dst=dst, nh=44) / IPv6ExtHdrFragment(nh=58, id=0x7777, offset=4, m=0) / Raw(payload[32:])
        k[name + "_1"] = bytes(f1)
        k[name + "_2"] = bytes(f2)
    return k


def main():
    dev, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    eth = None
    if len(sys.argv) == 6:
        eth = (sys.argv[4], sys.argv[5])
    ks = kinds()
    frames = []
    for name, b in ks.items():
        print("kind", name, len(b))
        if eth:
            v6 = len(b) > 0 and b[0] >> 4 == 6
            b = bytes(Ether(src=eth[0], dst=eth[1], type=0x86DD if v6 else 0x0800)) + b
        frames.append(b)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((dev, 0))
    sent, errors = 0, 0
    start = time.monotonic()
    per = max(1, count // 50)  # 50 slices over the time given
    while sent < count:
        for _ in range(per):
            if sent == count:
                break
            b = frames[sent % len(frames)]
            try:
                s.send(b)
            except OSError as e:
                if errors == 0:
                    print("send:", e)
                errors += 1
            sent += 1
        target = start + seconds * sent / count
        time.sleep(max(0.0, target - time.monotonic()))
    print("sent", sent - errors, "of", sent, "in %.2f s" % (time.monotonic() - start))


if __name__ == "__main__":
    main()
