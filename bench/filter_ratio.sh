#!/usr/bin/env bash
# Runs the FORWARD-chain filter benchmarks of both stacks
# (BenchmarkForwardFilter{GVisor,Pipestack}, filter_scenario_test.go) in one
# run and prints, per case, the median pps and cpu-ns/pkt of each and the
# median of the same-round ratios; then what the filter issue asks about:
#
#   - the empty filter section: ours with an empty FORWARD chain (0rules)
#     against ours without a filter section (nofilter), same round, as a
#     rate (pps) and as CPU per packet;
#   - each side's per-rule slope: (cpu-ns/pkt at 1,000 rules − at 0 rules)
#     / 1,000, per round, and the ratio gVisor's / ours, per shape.
#
# The test binary is built once. Each of COUNT rounds runs the groups in
# turn (nofilter with 0rules, then each shape and rule count), gVisor's case
# and then ours in one invocation, so the two stacks of a case are measured
# seconds apart on this shared, noisy machine.
#
#   bench/filter_ratio.sh                 # 3 rounds, 1 s per benchmark (~4 min)
#   COUNT=5 BENCHTIME=2s bench/filter_ratio.sh
#   CASES='dst/1000rules dport/1000rules' bench/filter_ratio.sh   # a subset (slopes need 0rules too)
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-1s}
cases=${CASES:-"(nofilter|0rules)"}
if [ -z "${CASES:-}" ]; then
	for shape in dst dst-last dport dport-last; do
		for n in 10 100 1000; do cases="$cases $shape/${n}rules"; done
	done
fi
out=$(mktemp)
bin=$(mktemp)
trap 'rm -f "$out" "$bin"' EXIT
go test -c -o "$bin" .
for i in $(seq "$COUNT"); do
	echo "== round $i of $COUNT" | tee -a "$out"
	for c in $cases; do
		pat="^BenchmarkForwardFilter(GVisor|Pipestack)\$"
		IFS=/ read -ra parts <<<"$c"
		for p in "${parts[@]}"; do pat="$pat/^$p\$"; done
		"$bin" -test.run '^$' -test.bench "$pat" -test.benchmem -test.benchtime "$BENCHTIME" -test.timeout 0 |
			grep '^Benchmark' | tee -a "$out"
	done
done
echo
awk '
/^== round/ { round=$3; rounds[round]=1 }
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	pps=""; allocs=""; cpu=""
	for (i=2; i<=NF; i++) { if ($i=="pps") pps=$(i-1); if ($i=="allocs/op") allocs=$(i-1); if ($i=="cpu-ns/pkt") cpu=$(i-1) }
	impl=substr(name, 1, index(name, "/")-1); sub(/^BenchmarkForwardFilter/, "", impl)
	c=substr(name, index(name, "/")+1)
	if (!(c in seen)) { seen[c]=1; order[++nc]=c }
	key=impl SUBSEP c
	n[key]++; P[key, n[key]]=pps; C[key, n[key]]=cpu; A[key, n[key]]=allocs
	pr[key, round]=pps; cr[key, round]=cpu
}
function med(arr, key, m,   i, j, t, x) {
	if (!m) return -1
	for (i=1; i<=m; i++) x[i]=arr[key, i]+0
	for (i=1; i<=m; i++) for (j=i+1; j<=m; j++) if (x[j]<x[i]) { t=x[i]; x[i]=x[j]; x[j]=t }
	return (m%2) ? x[(m+1)/2] : (x[m/2]+x[m/2+1])/2
}
# sameround: the median over rounds of f(a, b) for two keys measured in one round.
function sameround(arr, ka, kb, op,   rd, k, r, va, vb) {
	k=0; delete r
	for (rd in rounds) {
		if (!((ka, rd) in arr) || !((kb, rd) in arr)) continue
		va=arr[ka, rd]+0; vb=arr[kb, rd]+0
		if (op=="div" && vb > 0) r["x", ++k]=va/vb
		if (op=="slope") r["x", ++k]=(va-vb)/1000
	}
	return med(r, "x", k)
}
function slopes(impl, c) {
	return sameround(cr, impl SUBSEP c, impl SUBSEP "0rules", "slope")
}
END {
	printf "%-22s %12s %12s %10s %10s %9s %9s %8s %8s\n", "case (4096 flows, ip/46B)", "ours pps", "gVisor pps", "ours cpu", "gV cpu", "cpu ratio", "pps ratio", "ours al", "gV al"
	for (i=1; i<=nc; i++) {
		c=order[i]; ps="Pipestack" SUBSEP c; gv="GVisor" SUBSEP c
		printf "%-22s %12.0f %12.0f %10.0f %10.0f %8.1fx %8.1fx %8g %8g\n", c, med(P, ps, n[ps]), med(P, gv, n[gv]), med(C, ps, n[ps]), med(C, gv, n[gv]), sameround(cr, gv, ps, "div"), sameround(pr, ps, gv, "div"), med(A, ps, n[ps]), med(A, gv, n[gv])
	}
	print ""
	print "(cpu: cpu-ns/pkt, the process CPU time per packet; cpu ratio: gVisor / ours, pps ratio: ours / gVisor,"
	print " each the median over rounds of the same-round ratio; al: allocs/op)"
	print ""
	if (("Pipestack", "nofilter") in n && ("Pipestack", "0rules") in n) {
		printf "empty filter section, ours: rate %.1f%% of no filter (pps, same round), CPU/pkt %.1f%% of it\n", 100*sameround(pr, "Pipestack" SUBSEP "0rules", "Pipestack" SUBSEP "nofilter", "div"), 100*sameround(cr, "Pipestack" SUBSEP "0rules", "Pipestack" SUBSEP "nofilter", "div")
		printf "gVisor, 0 rules (iptables on) against off: rate %.1f%%, CPU/pkt %.1f%%\n", 100*sameround(pr, "GVisor" SUBSEP "0rules", "GVisor" SUBSEP "nofilter", "div"), 100*sameround(cr, "GVisor" SUBSEP "0rules", "GVisor" SUBSEP "nofilter", "div")
		print ""
	}
	printf "%-12s %16s %16s %14s\n", "slope 0→1000", "ours ns/rule", "gVisor ns/rule", "gVisor / ours"
	split("dst dst-last dport dport-last", shapes, " ")
	for (i=1; i<=4; i++) {
		c=shapes[i] "/1000rules"
		if (!(("Pipestack", c) in n) || !(("Pipestack", "0rules") in n)) continue
		so=slopes("Pipestack", c); sg=slopes("GVisor", c)
		# the ratio of the slopes, per round
		k=0; delete rr
		for (rd in rounds) {
			a=(cr["Pipestack", c, rd]-cr["Pipestack", "0rules", rd])/1000; g=(cr["GVisor", c, rd]-cr["GVisor", "0rules", rd])/1000
			if (a > 0) rr["x", ++k]=g/a
		}
		printf "%-12s %16.1f %16.1f %13.1fx\n", shapes[i], so, sg, med(rr, "x", k)
	}
	print "(slope: (cpu-ns/pkt at 1,000 rules − at 0 rules) / 1,000, the median over rounds; the last column the median of the same-round ratios)"
}' "$out"
