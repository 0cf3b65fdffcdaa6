#!/bin/bash
# instr.sh — user-space instructions per proxied request, counted by valgrind's cachegrind on
# the real proxy process (issue 10; docs/performance.md, "Instructions per request of the real
# proxy").
#
#   bash bench/lowrate/instr.sh BINDIR... [nginx]
#
# Same setup as ab.sh (env.sh): straitd with one Gateway route to fortio's echo server. Each
# BINDIR's strait-proxy (router mode, GOMAXPROCS=1, GOGC=off) runs under cachegrind twice, once
# serving 1,000 and once 6,000 requests (fortio, 300 rps over 4 connections, or CONNS, 1 KiB POST bodies,
# after 200 to warm up); the difference over 5,000 is the instructions per request, start-up
# and shutdown cancelling out. "nginx" counts nginx (one process, proxybench's configuration)
# the same way. Prints the total and the packages with most instructions (strait-proxy) or the
# functions (nginx), and the L1 instruction and data cache misses per request that cachegrind
# simulates with the host's cache geometry (the instruction misses are, once a request's code
# outgrows the L1i, the distinct code lines it runs through). The counts do not depend on the
# machine's load; a run takes ~1.5 min.
# CACHE="--I1=32768,8,64 --D1=..." simulates other cache geometries than the host's (cachegrind
# options), to see how far a request's code outgrows the L1i.
# KEEP=DIR keeps each BINDIR's cachegrind files as DIR/$(basename BINDIR).{1000,6000}.
# Needs: go, taskset, curl, valgrind, python3 (and nginx for the nginx row).
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,15p "$0"; exit 2; }
. "$(dirname "$0")/env.sh"
# count NAME N OUT CMD...: CMD under cachegrind, serving N requests on the port in $PORT.
count() {
	local n=$2 out=$3; shift 3
	taskset -c 1 valgrind --tool=cachegrind --cache-sim=yes ${CACHE:-} --cachegrind-out-file="$out" "$@" >"$W/vg.log" 2>&1 &
	local vp=$!
	for _ in $(seq 300); do curl -s -o /dev/null -m 1 -d x "http://127.0.0.1:$PORT/echo" && break; sleep 0.2; done
	taskset -c 0 "$W/fortio" load -qps 300 -c "${CONNS:-4}" -n 200 -payload-size 1024 -logger-json=false "http://127.0.0.1:$PORT/echo" >/dev/null 2>&1
	taskset -c 0 "$W/fortio" load -qps 300 -c "${CONNS:-4}" -n "$n" -payload-size 1024 -logger-json=false "http://127.0.0.1:$PORT/echo" >"$W/load.log" 2>&1
	grep -q "Code 200 : $n " "$W/load.log" || { echo "$1: not every request answered 200 (the count includes the others):" >&2; grep -E "^Code" "$W/load.log" >&2; }
	kill "$SIG" $vp; wait $vp 2>/dev/null || true
}
report() { # report NAME BIG SMALL
	python3 - "$@" <<'PY'
import collections, re, sys
def load(p):
    d = collections.Counter(); fn = None
    for line in open(p):
        if line.startswith('fn='): fn = line[3:].strip()
        elif line[:1].isdigit() and fn:
            f = line.split()
            if len(f) >= 2: d[fn] += int(f[1])
    return d
name, a, b = sys.argv[1], load(sys.argv[2]), load(sys.argv[3])
per = {k: (a[k] - b[k]) / 5000 for k in set(a) | set(b)}
gc = re.compile(r'^runtime\.(.*(scan|mark|gc|GC|findObject|greyobject|heapBits|tryDefer|wbBuf|sweep|Span|span))')
tot = sum(v for k, v in per.items() if not gc.match(k))
g = sum(v for k, v in per.items() if gc.match(k))
groups = collections.Counter()
for k, v in per.items():
    if gc.match(k): continue
    k = k.replace('github.com/strait-mesh/strait/proxy/', '')
    m = re.match(r'([a-z0-9_/]+)\.', k)
    groups[m.group(1) if m and name != 'nginx' else k] += v
print("%s: %.0f instructions per request (the collector's marking, which GOGC=off leaves to start-up's forced cycles, %.0f apart)" % (name, tot, g))
def summary(p):
    for line in open(p):
        if line.startswith('summary:'):
            return [int(x) for x in line.split()[1:]]
sa, sb = summary(sys.argv[2]), summary(sys.argv[3])
if sa and len(sa) >= 9:
    # events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw, with the host's cache geometry
    i1 = (sa[1] - sb[1]) / 5000
    d1 = (sa[4] - sb[4] + sa[7] - sb[7]) / 5000
    print("  L1 misses per request (the host's cache geometry): instruction %.0f, data %.0f" % (i1, d1))
print("  " + ", ".join("%s %.0f" % kv for kv in groups.most_common(12)))
PY
}
PORT=$GW_PORT SIG=-TERM
for d in "$@"; do
	if [ "$d" = nginx ]; then
		nginx_conf
		sed -i 's/^worker_processes 1;/worker_processes 1;\nmaster_process off;/' "$W/ng/nginx.conf"
		PORT=$NGINX_PORT SIG=-QUIT
		for n in 1000 6000; do count nginx $n "$W/cg.nginx.$n" nginx -c "$W/ng/nginx.conf" -g "daemon off;"; done
		report nginx "$W/cg.nginx.6000" "$W/cg.nginx.1000"
		PORT=$GW_PORT SIG=-TERM
		continue
	fi
	for n in 1000 6000; do
		GOMAXPROCS=1 GOGC=off count "$d" $n "$W/cg.$n" "$d/strait-proxy" --xds-address 127.0.0.1:$XDS_PORT --mode router \
			--namespace bench --workload-name single --labels bench=single --admin-address 127.0.0.1:$ADMIN_PORT
	done
	report "$d" "$W/cg.6000" "$W/cg.1000"
	if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; for n in 1000 6000; do cp "$W/cg.$n" "$KEEP/$(basename "$d").$n"; done; fi
done
