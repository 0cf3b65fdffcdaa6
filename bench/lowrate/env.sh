# env.sh — the loopback setup of ab.sh (sourced): a work directory $W,
# fortio (built into $W), fortio's echo server on 127.0.0.1:28080 (CPU 0), and straitd serving
# one Gateway route to it on port 28001 (xDS on 28010). PIDS collects what to stop; the EXIT
# trap stops it and removes $W. Needs: go, taskset, curl.
# LOWRATE_BASE=N moves every port by N - 28000 (default 28000), so that deterministic counts
# (instr.sh, lines.sh) can run beside each other; timed runs must not.
LRB=${LOWRATE_BASE:-28000}
ECHO_PORT=$((LRB + 80)) GW_PORT=$((LRB + 1)) NGINX_PORT=$((LRB + 2)) XDS_PORT=$((LRB + 10)) ADMIN_PORT=$((LRB + 13))
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
W=$(mktemp -d /tmp/lowrate.XXXXXX)
mkdir -p "$W/cfg" "$W/data" "$W/ng"
PIDS=()
cleanup() {
	[ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null
	[ -f "$W/ng/nginx.pid" ] && kill "$(cat "$W/ng/nginx.pid")" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
(cd "$ROOT" && go build -o "$W/fortio" fortio.org/fortio)
BIN=$ROOT/bin; [ -x "$BIN/straitd" ] || (cd "$ROOT" && make build >/dev/null)
cat > "$W/cfg/bench.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend, namespace: bench}
spec:
  hosts: [backend.bench.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: $ECHO_PORT, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: single, namespace: bench}
spec:
  selector: {bench: single}
  servers: [{port: {number: $GW_PORT, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: single, namespace: bench}
spec:
  hosts: ["*"]
  gateways: [single]
  http: [{route: [{destination: {host: backend.bench.svc.cluster.local, port: {number: $ECHO_PORT}}}]}]
YAML
taskset -c 0 "$W/fortio" server -http-port 127.0.0.1:$ECHO_PORT -grpc-port disabled -redirect-port disabled -ui-path "" >"$W/echo.log" 2>&1 &
PIDS+=($!)
"$BIN/straitd" --config-dir "$W/cfg" --data-dir "$W/data" --mesh-address 127.0.0.1:0 --xds-listen 127.0.0.1:$XDS_PORT \
	--http-listen 127.0.0.1:$((LRB + 11)) --ratelimit-listen 127.0.0.1:$((LRB + 12)) >"$W/straitd.log" 2>&1 &
PIDS+=($!)
# wait_url URL: until URL answers a POST (10 s at most).
wait_url() { for _ in $(seq 100); do curl -s -o /dev/null -m 1 -d x "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
# start_proxy BINDIR [ARGS...]: a strait-proxy (router mode, GOMAXPROCS=1, CPU 1) on port 28001; sets $PROXY.
# It returns SETTLE seconds (default 7) after the proxy answers: 5 s after its configuration
# settles, the proxy releases what start-up touched (proxy/memtrim: a collection, the heap's
# free pages and the executable's pages, which the request path then faults back in), a one-off
# cost that a measurement starting at once would count.
start_proxy() {
	local d=$1; shift
	GOMAXPROCS=1 taskset -c 1 "$d/strait-proxy" --xds-address 127.0.0.1:$XDS_PORT --mode router --namespace bench \
		--workload-name single --labels bench=single --admin-address 127.0.0.1:$ADMIN_PORT "$@" >"$W/proxy.log" 2>&1 &
	PROXY=$!
	PIDS+=($PROXY)
	wait_url http://127.0.0.1:$GW_PORT/echo
	sleep "${SETTLE:-7}"
}
# nginx_conf: writes $W/ng/nginx.conf, proxybench's nginx configuration (one worker, keep-alive
# upstream to the echo server) listening on 127.0.0.1:28002.
nginx_conf() {
	cat > "$W/ng/nginx.conf" <<NG
worker_processes 1;
pid $W/ng/nginx.pid;
error_log $W/ng/err.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/ng/b; proxy_temp_path $W/ng/p; fastcgi_temp_path $W/ng/f; uwsgi_temp_path $W/ng/u; scgi_temp_path $W/ng/s;
  upstream backend { server 127.0.0.1:$ECHO_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; proxy_request_buffering off; }
  }
}
NG
}
