#!/usr/bin/env bash
# demo.sh — pipestack as a router between two Linux network namespaces.
#
# Builds pipectl, brings up the dual-stack TUN lab (scripts/lab.sh), runs
# pipelines/router.yaml, pings across both ways over IPv4 and over IPv6,
# traces the route, downloads a file over HTTP through the router, runs a
# short iperf3, prints the router's counters and tears everything down (also
# on failure or Ctrl-C).
# Needs root; missing tools are installed with apt-get (or named, when
# apt-get is not there).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices): sudo $0"
[ -e /dev/net/tun ] || die "no /dev/net/tun (modprobe tun)"

# tool:package pairs.
need=(ip:iproute2 ping:iputils-ping traceroute:traceroute curl:curl iperf3:iperf3 python3:python3)
missing=()
for tp in "${need[@]}"; do
	command -v "${tp%%:*}" >/dev/null || missing+=("${tp#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
	if command -v apt-get >/dev/null; then
		say "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		die "missing tools; install these packages: ${missing[*]}"
	fi
fi
command -v go >/dev/null || die "needs Go ≥ 1.26 (https://go.dev/dl/)"

work=$(mktemp -d)
router_pid= http_pid=
cleanup() {
	set +e
	[ -n "$http_pid" ] && kill "$http_pid" 2>/dev/null && wait "$http_pid" 2>/dev/null
	if [ -n "$router_pid" ] && kill -0 "$router_pid" 2>/dev/null; then
		kill -TERM "$router_pid"
		wait "$router_pid"
	fi
	scripts/lab.sh down tun
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building pipectl"
CGO_ENABLED=0 go build -o "$work/pipectl" ./cmd/pipectl  # pure Go: it can drop privileges once its devices are open

say "lab up: namespaces ps-a (10.10.1.2, fd00:10:1::2) and ps-b (10.10.2.2, fd00:10:2::2), TUN devices ps-tun-a / ps-tun-b"
scripts/lab.sh down tun
scripts/lab.sh up tun

say "router: pipectl run pipelines/router.yaml (log in $work/router.log)"
"$work/pipectl" run --stats-interval 1s pipelines/router.yaml >"$work/router.log" 2>&1 &
router_pid=$!
for _ in $(seq 50); do grep -q running "$work/router.log" && break; sleep 0.1; done
grep -q running "$work/router.log" || { cat "$work/router.log"; die "router did not start"; }

say "ping A → B and B → A"
ip netns exec ps-a ping -c 3 -i 0.2 -W 2 10.10.2.2
ip netns exec ps-b ping -c 3 -i 0.2 -W 2 10.10.1.2

say "ping6 A → B and B → A (IPv6)"
ip netns exec ps-a ping -6 -c 3 -i 0.2 -W 2 fd00:10:2::2
ip netns exec ps-b ping -6 -c 3 -i 0.2 -W 2 fd00:10:1::2

say "traceroute A → B: the router (10.10.1.1) is the first hop"
ip netns exec ps-a traceroute -n -q 1 -w 2 -m 4 10.10.2.2

say "HTTP: 20 MB from B to A"
head -c $((20 << 20)) /dev/urandom >"$work/blob"
ip netns exec ps-b python3 -m http.server 8080 --bind 10.10.2.2 --directory "$work" >/dev/null 2>&1 &
http_pid=$!
for _ in $(seq 50); do ip netns exec ps-b bash -c '</dev/tcp/10.10.2.2/8080' 2>/dev/null && break; sleep 0.1; done
ip netns exec ps-a curl -sS --fail --max-time 30 -o "$work/got" -w 'curl: %{size_download} bytes at %{speed_download} B/s\n' http://10.10.2.2:8080/blob
cmp "$work/blob" "$work/got" && echo "intact: $(sha256sum <"$work/got" | cut -c1-16)…"

say "iperf3: TCP A → B for 3 s"
ip netns exec ps-b iperf3 -s -1 -B 10.10.2.2 >/dev/null 2>&1 &
sleep 0.5
ip netns exec ps-a iperf3 -c 10.10.2.2 -t 3 -f g | tail -4

say "router counters: pipectl stats"
"$work/pipectl" stats pipelines/router.yaml || grep -E 'counters' "$work/router.log" | tail -6

say "stopping the router (SIGTERM) and tearing the lab down"
kill -TERM "$router_pid"
wait "$router_pid" && echo "pipectl exited cleanly"
router_pid=
