#!/usr/bin/env bash
# tcptun.sh: one TCP stream from the Linux kernel into a userspace stack
# over a TUN device, pipestack (link.tun with offloads: the kernel's TSO
# super-packets arrive whole) against gVisor's netstack (fdbased on the
# same kind of device, which cannot take the virtio-net header: the kernel
# segments for it), in the same run. Root; everything it makes (namespace
# ps-tt<suffix>, devices ps-tt<suffix>{p,g}) goes away at the end.
#
#   sudo bench/tcptun.sh                 # 5 s per stream, 3 rounds
#   sudo T=10 ROUNDS=5 bench/tcptun.sh
#
# The receiver is bench/cmd/tcpsink in the root namespace (the stack's
# device is in the namespace); the sender is the same binary with -send in
# the namespace, the kernel's TCP. The sink prints MB/s from its first byte
# to the EOF.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${T:-5}" ROUNDS="${ROUNDS:-3}"
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

run() { # run STACK DEV: one stream, prints the sink's MB/s
	local stack=$1 dev=$2 out="$work/$1.out"
	if [ "$stack" = gvisor ]; then
		ip -n "$NS" tuntap add dev "$dev" mode tun multi_queue
	fi
	"$work/tcpsink" -stack "$stack" -dev "$dev@$NS" -addr 10.233.0.2/24 >"$out" 2>&1 &
	pid=$!
	for _ in $(seq 100); do grep -qs ready "$out" && break; sleep 0.1; done
	grep -q ready "$out" || die "$stack sink not ready: $(cat "$out")"
	ip -n "$NS" addr add 10.233.0.1/24 dev "$dev"
	ip -n "$NS" link set "$dev" up
	ip netns exec "$NS" "$work/tcpsink" -send 10.233.0.2:5201 -t "${T}s"
	for _ in $(seq 50); do grep -q received "$out" && break; sleep 0.1; done
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
	ip -n "$NS" link del "$dev" 2>/dev/null || true
	grep received "$out" | sed 's/.*: \([0-9.]*\) MB\/s/\1/'
}
for r in $(seq "$ROUNDS"); do
	p=$(run pipestack "ps-tt${S}p")
	g=$(run gvisor "ps-tt${S}g")
	ratio=$(awk -v p="$p" -v g="$g" 'BEGIN { printf "%.1f", p / g }')
	echo "round $r: pipestack $p MB/s, gvisor $g MB/s: ${ratio}x"
done
