// Package extauthz is the logic of Envoy's external authorization filters, which enforce
// Istio's AuthorizationPolicy action CUSTOM: the HTTP filter (envoy.filters.http.ext_authz,
// envoy.extensions.filters.http.ext_authz.v3.ExtAuthz; Compile, Config) and the network filter
// (envoy.filters.network.ext_authz, envoy.extensions.filters.network.ext_authz.v3.ExtAuthz;
// CompileNetwork, NetworkConfig). It compiles the filters' configuration, builds the check for
// the configured service kind, and turns the authorization service's reply into a Response
// that the connection manager (proxy/l7) or the listener (proxy/listener) applies. It owns no
// sockets: the check is sent through a RoundTripper the caller supplies (the proxy's own
// cluster, so endpoints, pools and mTLS are the proxy's), and it does no local replies itself.
//
// Compile checks every populated field against the list this package implements; anything
// else is an *xdsfield.UnsupportedError naming the field, so the update is NACKed. A *Config
// is immutable and safe for concurrent use.
//
// # Services
//
// HTTP service (http_service): the check is a request to server_uri.cluster with the client's
// method, path_prefix + the client's path and query (or path_override), the client's
// authority as Host, and the client headers Envoy always includes (Authorization; Host,
// method and path are the request line) plus those matching allowed_headers (top level, else
// authorization_request.allowed_headers), less disallowed_headers, then headers_to_add, which
// override. Repeated client headers are joined with ",". The body is sent only with
// with_request_body, with x-envoy-auth-partial-body. A 200 allows: headers matching
// allowed_upstream_headers replace the upstream request's, allowed_upstream_headers_to_append
// are added, allowed_client_headers_on_success are added to the downstream response, and
// x-envoy-auth-headers-to-remove lists request headers to remove. A 5xx is an error. Any other
// status denies: the client gets that status, the authorization response's body, and its
// headers matching allowed_client_headers (all but Host when unset; with a list, Path,
// Status, Content-Length, WWW-Authenticate and Location are added to it).
//
// gRPC service (grpc_service.envoy_grpc): a unary envoy.service.auth.v3.Authorization/Check
// call, framed by package grpcunary (5-byte length prefix, application/grpc, te: trailers,
// grpc-timeout) and sent as an HTTP/2 request with :authority envoy_grpc.authority (the
// cluster name when unset). The CheckRequest's AttributeContext carries the source (peer
// address, principal of the peer certificate: URI SAN, else DNS SAN, else subject; service from
// x-envoy-downstream-service-cluster), the destination (local address, own certificate's
// principal), request.time and request.http (x-request-id, method, lower-case headers with
// the pseudo-headers :authority, :method, :path and :scheme, path, host, scheme, protocol,
// size, body), metadata_context from metadata_context_namespaces and, with
// include_tls_session, the SNI. Without allowed_headers every client header is sent. A reply
// with status OK allows with ok_response's mutations; error_response is an error with the
// service's status, headers and body; any other status denies with denied_response (status
// 403 unless set). A transport failure, a non-200 HTTP status, a non-zero grpc-status, an
// oversized or malformed reply is an error.
//
// Errors become status_on_error (403 by default) unless failure_mode_allow, when the request
// continues (with x-envoy-auth-failure-mode-allowed: true if failure_mode_allow_header_add).
//
// # Network filter
//
// The network filter supports the gRPC service only (grpc_service.envoy_grpc, with the same
// framing, limits and timeout as above: one client shared by both filters). Its CheckRequest is
// Envoy's createTcpCheck: the source and destination addresses, their principals on a TLS
// connection, tls_session with include_tls_session, metadata_context from
// metadata_context_namespaces of the connection's dynamic metadata; no request attributes. A
// reply with status OK allows, an error_response and every failure to get a reply are errors,
// anything else denies. filter_enabled_metadata selects the connections checked. Refused:
// include_peer_certificate, bootstrap_metadata_labels_key, send_tls_alert_on_denial,
// typed_metadata_context_namespaces, shadow_mode, transport_api_version V2 and any service but
// envoy_grpc. What the listener does with the outcome is in proxy/listener.
//
// # Choices where Envoy's documentation is silent or ambiguous
//
//   - HeaderValueOption in replies: an explicit append decides (true appends, false sets);
//     without it, append_action ADD_IF_ABSENT, OVERWRITE_IF_EXISTS and
//     OVERWRITE_IF_EXISTS_OR_ADD apply, and the default (APPEND_IF_EXISTS_OR_ADD, the enum's
//     zero) sets, as the reply messages document "append defaults to false". Appending to a
//     request header joins the values with "," (Envoy's appendCopy); appending to a response
//     header adds a field line.
//   - An authorization service cannot change the request's framing or target: mutations and
//     removals of Host/:authority, pseudo-headers, Content-Length, Transfer-Encoding, TE,
//     Trailer and the connection-specific headers are skipped, and these headers are never
//     copied from an HTTP authorization response to the client. Invalid names or values are
//     skipped, or make the request fail with 500 "ext_authz_invalid" with validate_mutations.
//   - A timeout of 0 means no timeout beyond the downstream request's own; an unset timeout is
//     Envoy's 200ms.
//   - request.http.size is the request's Content-Length, 0 without a body and -1 when unknown
//     (chunked). Invalid UTF-8 in strings of the CheckRequest (header values, path, a body not
//     packed as bytes) is replaced byte by byte with "!".
//   - An HTTP authorization response with a status outside 200..599 is an error, and so is a
//     denial whose body exceeds MaxHTTPResponseBytes; a gRPC denied_response status that is not
//     a known HTTP status in 200..599 is 403.
//   - x-envoy-auth-partial-body is sent whenever a body was buffered, to both services.
//
// Envoy references:
//   - https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/ext_authz_filter
//   - https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/ext_authz_filter
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/attribute_context.proto
package extauthz
