#!/bin/bash
# atomics.sh — atomic read-modify-write instructions (lock-prefixed, and xchg with memory: mutex
# Lock/Unlock, atomic Add/CompareAndSwap/Swap, and atomic stores, which Go compiles to xchg)
# executed per request, by function, in proxy/l7's BenchmarkLoopback/proxy_cluster_post (client →
# proxy → cluster → HTTP/1.1 pool → upstream, 1 KiB POST, in one process), counted by valgrind's
# callgrind per instruction over 6000 − 1000 requests (issue 10; docs/performance.md, "Where the
# user time goes").
#
#   bash bench/lowrate/atomics.sh [DIR] [FUNC_REGEX]
#
# DIR is the tree to build (default: this one); FUNC_REGEX picks the functions listed and summed
# (default: the proxy's packages). Needs: go, valgrind (callgrind), objdump, python3. ~30 s.
set -euo pipefail
D=${1:-$(cd "$(dirname "$0")/../.." && pwd)}; RE=${2:-strait/proxy/}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
(cd "$D" && go test -c -o "$T/l7.test" ./proxy/l7)
objdump -d --no-show-raw-insn "$T/l7.test" >"$T/objd.txt"
for n in 1000 6000; do
	# asyncpreemptoff: callgrind does not survive Go's preemption signals.
	GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 GOGC=off valgrind --tool=callgrind --dump-instr=yes \
		--callgrind-out-file="$T/cg.$n" "$T/l7.test" -test.run '^$' \
		-test.bench 'Loopback/proxy_cluster_post$' -test.benchtime ${n}x >/dev/null 2>&1
done
python3 - "$T" "$RE" <<'PY'
import collections, re, sys
T, RE = sys.argv[1], sys.argv[2]
sites, fn = {}, None
for line in open(T + '/objd.txt'):
    m = re.match(r'[0-9a-f]+ <(.*)>:', line)
    if m:
        fn = m.group(1); continue
    m = re.match(r'\s*([0-9a-f]+):\s+(\S+)', line)
    if m and (m.group(2) == 'lock' or (m.group(2).startswith('xchg') and '(' in line)):
        sites[int(m.group(1), 16)] = fn
def load(p):
    # callgrind's "positions: instr line": each cost line starts with an address (absolute,
    # +/- relative, or * for the same); the line after calls= is a call's inclusive cost.
    cnt, addr, skip = collections.Counter(), 0, False
    for line in open(p):
        if line.startswith('calls='):
            skip = True; continue
        t = line.split()
        if not t: continue
        s = t[0]
        if s.startswith('0x'): a = int(s, 16)
        elif s[0] in '+-' and s[1:].isdigit(): a = addr + int(s)
        elif s == '*': a = addr
        else: continue
        addr = a
        if skip:
            skip = False; continue
        if len(t) > 2 and t[2].isdigit(): cnt[a] += int(t[2])
    return cnt
a, b = load(T + '/cg.6000'), load(T + '/cg.1000')
by = collections.Counter()
for addr, f in sites.items():
    d = (a.get(addr, 0) - b.get(addr, 0)) / 5000
    if d: by[f] += d
sel = sum(v for k, v in by.items() if re.search(RE, k))
print("atomic read-modify-writes per request: %.1f in all, %.1f in functions matching %r" % (sum(by.values()), sel, RE))
for k, v in by.most_common():
    if v >= 0.5 and re.search(RE, k):
        print("%5.1f %s" % (v, k.replace('github.com/strait-mesh/strait/proxy/', '')))
PY
