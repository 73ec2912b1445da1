#!/usr/bin/env bash
# Runs BenchmarkFilterSetCost (filter_setcost_test.go: flows to consecutive
# destinations) and BenchmarkFilterSetCostScattered (filter_setscatter_test.go:
# flows and set elements scattered over 198.18.0.0/15) COUNT times, each
# time in a fresh process (fresh routers, fresh memory layout), and prints
# per set the ratios each run measured — every one a median over ROUNDS
# paired rounds of the same-round ratio, the set's router and the
# baselines' interleaved in ~0.2 ms chunks — and their medians over runs,
# with the load average around each run (the sets' lookups miss the cache
# where the rules' do not, so the ratios grow with the machine's memory
# traffic; the control's ratio is the method's own error).
#
#   bench/setcost_ratio.sh                  # 5 runs of 300 rounds, both (~1.5 min quiet)
#   COUNT=3 ROUNDS=1000 bench/setcost_ratio.sh
#   DST=scattered bench/setcost_ratio.sh    # DST=consecutive|scattered|both (default)
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-5}
ROUNDS=${ROUNDS:-300}
case ${DST:-both} in
consecutive) bench='^BenchmarkFilterSetCost$' ;;
scattered) bench='^BenchmarkFilterSetCostScattered$' ;;
both) bench='^BenchmarkFilterSetCost(Scattered)?$' ;;
*) echo "DST=$DST: consecutive, scattered or both" >&2; exit 2 ;;
esac
out=$(mktemp)
bin=$(mktemp)
trap 'rm -f "$out" "$bin"' EXIT
go test -c -o "$bin" .
for i in $(seq "$COUNT"); do
	l0=$(cut -d' ' -f1 /proc/loadavg)
	"$bin" -test.run '^$' -test.bench "$bench" -test.benchmem -test.benchtime "${ROUNDS}x" -test.count 1 -test.timeout 0 |
		grep '^Benchmark' >"$out.run"
	echo "== run $i of $COUNT load $l0 $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out"
	tee -a "$out" <"$out.run"
	rm -f "$out.run"
done
echo
awk '
/^== run/ { run=$3; runs[run]=1; load[run]=$7 "→" $8 }
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	dst="consecutive"; if (name ~ /^BenchmarkFilterSetCostScattered\//) dst="scattered"
	sub(/^BenchmarkFilterSetCost(Scattered)?\//, "", name); name="dst=" dst " " name
	if (!(name in seen)) { seen[name]=1; order[++ns]=name }
	for (i=2; i<=NF; i++) {
		if ($i ~ /\/|ns\/pkt$/) v[name, $i, run]=$(i-1)
		if ($i ~ /^set\/d[0-9]+$/ && $i != "set/d32") { h=$i; sub(/^set\//, "", h); half[name]=h }
	}
	allocs[name, run]=$(NF-1)
}
function med(name, unit,   r, k, x, i, j, t) {
	k=0
	for (r in runs) if ((name, unit, r) in v) x[++k]=v[name, unit, r]+0
	for (i=1; i<=k; i++) for (j=i+1; j<=k; j++) if (x[j]<x[i]) { t=x[i]; x[i]=x[j]; x[j]=t }
	if (!k) return -1
	return (k%2) ? x[(k+1)/2] : (x[k/2]+x[k/2+1])/2
}
END {
	for (s=1; s<=ns; s++) {
		name=order[s]; h=half[name]
		split("none-ns/pkt d32-ns/pkt " h "-ns/pkt set-ns/pkt set/d32 set/" h " set-extra/" h "-extra other-cpu-ns/pkt", units, " ")
		printf "%s\n%-5s %-11s", name, "run", "load"
		for (u=1; u<=8; u++) printf " %12s", units[u]
		printf " %6s\n", "allocs"
		for (r=1; r in runs; r++) {
			printf "%-5d %-11s", r, load[r]
			for (u=1; u<=8; u++) printf " %12.3f", v[name, units[u], r]
			printf " %6s\n", allocs[name, r]
		}
		printf "%-17s", "median"
		for (u=1; u<=8; u++) printf " %12.3f", med(name, units[u])
		printf "\n\n"
	}
	print "(ns/pkt: the thread CPU time per packet of each router, the median over a run'"'"'s rounds; set/d32, set/d21:"
	print " the median of the same-round ratios; set-extra/d21-extra: (set − none) / (d21 − none), what the set rule"
	print " adds to the empty chain against what one rule matching as many flows adds; other-cpu: the CPU time of"
	print " the process'"'"'s other threads per packet. control-d21: the set side is a second -d /21 router."
	print " dst=scattered: the half rule is -d 198.18.0.0/16, d16, and its control a second d16 router)"
}' "$out"
