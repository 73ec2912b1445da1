#!/usr/bin/env bash
# lab.sh — the lab the router demo and the e2e tests run in: two host
# network namespaces wired to a pipestack router, with the Linux kernel as
# the hosts.
#
#   lab.sh up   [tun|afpacket|kernel]
#   lab.sh down [tun|afpacket|kernel]
#   lab.sh status
#
# Addressing, dual-stack (the same in every mode; pipelines/router.yaml and
# pipelines/router-afpacket.yaml match it). IPv6 uses unique local prefixes
# (fd00:10:1::/64, fd00:10:2::/64) that mirror the IPv4 subnets:
#
#   ns ps-a: 10.10.1.2/24 ────── 10.10.1.1  ROUTER  10.10.2.1 ────── 10.10.2.2/24 :ns ps-b
#            fd00:10:1::2/64     fd00:10:1::1    fd00:10:2::1     fd00:10:2::2/64
#            default via 10.10.1.1, fd00:10:1::1     default via 10.10.2.1, fd00:10:2::1
#
# The hosts' IPv6 addresses are added nodad (usable at once, no duplicate
# address detection); IPv6 is on in ps-a and ps-b (whatever the host's
# defaults), and their kernels keep accept_ra=1 (forwarding off), so a
# router that sends Router Advertisements also configures them by SLAAC.
#
# tun (default): the router runs in the root namespace (pipectl run
#   pipelines/router.yaml). Each host namespace holds a persistent TUN device
#   made here (`ip tuntap add mode tun multi_queue vnet_hdr`): ps-tun-a in
#   ps-a, ps-tun-b in ps-b. The kernel side of each device has the host's
#   address and default route; the router attaches to the device by name
#   (link.tun with netns: ps-a) and its own addresses (10.10.1.1,
#   fd00:10:1::1) exist only inside pipestack. A TUN device is
#   point-to-point L3: no ARP, no MACs, no NDP resolution (it is NOARP);
#   Linux sends IPv6 on it like on any device once IPv6 is on there (it
#   gives it a random link-local address and sends router solicitations).
#   Until the router attaches, the devices have no carrier.
# afpacket: a third namespace ps-r for the router, veth pairs ps-va (in
#   ps-a, 10.10.1.2/24) <-> ps-ra (in ps-r) and ps-vb (in ps-b) <-> ps-rb;
#   an AF_PACKET router (pipelines/router-afpacket.yaml: link.afpacket,
#   netns: ps-r) owns the router ends, so ps-r's kernel is kept out of the
#   way: no addresses on ps-ra/ps-rb, IPv6 off in ps-r (no link-local
#   address, no router solicitations, no MLD), and an nftables netdev
#   ingress chain with policy drop on both (table netdev pipestack-lab).
#   Without that drop ps-r's kernel would still take every frame through
#   its own receive path beside the router (ARP, ip_rcv, a route lookup and
#   a drop counted in InAddrErrors for each transit packet: CPU the router
#   needs, and a second forwarder the moment ip_forward is turned on in
#   ps-r). The drop does not hide the frames from the router:
#   __netif_receive_skb_core hands a frame to the ETH_P_ALL packet sockets
#   (ptype_all taps, which link.afpacket binds) before the ingress hooks
#   run, and frames the router sends leave through dev_queue_xmit, which
#   the ingress hook never sees. Needs nft (nftables).
# kernel: afpacket's wiring with the Linux kernel as the router (10.10.1.1
#   and fd00:10:1::1 on ps-ra, 10.10.2.1 and fd00:10:2::1 on ps-rb, IPv4
#   and IPv6 forwarding on in ps-r): the baseline the benchmarks compare
#   against.
#
# Names take the suffix in $LAB_SUFFIX (the e2e tests use a random one so
# that runs never collide); device names must stay within 15 bytes.
# `down` removes everything `up` made, in every mode, and ignores what is
# already gone. Needs root and iproute2.
set -euo pipefail

S="${LAB_SUFFIX:-}"
NS_A="ps-a$S" NS_B="ps-b$S" NS_R="ps-r$S"
TUN_A="ps-tun-a$S" TUN_B="ps-tun-b$S"
VA="ps-va$S" VB="ps-vb$S" RA="ps-ra$S" RB="ps-rb$S"
MTU="${LAB_MTU:-1500}"

die() { echo "lab.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
command -v ip >/dev/null || die "needs ip (apt-get install iproute2)"

ns() { ip netns exec "$@"; }

# sysctl_ns NS KEY=VALUE...: sysctl -w inside NS, through /proc/sys (which
# shows the namespace of the process reading it), without procps.
sysctl_ns() {
	local n=$1 kv
	shift
	for kv in "$@"; do
		ns "$n" sh -c 'echo "$2" >"/proc/sys/$1"' - "$(printf %s "${kv%%=*}" | tr . /)" "${kv#*=}"
	done
}

host() { # host NS DEV ADDR GW ADDR6 GW6
	sysctl_ns "$1" "net.ipv6.conf.$2.disable_ipv6=0"
	ns "$1" ip addr add "$3" dev "$2"
	ns "$1" ip -6 addr add "$5" dev "$2" nodad
	ns "$1" ip link set "$2" up
	ns "$1" ip route add default via "$4"
	ns "$1" ip -6 route add default via "$6" dev "$2"
}

host_a() { host "$NS_A" "$1" 10.10.1.2/24 10.10.1.1 fd00:10:1::2/64 fd00:10:1::1; }
host_b() { host "$NS_B" "$1" 10.10.2.2/24 10.10.2.1 fd00:10:2::2/64 fd00:10:2::1; }

up_ns() {
	for n in "$@"; do
		ip netns add "$n"
		ns "$n" ip link set lo up
	done
}

# IPv6 on in the host namespaces, for the devices made there later too.
up_hosts_ipv6() {
	for n in "$NS_A" "$NS_B"; do
		sysctl_ns "$n" net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
	done
}

up_tun() {
	up_ns "$NS_A" "$NS_B"
	up_hosts_ipv6
	ns "$NS_A" ip tuntap add dev "$TUN_A" mode tun multi_queue vnet_hdr
	ns "$NS_B" ip tuntap add dev "$TUN_B" mode tun multi_queue vnet_hdr
	ns "$NS_A" ip link set "$TUN_A" mtu "$MTU"
	ns "$NS_B" ip link set "$TUN_B" mtu "$MTU"
	host_a "$TUN_A"
	host_b "$TUN_B"
}

up_veth() {
	up_ns "$NS_A" "$NS_B" "$NS_R"
	up_veth_links
}

up_veth_links() {
	up_hosts_ipv6
	ip link add "$VA" mtu "$MTU" netns "$NS_A" type veth peer name "$RA" mtu "$MTU" netns "$NS_R"
	ip link add "$VB" mtu "$MTU" netns "$NS_B" type veth peer name "$RB" mtu "$MTU" netns "$NS_R"
	ns "$NS_R" ip link set "$RA" up
	ns "$NS_R" ip link set "$RB" up
	host_a "$VA"
	host_b "$VB"
}

up_afpacket() {
	command -v nft >/dev/null || die "afpacket mode needs nft (apt-get install nftables)"
	up_ns "$NS_A" "$NS_B" "$NS_R"
	# IPv6 off in ps-r before the veth ends appear there (they inherit
	# conf/default), and on each end for good measure.
	sysctl_ns "$NS_R" net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
	up_veth_links
	sysctl_ns "$NS_R" "net.ipv6.conf.$RA.disable_ipv6=1" "net.ipv6.conf.$RB.disable_ipv6=1"
	ns "$NS_R" nft -f - <<-EOF
		table netdev pipestack-lab {
			chain in-a { type filter hook ingress device "$RA" priority 0; policy drop; }
			chain in-b { type filter hook ingress device "$RB" priority 0; policy drop; }
		}
	EOF
}

up_kernel() {
	up_veth
	ns "$NS_R" ip addr add 10.10.1.1/24 dev "$RA"
	ns "$NS_R" ip addr add 10.10.2.1/24 dev "$RB"
	ns "$NS_R" ip -6 addr add fd00:10:1::1/64 dev "$RA" nodad
	ns "$NS_R" ip -6 addr add fd00:10:2::1/64 dev "$RB" nodad
	sysctl_ns "$NS_R" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

down() {
	# Devices first (a persistent TUN device would otherwise outlive a
	# namespace some process still holds), then the namespaces.
	ns "$NS_A" ip link del "$TUN_A" 2>/dev/null || true
	ns "$NS_B" ip link del "$TUN_B" 2>/dev/null || true
	ns "$NS_A" ip link del "$VA" 2>/dev/null || true
	ns "$NS_B" ip link del "$VB" 2>/dev/null || true
	for n in "$NS_A" "$NS_B" "$NS_R"; do
		ip netns del "$n" 2>/dev/null || true
	done
}

status() {
	for n in "$NS_A" "$NS_B" "$NS_R"; do
		if ip netns list | grep -qw "$n"; then
			echo "== $n"
			ns "$n" ip -br addr
			ns "$n" ip route
			ns "$n" ip -6 route 2>/dev/null || true
			ns "$n" nft list tables netdev 2>/dev/null || true
		fi
	done
}

cmd="${1:-}" mode="${2:-tun}"
case "$mode" in tun | afpacket | kernel) ;; *) die "unknown mode $mode (tun, afpacket, kernel)" ;; esac
case "$cmd" in
up)
	trap 'echo "lab.sh: up failed; removing what was made" >&2; down' ERR
	case "$mode" in
	tun) up_tun ;;
	afpacket) up_afpacket ;;
	kernel) up_kernel ;;
	esac
	trap - ERR
	;;
down) down ;;
status) status ;;
*) die "usage: lab.sh up|down [tun|afpacket|kernel] | status" ;;
esac
