#!/usr/bin/env bash
# Runs pipestack's and gVisor's forwarding benchmarks (IPv4, and IPv6 as
# "v6 …" rows) in one run and prints,
# per scenario, the median packets/s of each and the ratio (the pass
# criterion: the machine is shared and noisy, so only same-run ratios count).
#
#   bench/ratio.sh            # 5 runs of 1 s each per benchmark
#   COUNT=10 BENCHTIME=2s bench/ratio.sh
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-1s}
out=$(mktemp)
go test -run '^$' -bench "${BENCH:-Forward}" -benchmem -count "$COUNT" -benchtime "$BENCHTIME" . | tee "$out"
echo
printf "%-12s %14s %14s %8s\n" "scenario" "pipestack pps" "gvisor pps" "ratio"
awk '
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	for (i=2; i<=NF; i++) if ($i=="pps") pps=$(i-1)
	split(name, p, "/"); impl=p[1]; sub(/^Benchmark[A-Za-z]*Forward/, "", impl); sub(/^BenchmarkForward/, "", impl)
	scen=substr(name, index(name, "/")+1)
	if (impl ~ /^6/) { impl=substr(impl, 2); scen="v6 " scen }   # BenchmarkForward6*: IPv6
	key=impl SUBSEP scen; n[key]++; v[key, n[key]]=pps; scens[scen]=1; impls[impl]=1
}
function median(key,   m, i, j, t, a) {
	m=n[key]; for (i=1; i<=m; i++) a[i]=v[key, i]
	for (i=1; i<=m; i++) for (j=i+1; j<=m; j++) if (a[j]<a[i]) { t=a[i]; a[i]=a[j]; a[j]=t }
	return (m%2) ? a[(m+1)/2] : (a[m/2]+a[m/2+1])/2
}
END {
	for (s in scens) {
		ps=median("Pipestack" SUBSEP s); gv=median("GVisor" SUBSEP s)
		printf "%-12s %14.0f %14.0f %7.1fx\n", s, ps, gv, (gv>0 ? ps/gv : 0)
	}
}' "$out" | sort
rm -f "$out"
