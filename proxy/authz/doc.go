// Package authz is strait-proxy's one authorization evaluator: it compiles Envoy's RBAC
// configuration (envoy.config.rbac.v3.RBAC, as carried by the envoy.filters.http.rbac and
// envoy.filters.network.rbac filters that Istio generates from AuthorizationPolicy) and evaluates
// it with Envoy's semantics. `strait explain` runs the same code, so what the CLI says is what the
// proxy does.
//
// Compile validates a configuration once (protoc-gen-validate rules, then every populated field
// against the list this package implements: anything else is an *xdsfield.UnsupportedError naming
// the field, so the update is NACKed and never half-applied) and pre-compiles every matcher. An
// *Engine is immutable and safe for concurrent use; Evaluate does not allocate unless a header
// the policies match on is repeated (Envoy joins the values with ",") or a policy uses a regular
// expression that the Go regexp package evaluates with allocation.
//
// Requests are seen through the Request and Connection interfaces, not net/http types, so the
// codec underneath can change. The package does no path normalization: the connection manager
// normalizes before filters run, and url_path / uri_template match what Request.Path returns
// after stripping the query and fragment, exactly as Envoy does.
//
// Envoy references (the semantics implemented here):
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/rbac/v3/rbac.proto
//   - https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rbac_filter
//   - https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/rbac_filter
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/path/match/uri_template/v3/uri_template_match.proto
package authz
