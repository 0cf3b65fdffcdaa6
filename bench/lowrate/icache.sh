#!/bin/bash
# icache.sh — L1 instruction-cache lines fetched, instructions and L1 data misses per request, by
# function, in proxy/l7's BenchmarkLoopback/proxy_cluster_post, simulated by valgrind's cachegrind
# with the host's cache geometry over 6000 − 1000 requests (issue 10; docs/performance.md, "Where
# the user time goes"). Once the code a request runs through outgrows the L1i, its instruction
# misses are the distinct 64-byte lines of code each function touches per request. Layout moves
# a function's count by a line or two from one build to the next.
#
#   bash bench/lowrate/icache.sh [DIR] [FUNC_REGEX]
#
# DIR is the tree to build (default: this one); FUNC_REGEX picks the functions (default: the
# proxy's packages). Needs: go, valgrind, python3. ~25 s.
set -euo pipefail
D=${1:-$(cd "$(dirname "$0")/../.." && pwd)}; RE=${2:-strait/proxy/}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
(cd "$D" && go test -c -o "$T/l7.test" ./proxy/l7)
for n in 1000 6000; do
	GOMAXPROCS=1 GOGC=off valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file="$T/cg.$n" \
		"$T/l7.test" -test.run '^$' -test.bench 'Loopback/proxy_cluster_post$' -test.benchtime ${n}x >/dev/null 2>&1
done
python3 - "$T" "$RE" <<'PY'
import collections, re, sys
T, RE = sys.argv[1], sys.argv[2]
def load(p):
    # events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
    d, fn = collections.defaultdict(lambda: [0] * 9), None
    for line in open(p):
        if line.startswith('fn='):
            fn = line[3:].strip()
        elif line[:1].isdigit() and fn:
            for i, x in enumerate(line.split()[1:]):
                d[fn][i] += int(x)
    return d
a, b = load(T + '/cg.6000'), load(T + '/cg.1000')
rows = []
for k, v in a.items():
    if not re.search(RE, k): continue
    w = b.get(k, [0] * 9)
    rows.append(((v[1] - w[1]) / 5000, (v[0] - w[0]) / 5000, (v[4] - w[4] + v[7] - w[7]) / 5000,
                 k.replace('github.com/strait-mesh/strait/proxy/', '')))
rows.sort(reverse=True)
print("functions matching %r, per request: %.1f I1 lines, %.0f instructions, %.1f D1 misses" %
      (RE, sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows)))
for lines, ins, d1, k in rows[:60]:
    if lines >= 0.5:
        print("%6.1f lines %6.0f instructions %5.1f D1  %s" % (lines, ins, d1, k))
PY
