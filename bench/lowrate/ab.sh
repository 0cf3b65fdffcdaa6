#!/bin/bash
# ab.sh — the proxy's CPU per 1,000 HTTP/1.1 requests at 1,000 rps, builds compared by
# alternated runs (issue 10; docs/performance.md, "Where the 1,000 rps gap is").
#
#   bash bench/lowrate/ab.sh ROUNDS SECONDS BINDIR... [nginx]
#
# Sets up, on loopback: straitd with one Gateway route to fortio's echo server (port 28080),
# and for each round and each BINDIR a fresh strait-proxy (router mode, GOMAXPROCS=1, pinned to
# CPU 1) on port 28001; fortio loads it on CPU 0 (1,000 rps over 16 connections, 1 KiB POST
# bodies) for SECONDS after a short warm-up. The word "nginx" adds nginx (one worker on CPU 1,
# proxybench's configuration) to each round. Prints per run: CPU-s per 1,000 requests (from
# /proc/PID/task/*/schedstat), voluntary context switches per request, p50. A single run says
# little on a shared VM (the proxy's figure is bimodal there): use several rounds.
# Needs: go, taskset, curl, bc (and nginx for the nginx column). Every load run is bounded.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,15p "$0"; exit 2; }
R=$1; T=$2; shift 2
. "$(dirname "$0")/env.sh"
cpu() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END{printf "%.0f", s}'; }
vcs() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/{s+=$2} END{printf "%.0f", s}'; }
measure() { # measure NAME PID URL
	taskset -c 0 "$W/fortio" load -qps 500 -c 4 -t 2s -payload-size 1024 -logger-json=false "$3" >/dev/null 2>&1
	taskset -c 0 "$W/fortio" load -qps 1000 -c 16 -t $((T + 2))s -payload-size 1024 -logger-json=false -nocatchup "$3" >"$W/load.log" 2>&1 &
	local f=$! a b c0 c1
	sleep 1
	a=$(cpu "$2"); c0=$(vcs "$2"); sleep "$T"; b=$(cpu "$2"); c1=$(vcs "$2")
	wait $f
	echo "$(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $1: cpu/1k=$(echo "scale=4; ($b-$a)/1000000000/$T" | bc) s cs/req=$(echo "scale=3; ($c1-$c0)/($T*1000)" | bc) p50=$(awk '/^# target 50%/{printf "%.3fms", $4*1000; exit}' "$W/load.log")"
}
NGINX=0
for d in "$@"; do [ "$d" = nginx ] && NGINX=1; done
if [ $NGINX = 1 ]; then
	nginx_conf
	taskset -c 1 nginx -c "$W/ng/nginx.conf" -g "daemon off;" >"$W/ng/out.log" 2>&1 &
	wait_url http://127.0.0.1:$NGINX_PORT/echo
fi
for _ in $(seq "$R"); do
	for d in "$@"; do
		if [ "$d" = nginx ]; then
			measure nginx "$(pgrep -f 'nginx: worker' -P "$(cat "$W/ng/nginx.pid")" | head -1)" http://127.0.0.1:$NGINX_PORT/echo
			continue
		fi
		start_proxy "$d"
		measure "$d" $PROXY http://127.0.0.1:$GW_PORT/echo
		kill $PROXY; wait $PROXY 2>/dev/null || true
	done
done
