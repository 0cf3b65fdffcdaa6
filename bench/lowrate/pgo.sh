#!/bin/bash
# pgo.sh — collects the CPU profile strait-proxy is built with: cmd/strait-proxy/default.pgo,
# which `go build` applies by itself (Go's profile-guided optimization: hotter calls inlined,
# hot interface calls devirtualized). Rerun it after a change to the request path, then check
# the gain with ab.sh (docs/performance.md, "Profile-guided build").
#
#   bash bench/lowrate/pgo.sh
#
# On loopback (env.sh): one strait-proxy from bin/ (router mode, GOMAXPROCS=1, CPU 1) profiled
# for 28 s through its admin socket while fortio sends it 1 KiB POSTs over 16 connections:
# HTTP/1.1 at 1,000 rps for 12 s, HTTP/1.1 at the most it takes for 8 s, h2c at 1,000 rps for
# 6 s. Every load run is bounded. Needs: go, taskset, curl.
set -euo pipefail
. "$(dirname "$0")/env.sh"
SOCK=$W/admin.sock
start_proxy "$BIN" --admin-socket "$SOCK"
curl -sf --unix-socket "$SOCK" "http://admin/debug/pprof/profile?seconds=28" -o "$W/cpu.pprof" &
C=$!
sleep 0.5
load() { taskset -c 0 "$W/fortio" load -c 16 -payload-size 1024 -logger-json=false "$@" http://127.0.0.1:28001/echo >/dev/null 2>&1; }
load -qps 1000 -t 12s
load -qps 0 -t 8s
load -h2 -qps 1000 -t 6s
wait $C
go tool pprof -top -nodecount 5 "$W/cpu.pprof" >/dev/null # a readable CPU profile
cp "$W/cpu.pprof" "$ROOT/cmd/strait-proxy/default.pgo"
echo "wrote cmd/strait-proxy/default.pgo ($(stat -c %s "$ROOT/cmd/strait-proxy/default.pgo") bytes)"
