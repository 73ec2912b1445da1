#!/usr/bin/env bash
# realnet.sh — the router between real Linux network namespaces, side by
# side with the Linux kernel forwarding between the same namespaces, in one
# run (the pass criterion is the same-run ratio; the machine is shared).
#
#   sudo bench/realnet.sh                 # kernel, tun, bare-tun, gvisor-tun, afpacket, bare-afpacket, gvisor-afpacket; 5 s each
#   sudo T=10 ROUNDS=3 bench/realnet.sh   # medians of 3 rounds, modes interleaved
#   sudo MODES="kernel afpacket" bench/realnet.sh
#   sudo MODES="kernel afpacket afpacket:mode=mmsg" bench/realnet.sh
#
# A mode may carry link options after a colon (base:key=value,key=value):
# they are added to both links of that mode's pipeline, so variants of one
# driver can be measured side by side in one run.
#
# bare-tun and bare-afpacket run cmd/bareforward over the tun and afpacket
# labs instead of the router: a minimal Go forwarder (one thread per
# direction, a read and a write of each packet with its virtio-net header,
# nothing else) — the design the issue's "bare forwarder" figures describe,
# measured in the same run. The router's TCP rate and CPU per packet are
# compared with it as well as with the kernel.
#
# gvisor-tun and gvisor-afpacket run cmd/gvisorrouter over the same labs:
# gVisor's netstack (the version in bench/go.mod) as the router, on its
# fdbased link endpoints — the TUN devices (2 queues, as router.yaml) or
# AF_PACKET sockets on the router ends of the veths — with the addresses,
# connected routes and forwarding of pipelines/router.yaml: the stack our
# users would otherwise pick, measured on the same work. fdbased cannot
# take in offload super-packets or partial checksums (it skips the
# virtio-net header unread), so its TUN devices are opened without the
# header (the kernel segments and checksums before the device) and, for
# gvisor-afpacket, the hosts' veth ends get `ethtool -K DEV tx off` (their
# kernels checksum and segment in software: a cost on the same two cores
# that the other modes do not have). Options after a colon become its
# flags: gvisor-afpacket:dispatch=mmap runs it with -dispatch mmap.
#
# For each mode — kernel (scripts/lab.sh up kernel: the kernel of ns ps-r
# forwards between the veth pairs), tun (pipelines/router.yaml over
# `lab.sh up tun`) and afpacket (pipelines/router-afpacket.yaml over
# `lab.sh up afpacket`) — it measures, from ns ps-a (10.10.1.2) to ns ps-b
# (10.10.2.2):
#   - iperf3 TCP, 1 stream and 4 streams, T seconds each (receiver's rate);
#   - small UDP packets with one sender: bench/cmd/udpblast, one thread and
#     one connected socket doing sendmmsg of 64 datagrams with an 18-byte
#     payload (46-byte IP packets) for T seconds; the rate is what arrives at
#     B, counted by an nftables rule in B's prerouting that also drops them
#     (so B's cost is small and no ICMP port unreachable comes back;
#     datagrams that arrive as one USO super-packet are counted one by one,
#     see udp_in);
#   - the router's CPU time (utime+stime of pipectl from /proc/PID/stat,
#     all its threads) per packet forwarded (ipv4 forwarded from `pipectl
#     stats`) during the UDP run, and its CPU use (cores) during the TCP
#     runs. The kernel's forwarding work runs in softirq context on whatever
#     CPU the packet arrived on and cannot be attributed; for every mode the
#     machine's busy time (/proc/stat, all CPUs, without steal) per packet
#     received is printed too.
# Then a table and the ratios against the kernel of this run.
#
# Namespaces and devices carry the suffix $LAB_SUFFIX (default "bn", so a
# demo or e2e run beside it does not collide). Everything is torn down at
# the end, on failure and on Ctrl-C; it is rerunnable. Needs root, Go,
# iproute2, iperf3, nftables and python3 (for the JSON).
set -euo pipefail
cd "$(dirname "$0")/.."

T="${T:-5}"
ROUNDS="${ROUNDS:-1}"
MODES="${MODES:-kernel tun bare-tun gvisor-tun afpacket bare-afpacket gvisor-afpacket}"
export LAB_SUFFIX="${LAB_SUFFIX-bn}"
S="$LAB_SUFFIX"
NS_A="ps-a$S" NS_B="ps-b$S"

die() { echo "realnet.sh: $*" >&2; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices, packet sockets)"
for tool in ip iperf3 nft python3 go; do
	command -v "$tool" >/dev/null || die "needs $tool"
done
case " $MODES " in *" gvisor-afpacket"*) command -v ethtool >/dev/null || die "gvisor-afpacket needs ethtool" ;; esac

work=$(mktemp -d "${TMPDIR:-/var/tmp}/realnet.XXXXXX") # not /tmp: cleaned while a run may still need it
results="$work/results"
router_pid= iperf_pid= mode= base= lab=
cleanup() {
	set +e
	stop_router
	stop_iperf
	for m in $MODES; do m=${m%%:*} m=${m#bare-}; scripts/lab.sh down "${m#gvisor-}" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_router() {
	if [ -n "$router_pid" ] && kill -0 "$router_pid" 2>/dev/null; then
		kill -TERM "$router_pid"
		for _ in $(seq 100); do kill -0 "$router_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$router_pid" 2>/dev/null || true
		wait "$router_pid" 2>/dev/null || true
	fi
	router_pid=
}
stop_iperf() {
	if [ -n "$iperf_pid" ]; then
		kill "$iperf_pid" 2>/dev/null || true
		wait "$iperf_pid" 2>/dev/null || true
	fi
	iperf_pid=
}

say "building pipectl (pure Go), udpblast, bareforward and gvisorrouter"
CGO_ENABLED=0 go build -o "$work/pipectl" ./cmd/pipectl
(cd bench && for c in udpblast bareforward gvisorrouter; do CGO_ENABLED=0 go build -o "$work/$c" "./cmd/$c"; done)
PIPECTL="$work/pipectl" BARE="$work/bareforward" GVISOR="$work/gvisorrouter"
TCK=$(getconf CLK_TCK)

# pipeline FILE: the repo's pipeline with this lab's suffixed names and a
# name of its own (its control socket is /run/pipestack/<name>.sock).
# Options after the mode's colon go into both link maps. router.yaml is the
# NAT gateway: measured here is forwarding, against the kernel forwarding
# without netfilter, so its conntrack module and its rules (from the "# The
# rules" comment to the end) are left out — the plain router it was.
pipeline() {
	local extra=""
	if [ "$mode" != "$base" ]; then
		extra=$(tr ',' '\n' <<<"${mode#*:}" | sed -E 's/^([^=]+)=(.*)$/, \1: \2/' | tr -d '\n')
	fi
	sed -E -e "s/^name: .*/name: realnet-$base$S/" \
		-e "s/\b(ps-(tun-[ab]|r[ab]|[abr]))([,} ])/\1$S\3/g" \
		-e "s/(module: link\.[a-z]+)/\1$extra/" \
		-e '/^  - \{module: netfilter\.conntrack/d' -e '/^# The rules, in iptables syntax/,$d' "$1"
}

# mac NS DEV: a device's MAC address.
mac() { ip -n "$1" -j link show "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])'; }

start_router() {
	case $base in
	bare-*) start_bare; return ;;
	gvisor-*) start_gvisor; return ;;
	esac
	local src=pipelines/router.yaml
	[ "$base" = afpacket ] && src=pipelines/router-afpacket.yaml
	cfg="$work/$base.yaml"
	pipeline "$src" >"$cfg"
	"$PIPECTL" run "$cfg" >"$work/$base.log" 2>&1 &
	router_pid=$!
	for _ in $(seq 100); do grep -q running "$work/$base.log" && return; sleep 0.1; done
	cat "$work/$base.log" "$cfg" >&2
	die "router ($mode) did not start"
}

# start_bare: the bare forwarder (cmd/bareforward) in place of the router:
# it moves packets between the same devices and does nothing else — the
# most a minimal Go program gets from these drivers on this machine.
start_bare() {
	local log="$work/$base.log"
	case $lab in
	tun) "$BARE" -mode tun -a "ps-tun-a$S@$NS_A" -b "ps-tun-b$S@$NS_B" >"$log" 2>&1 & ;;
	afpacket) "$BARE" -mode afpacket -a "ps-ra$S@ps-r$S" -b "ps-rb$S@ps-r$S" \
		-amac "$(mac "$NS_A" "ps-va$S")" -bmac "$(mac "$NS_B" "ps-vb$S")" -aip 10.10.1.1 -bip 10.10.2.1 >"$log" 2>&1 & ;;
	esac
	router_pid=$!
	for _ in $(seq 100); do grep -q running "$log" && return; sleep 0.1; done
	cat "$log" >&2
	die "bare forwarder ($mode) did not start"
}

# start_gvisor: gVisor's netstack (cmd/gvisorrouter) as the router on the
# same devices. Options after the mode's colon become its flags.
start_gvisor() {
	local log="$work/$base.log" flags=()
	if [ "$mode" != "$base" ]; then
		local kv
		for kv in $(tr ',' ' ' <<<"${mode#*:}"); do flags+=("-${kv%%=*}" "${kv#*=}"); done
	fi
	case $lab in
	tun) "$GVISOR" -mode tun -a "ps-tun-a$S@$NS_A" -b "ps-tun-b$S@$NS_B" "${flags[@]}" >"$log" 2>&1 & ;;
	afpacket)
		# fdbased reads no virtio-net header: the hosts must hand their
		# veths complete, checksummed, MTU-sized frames.
		ip netns exec "$NS_A" ethtool -K "ps-va$S" tx off >/dev/null
		ip netns exec "$NS_B" ethtool -K "ps-vb$S" tx off >/dev/null
		"$GVISOR" -mode afpacket -a "ps-ra$S@ps-r$S" -b "ps-rb$S@ps-r$S" "${flags[@]}" >"$log" 2>&1 & ;;
	esac
	router_pid=$!
	for _ in $(seq 100); do grep -q running "$log" && return; sleep 0.1; done
	cat "$log" >&2
	die "gVisor router ($mode) did not start"
}

# cpu: the router's utime+stime in clock ticks (0 for the kernel).
cpu() {
	if [ -n "$router_pid" ]; then awk '{print $14 + $15}' "/proc/$router_pid/stat"; else echo 0; fi
}
# busy: the machine's busy clock ticks (all CPUs; idle, iowait and steal
# excluded).
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# forwarded: the router's ipv4 forwarded counter (0 for the kernel).
forwarded() {
	[ -n "$router_pid" ] || { echo 0; return; }
	# The bare forwarder keeps no counters, and gVisor none of packets
	# forwarded: what arrived at B is what they forwarded in the UDP run.
	[ "$base" = "$lab" ] || { udp_in; return; }
	"$PIPECTL" stats -json "$cfg" | python3 -c '
import json, sys
st = json.load(sys.stdin)["stats"]
# pipeline.CounterValue has no JSON tags: its fields come out as Name, Value.
get = lambda d, k: d.get(k, d.get(k.capitalize()))
print(next((get(v, "value") for s in st["counters"] if s["name"] == "ipv4" for v in s["values"] if get(v, "name") == "forwarded"), 0))'
}
# udp_in: datagrams counted by the drop rule in B. The rule counts skbs
# and their bytes; a USO super-packet (the TUN router writes a run of
# datagrams as one) is one skb of 28 header bytes and 18 payload bytes per
# datagram, a single datagram one of 46: the datagrams are
# (bytes - 28 * skbs) / 18 either way.
udp_in() {
	ip netns exec "$NS_B" nft -j list chain ip realnet in | python3 -c '
import json, sys
for o in json.load(sys.stdin)["nftables"]:
    for e in o.get("rule", {}).get("expr", []):
        if "counter" in e:
            c = e["counter"]
            print((c["bytes"] - 28 * c["packets"]) // 18)'
}
record() { echo "$round $mode $1 $2" >>"$results"; }
f() { python3 -c "print('%.6g' % ($1))"; }

measure() {
	say "round $round: $mode"
	base=${mode%%:*} lab=${mode%%:*}
	lab=${lab#bare-} lab=${lab#gvisor-}
	scripts/lab.sh down "$lab" 2>/dev/null || true
	scripts/lab.sh up "$lab"
	cfg=
	[ "$base" = kernel ] || start_router
	timeout 10 ip netns exec "$NS_A" ping -q -c 2 -i 0.2 -W 2 10.10.2.2 >/dev/null || die "$mode: no ping through the router"

	ip netns exec "$NS_B" iperf3 -s -B 10.10.2.2 >/dev/null 2>&1 &
	iperf_pid=$!
	for _ in $(seq 50); do ip netns exec "$NS_A" bash -c '</dev/tcp/10.10.2.2/5201' 2>/dev/null && break; sleep 0.1; done
	for p in 1 4; do
		local c0 c1 out gbps
		c0=$(cpu)
		out=$(timeout $((T + 20)) ip netns exec "$NS_A" iperf3 -c 10.10.2.2 -t "$T" -P "$p" -J)
		c1=$(cpu)
		gbps=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)' <<<"$out")
		record "tcp$p" "$gbps"
		record "tcp${p}_cores" "$(f "($c1 - $c0) / $TCK / $T")"
		echo "  TCP $p stream(s): $(f "$gbps") Gbit/s" >&2
		sleep 0.5
	done
	stop_iperf

	ip netns exec "$NS_B" nft -f - <<-EOF
		table ip realnet {
			chain in { type filter hook prerouting priority raw; policy accept; udp dport 9000 counter drop; }
		}
	EOF
	local c0 c1 fw0 fw1 b0 b1 in0 in1 out sent el rx
	in0=$(udp_in) fw0=$(forwarded) c0=$(cpu) b0=$(busy)
	out=$(timeout $((T + 10)) ip netns exec "$NS_A" "$work/udpblast" -to 10.10.2.2:9000 -size 18 -batch 64 -t "${T}s")
	b1=$(busy) c1=$(cpu) fw1=$(forwarded)
	sleep 0.2
	in1=$(udp_in)
	sent=$(awk '{print $2}' <<<"$out") el=$(awk '{print $5}' <<<"$out")
	rx=$((in1 - in0))
	record udp_sent_pps "$(f "$sent / $el")"
	record udp_pps "$(f "$rx / $el")"
	record machine_us "$(f "($b1 - $b0) / $TCK * 1e6 / max($rx, 1)")"
	if [ -n "$router_pid" ]; then
		record router_us "$(f "($c1 - $c0) / $TCK * 1e6 / max($fw1 - $fw0, 1)")"
		record udp_fwd "$((fw1 - fw0))"
	fi
	echo "  UDP: sent $(f "$sent / $el")/s, arrived $(f "$rx / $el")/s" >&2

	stop_router
	scripts/lab.sh down "$lab"
}

: >"$results"
for round in $(seq "$ROUNDS"); do
	for mode in $MODES; do measure; done
done
mode=

say "results (median of $ROUNDS round(s), $T s per measurement; $(nproc) CPUs, $(uname -r))"
python3 - "$results" <<'EOF'
import sys, statistics
from collections import defaultdict
v = defaultdict(dict)  # (mode, metric) -> {round: value}
for line in open(sys.argv[1]):
    rnd, mode, metric, value = line.split()
    v[mode, metric][int(rnd)] = float(value)
modes = list(dict.fromkeys(m for (m, k) in v if k == "tcp1"))
modes.sort(key=lambda m: m != "kernel")
def med(m, k):
    return statistics.median(v[m, k].values()) if v[m, k] else None
def fmt(x, spec):
    return "—" if x is None else format(x, spec)
W = max(9, *(len(m) for m in modes))
print(f"{'mode':{W}} {'TCP 1 Gbit/s':>12} {'TCP 4 Gbit/s':>12} {'UDP sent/s':>11} {'UDP in B/s':>11} {'router µs/pkt':>13} {'machine µs/pkt':>14} {'router cores TCP1/TCP4':>22}")
for m in modes:
    cores = "—" if m == "kernel" else f"{med(m, 'tcp1_cores'):.2f} / {med(m, 'tcp4_cores'):.2f}"
    print(f"{m:{W}} {fmt(med(m, 'tcp1'), '12.2f')} {fmt(med(m, 'tcp4'), '12.2f')} {fmt(med(m, 'udp_sent_pps'), '11,.0f')} "
          f"{fmt(med(m, 'udp_pps'), '11,.0f')} {fmt(med(m, 'router_us'), '13.2f') if m != 'kernel' else 'n/a (softirq)':>13} "
          f"{fmt(med(m, 'machine_us'), '14.2f')} {cores:>22}")
if "kernel" in modes:
    # Ratios against the kernel (or the bare forwarder) of the same round
    # (minutes apart at most), then their median: the machine's speed
    # drifts between rounds.
    def ratio(m, k, ref="kernel"):
        rs = [v[m, k][r] / v[ref, k][r] for r in v[m, k] if r in v[ref, k] and v[ref, k][r] > 0]
        return (statistics.median(rs) if rs else float("nan")), rs
    rounds = lambda rs: " ".join(f"{x:.0%}" for x in rs)
    # Bare Go forwarders' µs CPU/pkt measured earlier on this machine (the
    # issue's figures), used when no bare-* mode ran in this run.
    bare_then = {"tun": 3.1, "afpacket": 2.4}
    ok = lambda c: "ok" if c else "MISSED"
    print()
    for m in modes:
        if m == "kernel":
            continue
        (r1, r1s), (r4, _), (ru, rus) = ratio(m, "tcp1"), ratio(m, "tcp4"), ratio(m, "udp_pps")
        lab = m.split(":")[0]
        if lab.startswith(("bare-", "gvisor-")):
            print(f"{m:{W}} TCP 1 stream  {r1:6.1%} of the kernel (rounds {rounds(r1s)}); TCP 4 streams {r4:6.1%}; small UDP {ru:6.1%} of the kernel's rate")
            continue
        print(f"{m:{W}} TCP 1 stream  {r1:6.1%} of the kernel (target ≥ 90 %: {ok(r1 >= 0.9)}; rounds {rounds(r1s)})")
        bm = "bare-" + lab
        if (bm, "tcp1") in v:
            rb, rbs = ratio(m, "tcp1", bm)
            print(f"{'':{W}}               {rb:6.1%} of the bare {lab} forwarder's (rounds {rounds(rbs)})")
        print(f"{'':{W}} TCP 4 streams {r4:6.1%} of the kernel")
        print(f"{'':{W}} small UDP     {ru:6.1%} of the kernel's rate (target ≥ 100 %: {ok(ru >= 1)}; rounds {rounds(rus)})")
        if (bm, "router_us") in v:
            rc, rcs = ratio(m, "router_us", bm)
            print(f"{'':{W}} router CPU/pkt {med(m, 'router_us'):.2f} µs = {rc:.2f}× the bare {lab} forwarder's in this run (target ≤ 1.2×: {ok(rc <= 1.2)}; rounds {' '.join(f'{x:.2f}' for x in rcs)})")
        else:
            rc = med(m, "router_us") / bare_then[lab]
            print(f"{'':{W}} router CPU/pkt {med(m, 'router_us'):.2f} µs = {rc:.2f}× the bare {lab} forwarder's {bare_then[lab]} µs measured earlier (target ≤ 1.2×: {ok(rc <= 1.2)})")
        gm = "gvisor-" + lab
        if (gm, "tcp1") in v:
            # Against gVisor's netstack as the router on the same devices,
            # same round.
            (g1, g1s), (g4, _), (gu, gus) = ratio(m, "tcp1", gm), ratio(m, "tcp4", gm), ratio(m, "udp_pps", gm)
            print(f"{'':{W}} vs gVisor     TCP 1 stream {g1:.2f}× gVisor's (rounds {' '.join(f'{x:.2f}' for x in g1s)}); TCP 4 streams {g4:.2f}×; small UDP {gu:.2f}× (rounds {' '.join(f'{x:.2f}' for x in gus)})")
            if (gm, "router_us") in v:
                gc, gcs = ratio(gm, "router_us", m)
                print(f"{'':{W}}               router CPU/pkt: gVisor's {med(gm, 'router_us'):.2f} µs = {gc:.2f}× ours (rounds {' '.join(f'{x:.2f}' for x in gcs)})")
EOF
