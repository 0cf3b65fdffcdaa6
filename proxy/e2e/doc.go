// Package e2e holds strait-proxy's end-to-end tests: a real go-control-plane ADS server in the
// test process serves hand-written Envoy resources to the real strait-proxy binary, and real
// net/http clients and backends exchange traffic with it on loopback.
package e2e
