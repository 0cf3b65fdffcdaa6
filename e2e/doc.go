// Package e2e holds end-to-end tests that run the real binaries together: straitd serving Istio
// configuration from a watched directory to strait-proxy processes (router mode, in front of a
// Gateway) that carry real traffic between real clients and backends on 127.0.0.0/8.
//
// Each test starts one straitd and one proxy and drives them with Istio YAML as a user writes
// it; backends answer with their name, so a test asserts which one answered:
//
//   - TestHTTPRouting: every VirtualService match kind and action, and Istio's finer routing
//     semantics (delegation, per-destination headers, redirect ports, virtual host domains);
//   - TestLoadBalancing: every DestinationRule load balancer and consistent hash source;
//   - TestProtocols: HTTP/1.1 and h2c in both directions, gRPC bidi streams, WebSocket, TCP,
//     TLS passthrough by SNI;
//   - TestTLSTerminationAndOrigination: Gateway SIMPLE and MUTUAL TLS from certificate files,
//     DestinationRule TLS origination with a CA and SNI;
//   - TestOutlierDetectionAndCircuitBreaker: ejection of a failing endpoint, pool overflow (UO);
//   - TestSidecarPair: client application → client sidecar → server sidecar → server application
//     in explicit mode (Sidecar captureMode NONE);
//   - TestNACKKeepsServingTheOldConfig, TestConfigChurnWithoutFailedRequests,
//     TestProxyServesThroughControlPlaneOutage, TestAdminAndDrainOnSIGTERM: the life of a
//     configuration and of the proxy.
//
// The tests are skipped with -short. Environment:
//
//	STRAIT_E2E_BIN=dir   use already built straitd, strait-proxy and strait from dir
//	STRAIT_E2E_RACE=1    build them with -race; a reported data race fails the test
//	E2E_DEBUG=1          run the proxies with --log-level debug (logs are printed on failure)
package e2e
