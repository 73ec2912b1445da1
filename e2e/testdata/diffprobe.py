#!/usr/bin/python3
"""The probe agents of the differential test (e2e TestDifferentialFilter).

Run with Debian's /usr/bin/python3 (python3-scapy) inside a host's network
namespace, one agent per host, driven by JSON lines on stdin (one answer
line on stdout for each):

    diffprobe.py a DEV [SRC_MAC DST_MAC]   host A: sends probes, reads answers
    diffprobe.py b DEV [eth]               host B: records what arrives

With the MACs (A) or "eth" (B) DEV is Ethernet (a veth of lab.sh kernel
mode); without, DEV is a TUN device (bare IP). Both read DEV through a
packet socket, so nothing the kernel's sockets do is in the way.

Every probe carries a key: the IPv4 identification or the IPv6 flow label,
which a router leaves as they are and an ICMP error quotes. A's answers are
keyed by it (a TCP reset by the probe's port pair), B's records too.

A: {"cmd": "probe", "wait": S, "probes": [P...]} sends each probe P
   ({key, fam 4|6, proto tcp|udp|icmp|icmpv6, src, dst, sport, dport,
   flags, ttl, len, mss, itype, icode, nodata, frag, ext: IPv6 extension
   headers, "hbh", "dst" and "dstcut" (one whose length runs past the
   packet), sum: "bad" or "zero" transport checksum})
   3 ms apart, listens S seconds more,
   answers {"answers": {key: ANSWER}}, ANSWER one of "rst ack=seq+N from
   ADDR" (a reset acking the probe), "rst seq=ack from ADDR" (its sequence
   number the probe's ack), "icmp T/C from ADDR len N", "icmp6 T/C from
   ADDR len N" (N: the error's IP length, which shows how much it quotes;
   " to ADDR" after the source when the error is not addressed to the
   quoted packet's source),
   "echo-reply from ADDR" (a ping of the router), each with " ttl N" (or
   " hl N") as A received it.
B: {"cmd": "start"} forgets what it saw, answers {"ok": true};
   {"cmd": "stop"} answers {"seen": {key: {"ttl": N, "mss": N|null, "len": N,
   "n": N, "frags": [offset...], "src", "dst", "sport", "dport"}}} (the
   offsets of the fragments that came; the first packet's addresses and
   ports — an echo request's id as sport — as B got them).
"""
import json
import socket
import sys
import threading
import time

from scapy.all import (ICMP, IP, TCP, UDP, IPv6, ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6Unknown,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPerror, IPerror6, Raw, fragment, fragment6)

ETH_P_ALL = 0x0003
# Sources B also records (99-stateful-nat.yaml): the router's addresses
# toward B (MASQUERADE) and the SNAT rule's.
NAT_SOURCES = {"10.10.2.1", "10.10.2.77", "fd00:10:2::1", "fd00:10:2::77"}
PACKET_OUTGOING = 4


def open_sock(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((dev, 0))
    s.settimeout(0.1)
    return s


def ip_of(frame, eth):
    """The IP packet in frame (bare on TUN, after 14 bytes on Ethernet), or None."""
    if eth:
        if len(frame) < 15 or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
            return None
        frame = frame[14:]
    if not frame:
        return None
    v = frame[0] >> 4
    if v == 4:
        return IP(frame)
    if v == 6:
        return IPv6(frame)
    return None


def to(dst, quoted_src):
    """" to DST" for an error not addressed to the source of the packet it
    quotes (which an error should be), else nothing."""
    return "" if dst == quoted_src else " to " + dst


def hop(pkt):
    return pkt[IP].ttl if IP in pkt else pkt[IPv6].hlim


def mss_of(tcp):
    for name, val in tcp.options:
        if name == "MSS":
            return val
    return None


def build(p):
    """The probe's packets: one, or its fragments when p["frag"] is set
    (IPv4: fragments of that many payload bytes, IPv6: of that size)."""
    key = p["key"]
    if p["fam"] == 4:
        ip = IP(src=p["src"], dst=p["dst"], ttl=p.get("ttl") or 64, id=key)
    else:
        ip = IPv6(src=p["src"], dst=p["dst"], hlim=p.get("ttl") or 64, fl=key)
    for ext in p.get("ext") or []:
        if ext == "dstcut":
            # A Destination Options header claiming 2,048 bytes where 8 are:
            # a chain no walk gets through (the rest of the packet is
            # inside its claimed length, past the payload's end).
            ip = ip / IPv6ExtHdrDestOpt(len=255)
            continue
        ip = ip / {"hbh": IPv6ExtHdrHopByHop, "dst": IPv6ExtHdrDestOpt}[ext]()
    proto = p["proto"]
    if proto == "tcp":
        opts = [("MSS", p["mss"])] if p.get("mss") else []
        l4 = TCP(sport=p["sport"], dport=p["dport"], flags=p.get("flags") or "S", seq=seq_of(p), ack=ack_of(p), options=opts)
    elif proto == "udp":
        l4 = UDP(sport=p["sport"], dport=p["dport"])
    elif proto == "icmp":
        l4 = ICMP(type=p.get("itype", 8), code=p.get("icode", 0), id=key, seq=1)
    else:
        t = p.get("itype", 128)
        l4 = ICMPv6EchoRequest(id=key, seq=1) if t == 128 else ICMPv6Unknown(type=t, code=p.get("icode", 0), msgbody=b"\0\0\0\0")
    if p.get("nodata"):
        return [bytes(ip / l4)]
    pkt = ip / l4 / Raw(b"diffprobe")
    want = p.get("len") or 0
    have = len(bytes(pkt))
    if want > have:
        pkt = ip / l4 / Raw(b"diffprobe" + b"." * (want - have))
    if p.get("sum"):
        # A wrong (or, UDP, no) transport checksum: the layer's own field.
        l4.setfieldval("cksum" if proto == "icmpv6" else "chksum", 0 if p["sum"] == "zero" else 0x1234)
        pkt = ip / l4 / pkt.lastlayer()
    if not p.get("frag"):
        return [bytes(pkt)]
    if p["fam"] == 4:
        return [bytes(f) for f in fragment(IP(bytes(pkt)), fragsize=p["frag"])]
    whole = IPv6(bytes(ip / IPv6ExtHdrFragment(id=key) / l4 / pkt[Raw]))
    return [bytes(f) for f in fragment6(whole, p["frag"])]


def seq_of(p):
    return (p["key"] * 7919) & 0xFFFFFFFF


def ack_of(p):
    return (p["key"] * 104729) & 0xFFFFFFFF if "A" in (p.get("flags") or "") else 0


def agent_a(dev, macs):
    s = open_sock(dev)
    eth = b""
    if macs:
        eth = bytes.fromhex(macs[1].replace(":", "")) + bytes.fromhex(macs[0].replace(":", ""))
    for line in sys.stdin:
        req = json.loads(line)
        probes = req["probes"]
        keys = {p["key"] for p in probes}
        ports = {(p["dst"], p["dport"], p["sport"]): p for p in probes if p["proto"] == "tcp"}
        answers = {}
        stop = threading.Event()

        def listen():
            while not stop.is_set():
                try:
                    frame, addr = s.recvfrom(65535)
                except socket.timeout:
                    continue
                if addr[2] == PACKET_OUTGOING:
                    continue
                try:
                    pkt = ip_of(frame, bool(macs))
                    if pkt is None:
                        continue
                    classify(pkt)
                except Exception as e:  # a packet scapy cannot dissect is no answer
                    print("parse:", e, file=sys.stderr)

        def quoted_key(k, inner):
            # An error about a packet the router made (its echo reply to
            # a probe) quotes the probe's key as the echo identifier.
            if k not in keys and getattr(inner, "id", None) in keys:
                return inner.id
            return k

        def answer(key, what):
            answers.setdefault(str(key), []).append(what)

        def classify(pkt):
            if TCP in pkt and not (IPerror in pkt or IPerror6 in pkt) and pkt[TCP].flags & 0x04:
                p = ports.get((pkt.src, pkt[TCP].sport, pkt[TCP].dport))
                if p is None:
                    return
                t = pkt[TCP]
                # As nf_send_reset: to a segment with ACK the reset's
                # sequence number is that ack; to one without, it acks
                # the segment (seq + SYN + FIN + data).
                if t.flags & 0x10:
                    what = "rst ack=seq+%d" % ((t.ack - seq_of(p)) & 0xFFFFFFFF)
                elif t.seq == ack_of(p):
                    what = "rst seq=ack"
                else:
                    what = "rst seq=%d" % t.seq
                answer(p["key"], "%s from %s %s %d" % (what, pkt.src, "ttl" if IP in pkt else "hl", hop(pkt)))
                return
            if IP in pkt and ICMP in pkt and IPerror in pkt:
                k = quoted_key(pkt[IPerror].id, pkt[IPerror].payload)
                if k in keys:
                    answer(k, "icmp %d/%d from %s%s len %d ttl %d" % (pkt[ICMP].type, pkt[ICMP].code, pkt[IP].src,
                                                                       to(pkt[IP].dst, pkt[IPerror].src), pkt[IP].len, hop(pkt)))
                return
            if IP in pkt and ICMP in pkt and pkt[ICMP].type == 0 and pkt[ICMP].id in keys:
                answer(pkt[ICMP].id, "echo-reply from %s ttl %d" % (pkt[IP].src, hop(pkt)))
                return
            if IPv6 in pkt and IPerror6 in pkt:
                k = quoted_key(pkt[IPerror6].fl, pkt[IPerror6].payload)
                if k in keys:
                    # The ICMPv6 header is the layer right above the outer IPv6.
                    icmp = pkt[IPv6].payload
                    answer(k, "icmp6 %d/%d from %s%s len %d hl %d" % (icmp.type, icmp.code, pkt[IPv6].src,
                                                                       to(pkt[IPv6].dst, pkt[IPerror6].src), pkt[IPv6].plen + 40, hop(pkt)))
                return
            if IPv6 in pkt and ICMPv6EchoReply in pkt and pkt[ICMPv6EchoReply].id in keys:
                answer(pkt[ICMPv6EchoReply].id, "echo-reply from %s hl %d" % (pkt[IPv6].src, hop(pkt)))

        th = threading.Thread(target=listen)
        th.start()
        for p in probes:
            for pkt in build(p):
                if eth:
                    pkt = eth + (b"\x08\x00" if p["fam"] == 4 else b"\x86\xdd") + pkt
                s.send(pkt)
            time.sleep(0.003)
        time.sleep(req.get("wait", 1.0))
        stop.set()
        th.join()
        # The first answer to a probe; how many came when more than one
        # did (a probe's fragments each rejected, say).
        out = {k: v[0] + ("" if len(v) == 1 else " (%d answers)" % len(v)) for k, v in answers.items()}
        print(json.dumps({"answers": out}), flush=True)


def agent_b(dev, eth):
    s = open_sock(dev)
    lock = threading.Lock()
    seen = {}

    def listen():
        while True:
            try:
                frame, addr = s.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            try:
                pkt = ip_of(frame, eth)
                if pkt is None:
                    continue
                frag = None
                # From A's hosts, or from the addresses the NAT rule sets
                # put in their place (the router's, a SNAT address).
                if IP in pkt and (pkt.src.startswith("10.10.1.") or pkt.src in NAT_SOURCES):
                    k, ttl, ln = pkt[IP].id, pkt[IP].ttl, pkt[IP].len
                    if pkt[IP].frag or pkt[IP].flags.MF:
                        frag = pkt[IP].frag * 8
                elif IPv6 in pkt and (pkt.src.startswith("fd00:10:1:") or pkt.src in NAT_SOURCES):
                    k, ttl, ln = pkt[IPv6].fl, pkt[IPv6].hlim, pkt[IPv6].plen + 40
                    if IPv6ExtHdrFragment in pkt:
                        frag = pkt[IPv6ExtHdrFragment].offset * 8
                else:
                    continue
                mss = mss_of(pkt[TCP]) if TCP in pkt and pkt[TCP].flags & 0x02 else None
                # The addresses and ports (an echo's id as the source
                # port) as B received them: NAT shows there.
                sport = dport = None
                for layer in (TCP, UDP):
                    if layer in pkt:
                        sport, dport = pkt[layer].sport, pkt[layer].dport
                if ICMP in pkt and pkt[ICMP].type == 8:
                    sport = pkt[ICMP].id
                if ICMPv6EchoRequest in pkt:
                    sport = pkt[ICMPv6EchoRequest].id
                with lock:
                    r = seen.setdefault(str(k), {"ttl": ttl, "mss": mss, "len": ln, "n": 0, "frags": [],
                                                 "src": pkt.src, "dst": pkt.dst, "sport": sport, "dport": dport})
                    r["n"] += 1
                    if frag is not None:
                        r["frags"].append(frag)
            except Exception as e:
                print("parse:", e, file=sys.stderr)

    threading.Thread(target=listen, daemon=True).start()
    for line in sys.stdin:
        req = json.loads(line)
        with lock:
            if req["cmd"] == "start":
                seen = {}
                out = {"ok": True}
            else:
                out = {"seen": seen}
        print(json.dumps(out), flush=True)


def main():
    role, dev = sys.argv[1], sys.argv[2]
    if role == "a":
        agent_a(dev, sys.argv[3:5] if len(sys.argv) >= 5 else None)
    else:
        agent_b(dev, len(sys.argv) > 3 and sys.argv[3] == "eth")


if __name__ == "__main__":
    main()
