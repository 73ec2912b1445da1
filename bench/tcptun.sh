#!/usr/bin/env bash
# tcptun.sh: one TCP stream between the Linux kernel and a userspace stack
# over a TUN device, pipestack (link.tun with offloads: the kernel's TSO
# super-packets arrive whole, ours leave as TSO super-packets) against
# gVisor's netstack (fdbased on the same kind of device, which cannot take
# the virtio-net header: the kernel segments for it, gVisor sends MTU-sized
# segments), in the same run, both directions: "in" is the kernel sending
# to the stack, "out" the stack sending to the kernel. Root; everything it
# makes (namespace ps-tt<suffix>, devices ps-tt<suffix>{p,g}) goes away at
# the end.
#
#   sudo bench/tcptun.sh                 # 5 s per stream, 3 rounds, both directions
#   sudo T=10 ROUNDS=5 DIRS=in bench/tcptun.sh
#
# The stack's end is bench/cmd/tcpsink in the root namespace (the stack's
# device is in the namespace); the kernel's end is the same binary with
# -send or -recv in the namespace. The receiving end prints MB/s from its
# first byte to the EOF.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${T:-5}" ROUNDS="${ROUNDS:-3}" DIRS="${DIRS:-in out}"
S="${SUFFIX:-$$}"
NS="ps-tt$S"
die() { echo "tcptun.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/tcptun.XXXXXX")
pid=
cleanup() {
	set +e
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
(cd bench && CGO_ENABLED=0 go build -o "$work/tcpsink" ./cmd/tcpsink)
ip netns add "$NS"
ip -n "$NS" link set lo up

run() { # run STACK DEV DIR: one stream, prints the receiving end's MB/s
	local stack=$1 dev=$2 dir=$3 out="$work/$1.out" kout="$work/kernel.out"
	if [ "$stack" = gvisor ]; then
		ip -n "$NS" tuntap add dev "$dev" mode tun multi_queue
	fi
	local serve=recv
	[ "$dir" = out ] && serve=send
	"$work/tcpsink" -stack "$stack" -dev "$dev@$NS" -addr 10.233.0.2/24 -serve "$serve" -t "${T}s" >"$out" 2>&1 &
	pid=$!
	for _ in $(seq 100); do grep -qs ready "$out" && break; sleep 0.1; done
	grep -q ready "$out" || die "$stack sink not ready: $(cat "$out")"
	ip -n "$NS" addr add 10.233.0.1/24 dev "$dev"
	ip -n "$NS" link set "$dev" up
	if [ "$dir" = in ]; then
		ip netns exec "$NS" "$work/tcpsink" -send 10.233.0.2:5201 -t "${T}s"
		for _ in $(seq 50); do grep -q received "$out" && break; sleep 0.1; done
	else
		ip netns exec "$NS" "$work/tcpsink" -recv 10.233.0.2:5201 >"$kout" 2>&1 ||
			die "$stack: kernel receiver: $(cat "$kout") / $(cat "$out")"
		cat "$kout" >>"$out"
	fi
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
	ip -n "$NS" link del "$dev" 2>/dev/null || true
	grep received "$out" | sed 's/.*: \([0-9.]*\) MB\/s/\1/'
}
for r in $(seq "$ROUNDS"); do
	for dir in $DIRS; do
		p=$(run pipestack "ps-tt${S}p" "$dir")
		g=$(run gvisor "ps-tt${S}g" "$dir")
		ratio=$(awk -v p="$p" -v g="$g" 'BEGIN { printf "%.1f", p / g }')
		echo "round $r $dir: pipestack $p MB/s, gvisor $g MB/s: ${ratio}x"
	done
done
