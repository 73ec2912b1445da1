#!/usr/bin/env bash
# Runs pipestack's and gVisor's forwarding benchmarks (IPv4, and IPv6 as
# "v6 …" rows; one flow, 64 and 4,096 flows in round robin) in one run and
# prints, per scenario, the median packets/s of each, the ratio (the pass
# criterion: the machine is shared and noisy, so only same-run ratios
# count) and the median allocs/op of each; then the ratios of the three
# flow counts side by side.
#
# The test binary is built once and run COUNT times, each run every
# benchmark once (rounds interleaved, so a change in the machine's load
# between minutes hits both stacks alike, rather than -count N, which runs
# each benchmark N times in a row).
#
#   bench/ratio.sh            # 5 rounds, 1 s per benchmark (~6 min)
#   COUNT=10 BENCHTIME=2s bench/ratio.sh
#   BENCH='Forward/ip/46B' bench/ratio.sh   # a subset (a go test -bench pattern)
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-1s}
out=$(mktemp)
bin=$(mktemp)
trap 'rm -f "$out" "$bin"' EXIT
go test -c -o "$bin" .
for i in $(seq "$COUNT"); do
	echo "== round $i of $COUNT"
	"$bin" -test.run '^$' -test.bench "${BENCH:-Forward}" -test.benchmem -test.benchtime "$BENCHTIME" -test.timeout 0 | tee -a "$out"
done
echo
rows=$(awk '
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	pps=""; allocs=""
	for (i=2; i<=NF; i++) { if ($i=="pps") pps=$(i-1); if ($i=="allocs/op") allocs=$(i-1) }
	split(name, p, "/"); impl=p[1]; sub(/^BenchmarkForward/, "", impl)
	scen=substr(name, index(name, "/")+1)
	if (impl ~ /^6/) { impl=substr(impl, 2); scen="v6 " scen }   # BenchmarkForward6*: IPv6
	flows=1; if (match(scen, /\/[0-9]+flows$/)) { flows=substr(scen, RSTART+1, RLENGTH-6); scen=substr(scen, 1, RSTART-1) }
	key=impl SUBSEP scen SUBSEP flows; n[key]++; v[key, n[key]]=pps; a[key, n[key]]=allocs
	scens[scen SUBSEP flows]=1
}
function median(arr, key,   m, i, j, t, x) {
	m=n[key]; if (!m) return -1
	for (i=1; i<=m; i++) x[i]=arr[key, i]+0
	for (i=1; i<=m; i++) for (j=i+1; j<=m; j++) if (x[j]<x[i]) { t=x[i]; x[i]=x[j]; x[j]=t }
	return (m%2) ? x[(m+1)/2] : (x[m/2]+x[m/2+1])/2
}
END {
	for (sf in scens) {
		split(sf, q, SUBSEP)
		ps=median(v, "Pipestack" SUBSEP sf); gv=median(v, "GVisor" SUBSEP sf)
		printf "%s\t%d\t%.0f\t%.0f\t%.1f\t%g\t%g\n", q[1], q[2], ps, gv, (gv>0 ? ps/gv : 0), median(a, "Pipestack" SUBSEP sf), median(a, "GVisor" SUBSEP sf)
	}
}' "$out" | sort -t$'\t' -k1,1 -k2,2n)
printf "%-12s %6s %14s %14s %8s %16s %13s\n" "scenario" "flows" "pipestack pps" "gvisor pps" "ratio" "pipestack allocs" "gvisor allocs"
awk -F'\t' '{ printf "%-12s %6d %14.0f %14.0f %7.1fx %16g %13g\n", $1, $2, $3, $4, $5, $6, $7 }' <<<"$rows"
echo
printf "%-12s %9s %9s %11s\n" "ratio" "1 flow" "64 flows" "4096 flows"
awk -F'\t' '
{ r[$1, $2]=$5; if (!($1 in seen)) { seen[$1]=1; order[++k]=$1 } }
END { for (i=1; i<=k; i++) { s=order[i]; printf "%-12s %8.1fx %8.1fx %10.1fx\n", s, r[s, 1], r[s, 64], r[s, 4096] } }' <<<"$rows"
