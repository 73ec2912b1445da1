#!/usr/bin/python3
"""The same TCP segments to a TCP under test, its answers printed.

    tcpinput.py tun DEVICE LOCAL PEER       Linux: this script reads and
        writes the TUN device DEVICE (it is the wire); its own sockets
        listen on LOCAL:80 (connections kept, never read) and LOCAL:81
        (closed at once).
    tcpinput.py raw DEVICE LOCAL PEER       another stack behind DEVICE
        (it owns the TUN; the same two listeners): segments go out over a
        raw socket from PEER (an address nobody holds), answers are read
        with AF_PACKET on DEVICE.

Each step prints one line: "CASE STEP: ANSWERS", the answers normalized
(flags, seq relative to the server's ISS, ack relative to ours, 1000, the
options a SYN-ACK carries) so that two stacks can be compared line by
line. Windows and timestamps' values are left out (they differ by design).
"""
import fcntl, os, select, socket, struct, sys, threading, time

MODE, DEV, LOCAL, PEER = sys.argv[1:5]
ISN = 1000


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def opt_bytes(opts):
    out = b""
    for o in opts:
        if o[0] == "mss":
            out += struct.pack("!BBH", 2, 4, o[1])
        elif o[0] == "ts":
            out += struct.pack("!BBBBII", 1, 1, 8, 10, o[1], o[2])
        elif o[0] == "ws":
            out += struct.pack("!BBBB", 1, 3, 3, o[1])
        elif o[0] == "sackok":
            out += struct.pack("!BBBB", 1, 1, 4, 2)
        elif o[0] == "raw":
            out += o[1]
    return out + b"\0" * (-len(out) % 4)


FLAGS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32}


def packet(sport, dport, flags, seq, ack=0, data=b"", opts=(), urg=0, win=65535):
    o = opt_bytes(opts)
    f = sum(FLAGS[c] for c in flags)
    th = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq % (1 << 32), ack % (1 << 32), (5 + len(o) // 4) << 4, f, win, 0, urg) + o + data)
    ph = socket.inet_aton(PEER) + socket.inet_aton(LOCAL) + struct.pack("!BBH", 0, 6, len(th))
    th[16:18] = struct.pack("!H", csum(ph + bytes(th)))
    ih = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(th), 1, 0x4000, 64, 6, 0, socket.inet_aton(PEER), socket.inet_aton(LOCAL)))
    ih[10:12] = struct.pack("!H", csum(bytes(ih)))
    return bytes(ih) + bytes(th)


class Seg:
    def __init__(self, b):
        ihl = (b[0] & 15) * 4
        t = b[ihl:]
        self.sport, self.dport, self.seq, self.ack, off, self.flags, self.win = struct.unpack("!HHIIBBH", t[:16])
        hl = (off >> 4) * 4
        self.opts = self.parse_opts(t[20:hl])
        self.data = t[hl:]

    @staticmethod
    def parse_opts(b):
        out, i = {}, 0
        while i < len(b):
            k = b[i]
            if k == 0:
                break
            if k == 1:
                i += 1
                continue
            if i + 1 >= len(b) or b[i + 1] < 2:
                break
            n = b[i + 1]
            v = b[i + 2 : i + n]
            out[{2: "mss", 3: "ws", 4: "sackok", 8: "ts", 5: "sack"}.get(k, str(k))] = v
            i += n
        return out

    def flagstr(self):
        return "".join(c for c, v in FLAGS.items() if self.flags & v)


if MODE == "tun":
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", DEV.encode(), 0x0001 | 0x1000))  # IFF_TUN | IFF_NO_PI

    def wire_send(p):
        os.write(fd, p)

    def wire_read(timeout):
        r, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 65535) if r else None

    kept = []

    def serve(port, keep):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((LOCAL, port))
        ls.listen(64)

        def loop():
            while True:
                c, _ = ls.accept()
                if keep:
                    kept.append(c)
                else:
                    c.close()

        threading.Thread(target=loop, daemon=True).start()

    serve(80, True)
    serve(81, False)
else:
    rs = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    ps = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))  # ETH_P_ALL
    ps.bind((DEV, 3))

    def wire_send(p):
        rs.sendto(p, (LOCAL, 0))

    def wire_read(timeout):
        end = time.time() + timeout
        while True:
            r, _, _ = select.select([ps], [], [], max(0, end - time.time()))
            if not r:
                return None
            b, addr = ps.recvfrom(65535)
            if addr[2] != socket.PACKET_OUTGOING:
                return b

port_now = [0]


def answers(timeout=0.3, until=None):
    """The segments to port_now within timeout (or until one matches)."""
    out = []
    end = time.time() + timeout
    while True:
        b = wire_read(max(0, end - time.time()))
        if b is None:
            return out
        if b[0] >> 4 != 4 or b[9] != 6 or socket.inet_ntoa(b[12:16]) != LOCAL:
            continue
        s = Seg(b)
        if s.dport != port_now[0]:
            continue
        out.append(s)
        if until and until(s):
            return out


iss = {}


def norm(segs, synack_opts=False):
    parts = []
    for s in segs:
        base = iss.get(s.dport)
        if "S" in s.flagstr() and "A" in s.flagstr() and base is None:
            iss[s.dport] = base = s.seq
        rel = "seq=0" if s.seq == 0 else ("seq=iss+%d" % ((s.seq - base) % (1 << 32)) if base is not None else "seq=?")
        txt = "%s %s ack=%+d len=%d" % (s.flagstr(), rel, (s.ack - ISN) % (1 << 32) if s.flags & 16 else 0, len(s.data))
        if synack_opts:
            txt += " opts=" + ",".join(sorted(k for k in s.opts if k != "mss"))
        parts.append(txt)
    return " | ".join(parts) if parts else "none"


def send(sport, dport, flags, seq, ack=0, **kw):
    port_now[0] = sport
    wire_send(packet(sport, dport, flags, seq, ack, **kw))


def step(case, name, segs, **kw):
    print("%s %s: %s" % (case, name, norm(segs, **kw)), flush=True)


def handshake(sport, dport=80, opts=(("mss", 1460),), ts=None):
    send(sport, dport, "S", ISN, opts=opts)
    sa = [s for s in answers(1, until=lambda s: s.flags & 2) if s.flags & 2]
    if not sa:
        print("no SYN-ACK on port", sport, flush=True)
        sys.exit(1)
    norm(sa)
    una = sa[0].seq + 1
    aopts = ()
    if ts is not None:
        aopts = (("ts", ts, struct.unpack("!I", sa[0].opts.get("ts", b"\0" * 8)[:4])[0]),)
    send(sport, dport, "A", ISN + 1, una, opts=aopts)
    answers(0.1)
    return una


def case(name):
    return len(sys.argv) < 6 or name in sys.argv[5].split(",")


# Each case uses its own ports: nothing of one reaches another.
if case("rstfin"):
    una = handshake(40001)
    send(40001, 80, "R", ISN)  # RCV.NXT-1 in ESTABLISHED: out of window
    step("rstfin", "rst-rcvnxt-1-established", answers())
    send(40001, 80, "FA", ISN + 1, una)
    step("rstfin", "fin", answers())
    send(40001, 80, "R", ISN + 1)  # the FIN's number, RCV.NXT-1 in CLOSE-WAIT
    step("rstfin", "rst-rcvnxt-1-closewait", answers())
    send(40001, 80, "A", ISN + 2, una)
    step("rstfin", "ack-after", answers())

if case("oldack"):
    una = handshake(40002)
    send(40002, 80, "PA", ISN + 1, una - 100, data=b"evil")
    step("oldack", "data-ack-below-iss", answers())

if case("ts0"):
    una = handshake(40003, opts=(("mss", 1460), ("ts", 0, 0)), ts=0)
    send(40003, 80, "PA", ISN + 1, una, data=b"x", opts=(("ts", 0x90000000, 0),))
    step("ts0", "tsval-2^31-after-0", answers())

if case("ackabove"):
    una = handshake(40004)
    send(40004, 80, "PA", ISN + 1, una + 1000, data=b"x")
    step("ackabove", "data", answers())
    send(40004, 80, "PA", ISN + 1, una + 1000, data=b"x")
    step("ackabove", "again-within-500ms", answers())

if case("synrecv"):
    send(40005, 80, "S", ISN, opts=(("mss", 1460),))
    step("synrecv", "syn", answers(), synack_opts=True)
    send(40005, 80, "S", ISN, opts=(("mss", 1460),))
    step("synrecv", "syn-again", answers(0.2))
    send(40005, 80, "S", ISN, opts=(("mss", 1460),))
    step("synrecv", "syn-again-within-500ms", answers(0.2))
    send(40006, 80, "S", ISN, opts=(("mss", 1460),))
    norm(answers(0.2))
    send(40006, 80, "R", ISN + 5)
    step("synrecv", "rst-in-window", answers(0.2))
    send(40007, 80, "S", ISN, opts=(("mss", 1460),))
    norm(answers(0.2))
    send(40007, 80, "S", ISN + 10, opts=(("mss", 1460),))
    step("synrecv", "syn-in-window", answers(0.2))

if case("finwin"):
    una = handshake(40008)
    send(40008, 80, "FA", ISN + 1 + (1 << 20), una)
    step("finwin", "fin-beyond-window", answers())
    send(40008, 80, "FA", ISN + 1, una)
    step("finwin", "fin", answers())

if case("badopts"):
    for i, (label, raw) in enumerate(
        [
            ("ts-length-9", struct.pack("!BB", 8, 9) + b"\0" * 7),
            ("length-1", bytes([30, 1])),
            ("length-0", bytes([4, 0])),
            ("ts-past-end", struct.pack("!BB", 8, 10) + b"\0\0"),
        ]
    ):
        port = 40010 + i
        opts = (("mss", 1000), ("raw", raw), ("ws", 7)) if label != "ts-past-end" else (("mss", 1000), ("ws", 7), ("raw", raw))
        send(port, 80, "S", ISN, opts=opts)
        step("badopts", label, answers(), synack_opts=True)

if case("datasyn"):
    send(40020, 80, "S", ISN, data=b"hello", opts=(("mss", 1460),))
    step("datasyn", "syn-with-data", answers())
    send(40021, 80, "SF", ISN, opts=(("mss", 1460),))
    step("datasyn", "syn-fin", answers())

if case("zwp"):
    una = handshake(40030)
    send(40030, 80, "A", ISN, una)
    step("zwp", "probe", answers(0.1))
    send(40030, 80, "A", ISN, una)
    step("zwp", "probe-within-500ms", answers(0.1))
    time.sleep(0.5)
    send(40030, 80, "A", ISN, una)
    step("zwp", "probe-after-500ms", answers(0.1))

if case("tw"):
    una = handshake(40040, dport=81, opts=(("mss", 1460), ("ts", 5000, 0)), ts=5000)
    f = [s for s in answers(2, until=lambda s: s.flags & 1) if s.flags & 1]
    step("tw", "server-fin", f[:1])
    send(40040, 81, "FA", ISN + 1, una + 1, opts=(("ts", 5001, 0),))
    step("tw", "fin", answers())
    send(40040, 81, "R", ISN + 2, opts=(("ts", 4000, 0),))
    step("tw", "old-rst", answers(0.1))
    send(40040, 81, "R", ISN + 2, opts=(("ts", 5000, 0),))  # TS.Recent is 5001: older by one
    step("tw", "old-rst-by-one", answers(0.1))
    send(40040, 81, "S", ISN - 100, opts=(("mss", 1460),))  # an old SYN: the TIME-WAIT ACK if it is there
    step("tw", "old-syn", answers())
    send(40040, 81, "R", ISN + 2, opts=(("ts", 5002, 0),))
    step("tw", "rst", answers(0.1))
    send(40040, 81, "A", ISN + 2, una + 1)
    step("tw", "ack-after", answers())

if case("twsyn"):
    una = handshake(40050, dport=81)
    f = [s for s in answers(2, until=lambda s: s.flags & 1) if s.flags & 1]
    send(40050, 81, "FA", ISN + 1, una + 1)
    answers()
    iss.pop(40050)
    send(40050, 81, "S", ISN + 5000, opts=(("mss", 1460),))
    sa = answers()
    step("twsyn", "new-syn", sa)
    if sa and f:
        print("twsyn iss: snd.nxt+%d" % ((sa[0].seq - (f[0].seq + 1)) % (1 << 32)), flush=True)

if case("estab"):
    una = handshake(40060)
    send(40060, 80, "R", ISN + 100)
    step("estab", "rst-in-window", answers())
    una = handshake(40061)
    send(40061, 80, "S", ISN + 100, opts=(("mss", 1460),))
    step("estab", "syn-in-window", answers())
    una = handshake(40062)
    send(40062, 80, "P", ISN + 1, data=b"noack")
    step("estab", "data-without-ack", answers())
    send(40062, 80, "PA", ISN + 1 + (1 << 20), una, data=b"far")
    step("estab", "data-beyond-window", answers())
    send(40062, 80, "PA", ISN + 1 + (1 << 20), una, data=b"far")
    step("estab", "data-beyond-window-again", answers())
    send(40062, 80, "PA", ISN + 1, una, data=b"abc")
    step("estab", "data", answers())
    send(40062, 80, "PA", ISN + 1, una, data=b"abc")
    step("estab", "data-duplicate", answers())
    send(40062, 80, "PA", ISN + 10, una, data=b"xyz")
    step("estab", "data-out-of-order", answers())
    send(40062, 80, "R", ISN + 4)
    step("estab", "rst-at-rcvnxt", answers())
    send(40062, 80, "A", ISN + 4, una)
    step("estab", "ack-after", answers())

if case("synrecvack"):
    send(40070, 80, "S", ISN, opts=(("mss", 1460),))
    sa = answers()
    norm(sa)
    send(40070, 80, "A", ISN + 1, sa[0].seq + 5)
    step("synrecvack", "ack-wrong", answers())
    send(40070, 80, "A", ISN + 1, sa[0].seq + 1)
    step("synrecvack", "ack-right", answers())
    send(40070, 80, "PA", ISN + 1, sa[0].seq + 1, data=b"hi")
    step("synrecvack", "data", answers())

print("done", flush=True)
