#!/bin/bash
# lines.sh — the distinct 64-byte code lines a proxied request runs through (the request's
# instruction footprint), counted by valgrind's callgrind on the real proxy process (issue 10;
# docs/performance.md, "A request's code footprint").
#
#   bash bench/lowrate/lines.sh BINDIR... [nginx]
#
# Same setup as instr.sh (env.sh): each BINDIR's strait-proxy (router mode, GOMAXPROCS=1,
# GOGC=off, no asynchronous preemption: callgrind does not survive Go's signals) runs under
# callgrind --dump-instr twice, serving 1,000 and 6,000 requests (fortio, 300 rps over 4
# connections, 1 KiB POSTs, after 200 to warm up). The difference of each instruction's count
# over 5,000 is how often a request runs it; a code line (64 bytes) holding an instruction run
# at least every other request is in the footprint. Prints the footprint in lines and KiB, by
# package and the functions with most lines. Once the footprint outgrows the L1 instruction
# cache (64 KiB, 1,024 lines here), each request misses on roughly the lines beyond it
# (instr.sh's cachegrind counts those misses). Deterministic; ~1.5 min per build.
# TOP=N lists N functions (default 40); KEEP=DIR keeps the callgrind files.
# DETAIL=REGEX (go tool objdump -s syntax) prints the matching functions' instructions, each with
# how often a request runs it and "|" where its code line is in the footprint: the instructions
# a request skips but whose lines it loads anyway are the ones to move out of the way.
# The summary also counts the footprint's hot bytes (its size if packed) and its cold bytes by
# kind; COLD=REGEX (Python, on function names) lists each matching function's cold runs inside
# the footprint: bytes, kind, and the source lines of the run's first and last instruction.
# Needs: go, taskset, curl, valgrind (callgrind_control), python3 (and nginx for its row).
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,21p "$0"; exit 2; }
. "$(dirname "$0")/env.sh"
# count N OUT PORT CMD...: CMD under callgrind, serving N requests on PORT.
count() {
	local n=$1 out=$2 port=$3; shift 3
	taskset -c 1 valgrind --tool=callgrind --dump-instr=yes --dump-line=no --callgrind-out-file="$out" "$@" >"$W/vg.log" 2>&1 &
	local vp=$!
	for _ in $(seq 300); do curl -s -o /dev/null -m 1 -d x "http://127.0.0.1:$port/echo" && break; sleep 0.2; done
	taskset -c 0 "$W/fortio" load -qps 300 -c 4 -n 200 -payload-size 1024 -logger-json=false "http://127.0.0.1:$port/echo" >/dev/null 2>&1
	sleep "${SETTLE:-8}" # past the proxy's release of what start-up touched (memtrim; env.sh)
	taskset -c 0 "$W/fortio" load -qps 300 -c 4 -n "$n" -payload-size 1024 -logger-json=false "http://127.0.0.1:$port/echo" >"$W/load.log" 2>&1
	grep -q "Code 200 : $n " "$W/load.log" || { echo "not every request answered 200:" >&2; grep -E "^Code" "$W/load.log" >&2; }
	# A signal would end callgrind without its output: dump, then kill.
	callgrind_control -d $vp >/dev/null 2>&1
	for _ in $(seq 50); do [ -s "$out.1" ] && break; sleep 0.2; done
	sleep 0.5
	kill -KILL $vp 2>/dev/null || true
	wait $vp 2>/dev/null || true
}
report() { # report NAME BIG SMALL
	python3 - "$@" <<'PY'
import collections, os, re, sys
def load(p):
    ir, owner, names = collections.Counter(), {}, {}
    fn, addr, skip = '?', 0, False
    for line in open(p):
        if line.startswith(('fn=', 'cfn=')):
            m = re.match(r'c?fn=\((\d+)\)(?: (.*))?', line.strip())
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                name = names.get(m.group(1), '?')
            else:
                name = line.split('=', 1)[1].strip()
            if line[0] == 'f':
                fn = name
            continue
        if line.startswith('calls='):
            skip = True  # the next cost line is the call's inclusive cost
            continue
        if line[:1] in '0123456789+-*':
            parts = line.split()
            pos = parts[0]
            if pos.startswith('0x'):
                addr = int(pos, 16)
            elif pos[0] in '+-':
                d = int(pos[1:], 0)
                addr += d if pos[0] == '+' else -d
            if skip:
                skip = False
                continue
            if len(parts) > 1:
                ir[addr] += int(parts[1])
                owner[addr] = fn
    return ir, owner
name = sys.argv[1]
a, owner = load(sys.argv[2])
b, _ = load(sys.argv[3])
detail, binary = os.environ.get('DETAIL'), sys.argv[4] if len(sys.argv) > 4 else ''
hot = {ad for ad, v in a.items() if (v - b.get(ad, 0)) / 5000 >= 0.5}
lines = {ad >> 6 for ad in hot}
ins = []
if binary:
    # The binary's own symbols name each instruction's function: callgrind's function names
    # drift where the runtime switches goroutine stacks (gogo, mcall), and then put runtime
    # code under unrelated names.
    import bisect, subprocess
    fn = '?'
    for line in subprocess.run(['go', 'tool', 'objdump', binary], capture_output=True, text=True).stdout.splitlines():
        if line.startswith('TEXT '):
            fn = line.split()[1].removesuffix('(SB)')
            continue
        f = [x for x in re.split(r'\t+', line) if x.strip()]
        if len(f) >= 4 and f[1].startswith('0x'):
            ins.append((int(f[1], 16), len(f[2].strip()) // 2, f[3].strip(),
                        fn.replace('github.com/strait-mesh/strait/proxy/', ''), f[0].strip().split('/')[-1]))
    ins.sort()
    addrs = [x[0] for x in ins]
    for ad in hot:
        i = bisect.bisect_right(addrs, ad) - 1
        if i >= 0:
            owner[ad] = ins[i][3]
fnlines = collections.defaultdict(set)
for ad in hot:
    fnlines[re.sub(r"'\d+$", '', owner[ad])].add(ad >> 6)
# The runtime's share moves with timing (whether a goroutine finds its data ready or parks):
# the count without it is the steadier figure to compare builds by.
own = {ad >> 6 for ad in hot if not owner[ad].startswith(('runtime.', 'internal/runtime'))}
print("%s: %d code lines per request (%.0f KiB), %d outside the runtime" % (name, len(lines), len(lines) * 64 / 1024, len(own)))
pk = collections.Counter()
for f, s in fnlines.items():
    k = f.replace('github.com/strait-mesh/strait/proxy/', '')
    m = re.match(r'([a-z0-9_/]+)\.', k)
    pk[m.group(1) if m and name != 'nginx' else k] += len(s)
print("  " + ", ".join("%s %d" % kv for kv in pk.most_common(14)))
for f, s in sorted(fnlines.items(), key=lambda x: -len(x[1]))[:int(os.environ.get('TOP', '40'))]:
    print("  %4d %s" % (len(s), f.replace('github.com/strait-mesh/strait/proxy/', '')))
if binary:
    # Where the footprint's cold bytes are: the instructions a request does not run but whose
    # code lines it loads, in runs of one function's consecutive instructions, by what the run
    # holds (a write barrier's slow path, the stack-growth stub, a panic, another call, none).
    hb = sum(x[1] for x in ins if x[0] in hot)
    kinds, runs, i = collections.Counter(), [], 0
    while i < len(ins):
        if ins[i][0] in hot or ins[i][0] >> 6 not in lines:
            i += 1
            continue
        j = i
        while j < len(ins) and ins[j][3] == ins[i][3] and ins[j][0] not in hot:
            j += 1
        run = ins[i:j]
        n = sum(x[1] for x in run if x[0] >> 6 in lines)
        t = ' '.join(x[2] for x in run)
        k = ('write barrier' if 'gcWriteBarrier' in t else 'morestack' if 'morestack' in t else
             'panic' if 'panic' in t else 'call' if 'CALL' in t else 'padding' if all(x[2].startswith('INT') for x in run) else 'no call')
        kinds[k] += n
        runs.append((n, k, ins[i][3], run[0][4], run[-1][4]))
        i = j
    print("  hot bytes %d (%d lines if packed), density %.2f; cold bytes in the footprint's lines: %s" % (
        hb, (hb + 63) // 64, hb / 64 / len(lines), ", ".join("%s %d" % kv for kv in kinds.most_common())))
    cold = os.environ.get('COLD')
    if cold:
        for n, k, f, src, end in sorted(runs, reverse=True):
            if re.search(cold, f):
                print("  %5d %-13s %s %s%s" % (n, k, f, src, '' if end == src else ' .. ' + end))
if detail and binary:
    import subprocess
    out = subprocess.run(['go', 'tool', 'objdump', '-s', detail, binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = [x for x in re.split(r'\t+', line) if x.strip()]
        if len(f) >= 4 and f[1].startswith('0x'):
            ad = int(f[1], 16)
            runs = (a.get(ad, 0) - b.get(ad, 0)) / 5000
            print("%7.2f %s %s %s" % (runs, '|' if ad >> 6 in lines else ' ', f[0].strip(), f[3].strip()))
        else:
            print(line)
PY
}
for d in "$@"; do
	if [ "$d" = nginx ]; then
		nginx_conf
		sed -i 's/^worker_processes 1;/worker_processes 1;\nmaster_process off;/' "$W/ng/nginx.conf"
		for n in 1000 6000; do count $n "$W/cl.nginx.$n" "$NGINX_PORT" nginx -c "$W/ng/nginx.conf" -g "daemon off;"; done
		report nginx "$W/cl.nginx.6000.1" "$W/cl.nginx.1000.1"
		rm -f "$W/ng/nginx.pid"
		continue
	fi
	for n in 1000 6000; do
		GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 GOGC=off count $n "$W/cl.$n" "$GW_PORT" "$d/strait-proxy" --xds-address 127.0.0.1:$XDS_PORT \
			--mode router --namespace bench --workload-name single --labels bench=single --admin-address 127.0.0.1:$ADMIN_PORT
	done
	report "$d" "$W/cl.6000.1" "$W/cl.1000.1" "$d/strait-proxy"
	if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; for n in 1000 6000; do cp "$W/cl.$n.1" "$KEEP/$(basename "$d").$n"; done; fi
	rm -f "$W"/cl.*
done
