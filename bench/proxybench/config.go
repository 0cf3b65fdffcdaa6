package main

import (
	"fmt"
	"strings"
)

// Ports used by the benchmark, all on loopback.
const (
	portBackend   = 18080
	portSingle    = 18081 // fortio → strait-proxy → backend
	portPairFront = 18082 // fortio → strait-proxy (client side) → strait-proxy (server side) → backend
	portPairBack  = 18083
	portNginx     = 18084
	portHAProxy   = 18085
	portNginxH2   = 18086 // nginx speaks h2c only on a port of its own
	portHAProxyH2 = 18087
	portSidecar   = 18090 // the sidecar pairs' service port, on each pair's own loopback addresses (sidecar.go)
	portXDS       = 18010
	portStraitd   = 18014
)

// meshConfig is the Istio configuration straitd serves to the benchmark's proxies: a backend
// registered with a ServiceEntry, Gateways + VirtualServices for three router proxies, and the
// services and Sidecar resources of the two sidecar pairs (sidecar.go).
func meshConfig() string {
	const header = "apiVersion: networking.istio.io/v1\nkind: %s\nmetadata: {name: %s, namespace: bench}\nspec:\n"
	// service registers <name>.bench.svc.cluster.local on port at 127.0.0.1.
	service := func(name string, port int) string {
		return fmt.Sprintf(header+`  hosts: [%[2]s.bench.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: %[3]d, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
`, "ServiceEntry", name, port)
	}
	// gateway is an HTTP server on port for the router proxy labelled bench=<name>.
	gateway := func(name string, port int) string {
		return fmt.Sprintf(header+`  selector: {bench: %[2]s}
  servers: [{port: {number: %[3]d, name: http, protocol: HTTP}, hosts: ["*"]}]
`, "Gateway", name, port)
	}
	// route sends everything through gateways to the service to on port.
	route := func(name, gateways, to string, port int) string {
		return fmt.Sprintf(header+`  hosts: ["*"]
  gateways: [%[3]s]
  http: [{route: [{destination: {host: %[4]s.bench.svc.cluster.local, port: {number: %[5]d}}}]}]
`, "VirtualService", name, gateways, to, port)
	}
	return strings.Join([]string{
		service("backend", portBackend),
		service("server-proxy", portPairBack),
		gateway("single", portSingle),
		gateway("client", portPairFront),
		gateway("server", portPairBack),
		route("single", "single, server", "backend", portBackend),
		route("client", "client", "server-proxy", portPairBack),
		sidecarConfig(plainPair),
		sidecarConfig(mtlsPair),
	}, "---\n")
}

// nginxConfig is nginx as an equivalent reverse proxy: one worker, keep-alive to the backend.
func nginxConfig(dir string) string {
	return fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  fastcgi_temp_path %[1]s/nginx-fastcgi;
  uwsgi_temp_path %[1]s/nginx-uwsgi;
  scgi_temp_path %[1]s/nginx-scgi;
  upstream backend { server 127.0.0.1:%[2]d; keepalive 64; }
  server {
    listen 127.0.0.1:%[3]d;
    listen 127.0.0.1:%[4]d http2;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`, dir, portBackend, portNginx, portNginxH2)
}

// haproxyConfig is HAProxy as an equivalent reverse proxy: one thread, keep-alive to the backend.
func haproxyConfig() string {
	return fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:%[2]d
  bind 127.0.0.1:%[3]d proto h2
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:%[1]d
`, portBackend, portHAProxy, portHAProxyH2)
}
