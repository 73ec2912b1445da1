#!/usr/bin/env bash
# test.sh — the test command: every test in the tree, nothing skipped.
#
#   sudo scripts/test.sh [go test flags, e.g. -v or -run TestTUN]
#
# Installs what the tests drive (Debian/Ubuntu packages, with apt-get,
# non-interactively, only those not installed yet), then runs
# `go test -race ./...` as root with CI set (CI=1 unless CI is already
# non-empty). Under CI a test whose requirement is missing (root, a tool, a
# kernel feature) fails with the reason instead of skipping
# (internal/testenv), so a pass means everything ran. The e2e tests
# (e2e/) run pipectl against the Linux kernel in network namespaces they
# create and remove; the whole run takes several minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "test.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices, packet sockets): sudo $0"
command -v go >/dev/null || die "needs Go ≥ 1.26 (https://go.dev/dl/) in root's PATH (sudo env PATH=\"\$PATH\" $0)"
[ -e /dev/net/tun ] || die "no /dev/net/tun (modprobe tun)"

# What the tests drive. e2e: iproute2 iperf3 curl iputils-ping traceroute
# nmap python3-scapy (with Debian's /usr/bin/python3) nftables iptables;
# link tests: ethtool, tshark (captures read back), sysctl (procps); hping3, conntrack, ipset
# and python3-grpcio for the firewall, conntrack and plugin tests.
pkgs=(iproute2 procps iperf3 curl iputils-ping traceroute nmap tshark python3-scapy ethtool iptables nftables
	hping3 conntrack ipset python3-grpcio python3-protobuf python3-cryptography)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	command -v apt-get >/dev/null || die "no apt-get: install these packages by hand: ${missing[*]}"
	echo "== installing ${missing[*]}"
	# tshark asks whether non-root users may capture: answer no, silently.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export CI="${CI:-1}"
echo "== go test -race $* ./... (CI=$CI: a missing requirement fails, nothing skips)"
start=$(date +%s)
status=0
# -timeout: the e2e package alone takes about 2 minutes on a quiet 2-core
# machine and much longer on a busy one; go test's default is 10 minutes.
go test -race -timeout 30m "$@" ./... || status=$?
echo "== go test: $(($(date +%s) - start)) s, exit status $status"
exit $status
