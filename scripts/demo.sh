#!/usr/bin/env bash
# demo.sh — pipestack as the NAT gateway at the edge of a network, between
# two Linux network namespaces: ps-a is the LAN, ps-b the WAN.
#
# Builds pipectl, brings up the dual-stack TUN lab (scripts/lab.sh), runs
# pipelines/router.yaml (MASQUERADE out of b, a port forward, a stateful
# INPUT and FORWARD policy: read its comments) and shows each part working:
#   - a web server in ps-b that echoes its peer's address sees the router's
#     address 10.10.2.1 as the client of ps-a's requests (IPv4 is NATed),
#     and ps-a's own address over IPv6 (routed, not NATed);
#   - ping and traceroute from ps-a through the NAT, a 20 MB download
#     through it (checked intact) and a short iperf3;
#   - the port forward: from ps-b, the router's port 8080 answers with
#     ps-a's web server (and the IPv6 pinhole to ps-a's port 80);
#   - ps-b cannot open a connection to ps-a, nor ping it over IPv4;
#   - `pipectl conntrack -L` lists the flows with their NAT bindings,
#     `pipectl conntrack -S` and `pipectl rules` the counters.
# Every check prints "ok:" or stops the demo with "FAILED:" (exit 1).
# Everything is torn down on exit, on failure and on Ctrl-C.
#
# Needs root; missing tools are installed with apt-get (or named, when
# apt-get is not there). LAB_SUFFIX (at most 7 characters) gives every
# namespace, device and the router's name a suffix, so that the demo can
# run beside another lab (the e2e test TestDemo does that).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
failed() { echo "FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices): sudo $0"
[ -e /dev/net/tun ] || die "no /dev/net/tun (modprobe tun)"

S="${LAB_SUFFIX:-}"
[ ${#S} -le 7 ] || die "LAB_SUFFIX: at most 7 characters (device names are at most 15 bytes)"
NS_A="ps-a$S" NS_B="ps-b$S"

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
router_pid= pids=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	# Whatever else still runs in the lab's namespaces (nothing should).
	for n in "$NS_A" "$NS_B"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null
	done
	if [ -n "$router_pid" ] && kill -0 "$router_pid" 2>/dev/null; then
		kill -TERM "$router_pid"
		wait "$router_pid"
	fi
	LAB_SUFFIX="$S" scripts/lab.sh down tun
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# inns NS CMD...: a command in a host namespace.
inns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# A web server that tells each client the address it sees the client
# connect from (GET /whoami), serves files from $work (GET /blob) and logs
# every request with the peer's address. One process per namespace, one
# thread per address it listens on.
cat >"$work/whoami.py" <<'EOF'
import http.server, socket, sys, threading
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/whoami":
            body = ("you are %s port %d\n" % self.client_address[:2]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()
    def log_message(self, fmt, *args):
        print("%s: %s from %s port %d" % (sys.argv[1], fmt % args, *self.client_address[:2]), flush=True)
class V6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
servers = []
for hp in sys.argv[3:]:
    host, port = hp.rsplit(":", 1)
    host = host.strip("[]")
    cls = V6 if ":" in host else http.server.ThreadingHTTPServer
    h = lambda *a, **k: Handler(*a, directory=sys.argv[2], **k)
    servers.append(cls((host, int(port)), h))
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("%s: listening on %s" % (sys.argv[1], " ".join(sys.argv[3:])), flush=True)
servers[0].serve_forever()
EOF

# serve NS NAME ADDR:PORT...: start the web server in NS, wait until it listens.
serve() {
	local n=$1 name=$2
	shift 2
	# Not through inns (a function: & would fork a subshell, and $! be
	# that, not the server): ip netns exec execs the server itself.
	ip netns exec "$n" python3 "$work/whoami.py" "$name" "$work" "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 50); do grep -q listening "$work/$name.log" && return; sleep 0.1; done
	cat "$work/$name.log"
	die "$name did not start"
}

# expect_peer OUT WANT: the server's answer names WANT as the client.
expect_peer() {
	echo "$1"
	case "$1" in "you are $2 port "*) ;; *) return 1 ;; esac
}

say "building pipectl"
CGO_ENABLED=0 go build -o "$work/pipectl" ./cmd/pipectl  # pure Go: it can drop privileges once its devices are open

say "lab up: namespaces $NS_A (the LAN: 10.10.1.2, fd00:10:1::2) and $NS_B (the WAN: 10.10.2.2, fd00:10:2::2)"
LAB_SUFFIX="$S" scripts/lab.sh down tun
LAB_SUFFIX="$S" scripts/lab.sh up tun

cfg=pipelines/router.yaml
if [ -n "$S" ]; then
	# The same file with this lab's names.
	cfg="$work/router.yaml"
	sed -E -e "s/^name: .*/name: router$S/" -e "s/\b(ps-(tun-[ab]|[ab]))([,} ])/\1$S\3/g" pipelines/router.yaml >"$cfg"
fi
say "router: pipectl run $cfg — the NAT gateway (log in $work/router.log)"
"$work/pipectl" run "$cfg" >"$work/router.log" 2>&1 &
router_pid=$!
for _ in $(seq 50); do grep -q running "$work/router.log" && break; sleep 0.1; done
grep -q running "$work/router.log" || { cat "$work/router.log"; die "router did not start"; }

say "a web server in $NS_B (the WAN) that echoes its client's address"
serve "$NS_B" wan-server 10.10.2.2:8080 "[fd00:10:2::2]:8080"

say "LAN → WAN over IPv4: the server sees the router's address (MASQUERADE)"
out=$(inns "$NS_A" curl -sS --fail --max-time 10 http://10.10.2.2:8080/whoami) || failed "curl: no answer"
expect_peer "$out" 10.10.2.1 && ok "the server in $NS_B saw the router's address 10.10.2.1, not 10.10.1.2" ||
	failed "the server saw another address than the router's 10.10.2.1: $out"
echo "the server's log: $(tail -1 "$work/wan-server.log")"

say "LAN → WAN over IPv6: routed, not NATed — the server sees the LAN host's own address"
out=$(inns "$NS_A" curl -sS --fail --max-time 10 "http://[fd00:10:2::2]:8080/whoami") || failed "curl: no answer"
expect_peer "$out" fd00:10:1::2 && ok "the server saw fd00:10:1::2 (IPv6 is routed through the stateful firewall)" ||
	failed "over IPv6 the server saw $out, want fd00:10:1::2"

say "ping through the NAT (the echo id is translated), IPv4 and IPv6"
inns "$NS_A" ping -c 3 -i 0.2 -W 2 10.10.2.2 | tail -2
inns "$NS_A" ping -6 -c 3 -i 0.2 -W 2 fd00:10:2::2 | tail -2
ok "ping from the LAN"

say "traceroute through the NAT: the router (10.10.1.1) is the first hop, $NS_B the second"
# B's answers (port unreachable) are ICMP errors about a masqueraded probe:
# the router translates them back (outer and quoted headers) to 10.10.1.2.
inns "$NS_A" traceroute -n -q 1 -w 2 -m 4 10.10.2.2 | tee "$work/trace"
grep -qE '^ *1 +10\.10\.1\.1 ' "$work/trace" && grep -qE '^ *2 +10\.10\.2\.2 ' "$work/trace" &&
	ok "traceroute: 10.10.1.1, then 10.10.2.2" || failed "traceroute did not show the router, then $NS_B"

say "HTTP through the NAT: 20 MB from the WAN server to the LAN"
head -c $((20 << 20)) /dev/urandom >"$work/blob"
inns "$NS_A" curl -sS --fail --max-time 30 -o "$work/got" -w 'curl: %{size_download} bytes at %{speed_download} B/s\n' http://10.10.2.2:8080/blob
cmp "$work/blob" "$work/got" && ok "intact: $(sha256sum <"$work/got" | cut -c1-16)…" || failed "the download differs"

say "iperf3 through the NAT: TCP from the LAN to the WAN for 3 s"
ip netns exec "$NS_B" iperf3 -s -1 -B 10.10.2.2 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
inns "$NS_A" iperf3 -c 10.10.2.2 -t 3 -f g | tail -4

say "the port forward: the router's 10.10.2.1:8080 is the LAN web server's port 80"
serve "$NS_A" lan-server 10.10.1.2:80 "[fd00:10:1::2]:80"
out=$(inns "$NS_B" curl -sS --fail --max-time 10 http://10.10.2.1:8080/whoami) || failed "curl: no answer"
expect_peer "$out" 10.10.2.2 && ok "the port forward answered from $NS_A's server (which sees $NS_B's address 10.10.2.2)" ||
	failed "the port forward: $out"
out=$(inns "$NS_B" curl -sS --fail --max-time 10 "http://[fd00:10:1::2]/whoami") || failed "curl: no answer"
expect_peer "$out" fd00:10:2::2 && ok "the IPv6 pinhole to [fd00:10:1::2]:80 answered" || failed "the IPv6 pinhole: $out"
echo "the LAN server's log:"
tail -2 "$work/lan-server.log"

say "the WAN cannot open connections into the LAN"
if inns "$NS_B" curl -sS --connect-timeout 2 http://10.10.1.2/whoami 2>&1; then
	failed "$NS_B reached $NS_A's web server directly"
fi
ok "$NS_B → 10.10.1.2:80: no answer (the SYN met FORWARD's policy drop)"
if inns "$NS_B" timeout 3 bash -c '</dev/tcp/fd00:10:1::2/22' 2>/dev/null; then
	failed "$NS_B connected to [fd00:10:1::2]:22"
fi
ok "$NS_B → [fd00:10:1::2]:22: no answer (IPv6: only the pinhole is open)"
if inns "$NS_B" ping -c 2 -i 0.2 -W 1 10.10.1.2 >"$work/ping" 2>&1; then
	cat "$work/ping"
	failed "$NS_B pinged $NS_A"
fi
ok "$NS_B cannot ping 10.10.1.2"

say "the flows: pipectl conntrack -L (original tuple, then the reply tuple NAT set)"
"$work/pipectl" conntrack "$cfg" -L | tee "$work/conntrack"
grep -q 'src=10.10.1.2 dst=10.10.2.2 sport=[0-9]* dport=8080 src=10.10.2.2 dst=10.10.2.1 ' "$work/conntrack" &&
	ok "conntrack lists the masqueraded flow (its reply goes to 10.10.2.1)" || failed "conntrack -L lacks the masqueraded flow"
grep -q 'src=10.10.2.2 dst=10.10.2.1 sport=[0-9]* dport=8080 src=10.10.1.2 dst=10.10.2.2 sport=80 ' "$work/conntrack" &&
	ok "conntrack lists the port-forwarded flow (its reply comes from 10.10.1.2:80)" || failed "conntrack -L lacks the port-forwarded flow"

say "the counters: pipectl conntrack -S, pipectl rules"
"$work/pipectl" conntrack "$cfg" -S
"$work/pipectl" rules "$cfg"

say "stopping the router (SIGTERM) and tearing the lab down"
kill -TERM "$router_pid"
wait "$router_pid" && echo "pipectl exited cleanly"
router_pid=
