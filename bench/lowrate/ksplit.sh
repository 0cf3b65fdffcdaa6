#!/bin/bash
# ksplit.sh — where the proxy's CPU goes at 1,000 rps, user space against each system call, next
# to nginx on the same path (issue 10; docs/performance.md, "the kernel's share measured").
#
#   bash bench/lowrate/ksplit.sh SECONDS BINDIR... [nginx]
#
# The setup of ab.sh (env.sh). For each BINDIR (a fresh strait-proxy, router mode, GOMAXPROCS=1
# on CPU 1) and for nginx (one worker on CPU 1), fortio sends 1,000 rps of 1 KiB POSTs over 16
# connections for SECONDS while:
#   1. `perf record -e cpu-clock -g` samples the process at 10 kHz; each sample is put under the
#      system call it was taken in (the frame below entry_SYSCALL_64), "user" (the program's
#      own code, libc, vDSO), or "other kernel" (interrupts, page faults);
#   2. `perf stat` counts system calls and scheduler events per request (tracepoints).
# Samples are per 1,000 requests (so comparable between the columns); perf's own interrupts
# inflate all of them alike, so compare columns, not against ab.sh's CPU seconds. Run it on a
# quiet machine, one at a time. Needs: perf (with tracepoints: run as root), python3, and what
# ab.sh needs.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,17p "$0"; exit 2; }
T=$1; shift
. "$(dirname "$0")/env.sh"
EV=syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_writev
EV=$EV,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex
EV=$EV,syscalls:sys_enter_nanosleep,sched:sched_switch,sched:sched_wakeup
profile() { # profile NAME PID URL
	local tids
	tids=$(ls /proc/"$2"/task | paste -sd,)
	taskset -c 0 "$W/fortio" load -qps 500 -c 4 -t 2s -payload-size 1024 -logger-json=false "$3" >/dev/null 2>&1
	perf record -q -e cpu-clock -F 10000 -g -t "$tids" -o "$W/$1.data" -- sleep $((T + 1)) >/dev/null 2>&1 &
	local rec=$!
	sleep 0.3
	taskset -c 0 "$W/fortio" load -qps 1000 -c 16 -t "${T}s" -payload-size 1024 -logger-json=false -nocatchup "$3" >"$W/load.log" 2>&1
	wait $rec
	local n
	n=$(grep -oP 'All done \K[0-9]+' "$W/load.log")
	perf stat -e "$EV" -t "$tids" -x, -o "$W/$1.stat" -- sleep $((T + 1)) >/dev/null 2>&1 &
	rec=$!
	sleep 0.3
	taskset -c 0 "$W/fortio" load -qps 1000 -c 16 -t "${T}s" -payload-size 1024 -logger-json=false -nocatchup "$3" >"$W/load2.log" 2>&1
	wait $rec
	perf script -i "$W/$1.data" -F ip,sym,dso 2>/dev/null >"$W/$1.script"
	echo "$1 $n $(grep -oP 'All done \K[0-9]+' "$W/load2.log")" >>"$W/runs"
}
NGINX=0
for d in "$@"; do [ "$d" = nginx ] && NGINX=1; done
: >"$W/runs"
i=0
for d in "$@"; do
	i=$((i + 1))
	if [ "$d" = nginx ]; then
		nginx_conf
		taskset -c 1 nginx -c "$W/ng/nginx.conf" -g "daemon off;" >"$W/ng/out.log" 2>&1 &
		wait_url http://127.0.0.1:$NGINX_PORT/echo
		profile "$i-nginx" "$(pgrep -f 'nginx: worker' -P "$(cat "$W/ng/nginx.pid")" | head -1)" http://127.0.0.1:$NGINX_PORT/echo
		continue
	fi
	start_proxy "$d"
	profile "$i-$(basename "$d")" $PROXY http://127.0.0.1:$GW_PORT/echo
	kill $PROXY
	wait $PROXY 2>/dev/null || true
done
python3 - "$W" <<'PY'
import collections, sys
W = sys.argv[1]
runs = [l.split() for l in open(W + '/runs')]
cols, stats = [], []
for name, n, n2 in runs:
    c, cur = collections.Counter(), None
    def flush(st):
        if not st:
            return
        frames = [(f[1] if len(f) > 1 else '?', f[-1]) for f in (s.split() for s in st)]
        if 'kernel' not in frames[0][1]:
            c['user'] += 1
            return
        syms = [f[0] for f in frames]
        if 'entry_SYSCALL_64_after_hwframe' in syms:
            j = syms.index('entry_SYSCALL_64_after_hwframe') - 1
            while j > 0 and syms[j] in ('do_syscall_64', 'x64_sys_call'):
                j -= 1
            c['sys ' + syms[j].replace('__x64_sys_', '').replace('ksys_', '').replace('do_', '')] += 1
        else:
            c['other kernel'] += 1
    st = []
    for line in open(f'{W}/{name}.script'):
        if not line.strip():
            flush(st); st = []
        elif line[0] in ' \t':
            st.append(line.strip())
        else:
            st = []
    flush(st)
    cols.append((name, {k: v * 1000 / int(n) for k, v in c.items()}))
    s = {}
    for line in open(f'{W}/{name}.stat'):
        f = line.strip().split(',')
        if len(f) > 2 and f[0].replace('.', '').isdigit():
            s[f[2].split(':')[-1].replace('sys_enter_', '')] = int(f[0]) / int(n2)
    stats.append(s)
print('samples per 1,000 requests (10 kHz cpu-clock)')
keys = sorted({k for _, c in cols for k in c}, key=lambda k: -max(c.get(k, 0) for _, c in cols))
print('%-22s' % '' + ''.join('%14s' % n[:13] for n, _ in cols))
for k in [k for k in keys if max(c.get(k, 0) for _, c in cols) >= 2] + ['total']:
    print('%-22s' % k + ''.join('%14.0f' % (sum(c.values()) if k == 'total' else c.get(k, 0)) for _, c in cols))
print('\nper request')
for k in sorted({k for s in stats for k in s}):
    if max(s.get(k, 0) for s in stats) >= 0.01:
        print('%-22s' % k + ''.join('%14.2f' % s.get(k, 0) for s in stats))
PY
