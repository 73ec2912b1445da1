#!/usr/bin/env bash
# Runs BenchmarkTCPBulkPair (tcp_bulkpair_test.go) COUNT times, each time
# in a fresh process (fresh stacks and connections), and prints per case
# the figures each run measured — each side's MB/s and CPU µs per 64 KiB
# (medians over ROUNDS rounds), the medians of the same-round ratios
# (A/B by throughput, B/A by CPU: above 1 where A is the better), the idle
# pairs' and the turns' tails' CPU — and their medians over runs, with the
# load average around each run. The pipestack-pipestack and gvisor-gvisor
# cases are the controls: their ratios are the method's own error.
#
#   bench/tcpbulk_ratio.sh                   # 5 runs of 200 rounds of 4 MiB per side (~4 min)
#   COUNT=3 ROUNDS=400 MIB=8 bench/tcpbulk_ratio.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${COUNT:=5}" "${ROUNDS:=200}" "${MIB:=4}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/all
go test -c -o "$tmp/bench.test" .
load() { cut -d' ' -f1 /proc/loadavg; }
i=0
while ((i++ < COUNT)); do
	l0=$(load)
	"$tmp/bench.test" -test.run '^$' -test.bench '^BenchmarkTCPBulkPair$' -test.benchmem \
		-test.benchtime "${ROUNDS}x" -test.count 1 -test.timeout 0 -tcppair.mib "$MIB" >"$tmp/run"
	echo "== run $i of $COUNT load $l0 $(load)" | tee -a "$out"
	grep '^Benchmark' "$tmp/run" | tee -a "$out"
done
echo
awk -v mib="$MIB" -v rounds="$ROUNDS" '
# sorted[key, 1..n[key]]: the values of one case and metric over the runs, kept in order
function add(key, x,   i) {
	for (i=++n[key]; i>1 && sorted[key, i-1]>x; i--) sorted[key, i]=sorted[key, i-1]
	sorted[key, i]=x
}
/^== run/ { run=$3; runs[run]=1; load[run]=$7 "→" $8 }
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkTCPBulkPair\//, "", name)
	if (!(name in seen)) { seen[name]=1; order[++ns]=name }
	for (i=2; i<=NF; i++) if ($i ~ /^(A|B)/ || $i ~ /-%$/) { v[name, $i, run]=$(i-1); add(name SUBSEP $i, $(i-1)+0) }
}
function med(name, unit,   key, k) {
	key=name SUBSEP unit; k=n[key]
	if (!k) return -1
	return (k%2) ? sorted[key, (k+1)/2] : (sorted[key, k/2]+sorted[key, k/2+1])/2
}
function row(label, ld, name, r) {
	printf "%-7s %-11s %9.0f %9.0f %9.3f %9.1f %9.1f %9.3f %7.2f %7.2f\n", label, ld,
		get(name, "A-MB/s", r), get(name, "B-MB/s", r), get(name, "A/B-MB/s", r),
		get(name, "A-cpu-ns/64KiB", r)/1e3, get(name, "B-cpu-ns/64KiB", r)/1e3, get(name, "B/A-cpu", r),
		get(name, "idle-cpu-%", r), get(name, "tail-cpu-%", r)
}
function get(name, unit, r) { return r ? v[name, unit, r] : med(name, unit) }
END {
	for (s=1; s<=ns; s++) {
		name=order[s]
		printf "%s\n%-7s %-11s %9s %9s %9s %9s %9s %9s %7s %7s\n", name, "run", "load",
			"A-MB/s", "B-MB/s", "A/B-MB/s", "A-µs/64K", "B-µs/64K", "B/A-cpu", "idle-%", "tail-%"
		for (r=1; r in runs; r++) row(r, load[r], name, r)
		row("median", "", name, 0)
		printf "\n"
	}
	printf "(A, B: the two sides of pair=A-B, each transferring %d MiB per turn, A and B in turn, %d rounds per run;\n", mib, rounds
	print " MB/s and µs/64K: the wall clock and the process CPU clock per turn, medians over a run'"'"'s rounds;"
	print " A/B-MB/s, B/A-cpu: the medians of the same-round ratios; idle-%: the process'"'"'s CPU, in % of one CPU,"
	print " with every pair established and idle; tail-%: the CPU of the 1 ms after each turn, in % of the turns'"'"')"
}' "$out"
