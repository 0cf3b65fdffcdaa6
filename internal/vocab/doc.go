// Package vocab is the vocabulary both planes share: the names and numbers that straitd writes
// into xDS and strait-proxy reads back, spelled once. It owns
//
//   - Envoy's retry conditions (retry_on, x-envoy-retry-on and x-envoy-retry-grpc-on values),
//     the set Istio's VirtualService retries.retryOn accepts (retry.go);
//   - the names of the Envoy filters, retry predicates and transport sockets the control plane
//     emits and the proxy implements (filters.go);
//   - Istio's cluster, listener and filter chain names, with a builder and a parser for
//     outbound|PORT|SUBSET|HOST and inbound|PORT|| (clusters.go);
//   - Istio's proxy ports and the proxy's uid (ports.go);
//   - ALPN values and SDS secret names (tls.go);
//   - the xDS resource type URLs an ADS stream carries (xds.go).
//
// Config validation (controlplane/config), translation (controlplane/translate) and the proxy
// (proxy/route, proxy/listener, proxy/intercept, ...) read these instead of their own copies, so
// that what `strait apply` accepts, what straitd emits and what strait-proxy implements cannot
// drift apart. The package depends only on the standard library; its values are constants or
// are returned as fresh copies, so it holds no mutable state.
package vocab
