#!/usr/bin/env bash
# Runs pipestack's and gVisor's forwarding benchmarks (IPv4, and IPv6 as
# "v6 …" rows; one flow, 64 and 4,096 flows in round robin) in one run and
# prints, per scenario, the median packets/s of each, the median of the
# same-round ratios (the pass criterion: the machine is shared and noisy,
# so only ratios of measurements taken seconds apart count), the same for
# the CPU time per packet (cpu-ns/pkt: the process's CPU time, which the
# time spent waiting for a CPU on a loaded machine does not inflate) and
# the median allocs/op of each; then the ratios of the three flow counts
# side by side.
#
# The test binary is built once. Each of COUNT rounds runs, for each group
# (framing and size: ip/46B, eth/1500B, v6 ip/62B, ...), gVisor's three
# flow counts and then ours, back to back, so the two stacks of a scenario
# are measured seconds apart and a change in the machine's load between
# minutes hits both alike (go test -count N would run each benchmark N
# times in a row, and one stack minutes after the other).
#
#   bench/ratio.sh            # 5 rounds, 1 s per benchmark (~6 min)
#   COUNT=10 BENCHTIME=2s bench/ratio.sh
#   SCENARIOS='ip/46B 6/ip/62B' bench/ratio.sh   # a subset ("6/" = IPv6)
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-1s}
groups=${SCENARIOS:-ip/46B ip/1500B eth/46B eth/1500B 6/ip/62B 6/ip/1500B 6/eth/62B 6/eth/1500B}
out=$(mktemp)
bin=$(mktemp)
trap 'rm -f "$out" "$bin"' EXIT
go test -c -o "$bin" .
for i in $(seq "$COUNT"); do
	echo "== round $i of $COUNT" | tee -a "$out"
	for g in $groups; do
		v=""
		case $g in 6/*) v=6 g=${g#6/} ;; esac
		"$bin" -test.run '^$' -test.bench "^BenchmarkForward${v}(GVisor|Pipestack)\$/^${g%%/*}\$/^${g#*/}\$" \
			-test.benchmem -test.benchtime "$BENCHTIME" -test.timeout 0 | grep '^Benchmark' | tee -a "$out"
	done
done
echo
rows=$(awk '
/^== round/ { round=$3; rounds[round]=1 }
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	pps=""; allocs=""; cpu=""
	for (i=2; i<=NF; i++) { if ($i=="pps") pps=$(i-1); if ($i=="allocs/op") allocs=$(i-1); if ($i=="cpu-ns/pkt") cpu=$(i-1) }
	split(name, p, "/"); impl=p[1]; sub(/^BenchmarkForward/, "", impl)
	scen=substr(name, index(name, "/")+1)
	if (impl ~ /^6/) { impl=substr(impl, 2); scen="v6 " scen }   # BenchmarkForward6*: IPv6
	flows=1; if (match(scen, /\/[0-9]+flows$/)) { flows=substr(scen, RSTART+1, RLENGTH-6); scen=substr(scen, 1, RSTART-1) }
	sf=scen SUBSEP flows; key=impl SUBSEP sf
	n[key]++; v[key, n[key]]=pps; a[key, n[key]]=allocs; byround[key, round]=pps; cpuround[key, round]=cpu
	scens[sf]=1
}
function median(arr, key, m,   i, j, t, x) {
	if (!m) return -1
	for (i=1; i<=m; i++) x[i]=arr[key, i]+0
	for (i=1; i<=m; i++) for (j=i+1; j<=m; j++) if (x[j]<x[i]) { t=x[i]; x[i]=x[j]; x[j]=t }
	return (m%2) ? x[(m+1)/2] : (x[m/2]+x[m/2+1])/2
}
END {
	for (sf in scens) {
		split(sf, q, SUBSEP)
		ps="Pipestack" SUBSEP sf; gv="GVisor" SUBSEP sf
		k=0; kc=0; delete r; delete rc
		for (rd in rounds) {
			if ((ps, rd) in byround && (gv, rd) in byround && byround[gv, rd] > 0) r[sf, ++k]=byround[ps, rd]/byround[gv, rd]
			if (cpuround[ps, rd] > 0 && cpuround[gv, rd] > 0) rc[sf, ++kc]=cpuround[gv, rd]/cpuround[ps, rd]
		}
		printf "%s\t%d\t%.0f\t%.0f\t%.1f\t%g\t%g\t%.1f\n", q[1], q[2], median(v, ps, n[ps]), median(v, gv, n[gv]), median(r, sf, k), median(a, ps, n[ps]), median(a, gv, n[gv]), (kc ? median(rc, sf, kc) : 0)
	}
}' "$out" | sort -t$'\t' -k1,1 -k2,2n)
printf "%-12s %6s %14s %14s %8s %10s %16s %13s\n" "scenario" "flows" "pipestack pps" "gvisor pps" "ratio" "cpu ratio" "pipestack allocs" "gvisor allocs"
awk -F'\t' '{ printf "%-12s %6d %14.0f %14.0f %7.1fx %9.1fx %16g %13g\n", $1, $2, $3, $4, $5, $8, $6, $7 }' <<<"$rows"
echo
echo "(ratio: the median over rounds of pipestack pps / gVisor pps of the same round;"
echo " cpu ratio: the same for gVisor's cpu-ns/pkt / pipestack's)"
printf "%-12s %9s %9s %11s   %9s %9s %11s\n" "ratio" "1 flow" "64 flows" "4096 flows" "cpu 1" "cpu 64" "cpu 4096"
awk -F'\t' '
{ r[$1, $2]=$5; c[$1, $2]=$8; if (!($1 in seen)) { seen[$1]=1; order[++k]=$1 } }
END { for (i=1; i<=k; i++) { s=order[i]; printf "%-12s %8.1fx %8.1fx %10.1fx   %8.1fx %8.1fx %10.1fx\n", s, r[s, 1], r[s, 64], r[s, 4096], c[s, 1], c[s, 64], c[s, 4096] } }' <<<"$rows"
