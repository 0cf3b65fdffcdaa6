// Package celattr declares the CEL environment of Envoy's attributes, the vocabulary in which
// Istio's Telemetry API writes its expressions: an access log filter (accessLogging.filter.
// expression, Envoy's envoy.access_loggers.extension_filters.cel ExpressionFilter) and the value
// of a metric tag (metrics.overrides.tagOverrides.value, the istio.stats filter's dimensions).
// See https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes.
//
// Both planes use it: straitd compiles every expression when a Telemetry is applied, so that a
// bad one is refused naming its field, and strait-proxy compiles the same expressions against
// the same declarations and evaluates them with an activation that resolves these names. An
// attribute is a dotted variable ("request.path", "response.code"), so an expression that
// names an attribute Envoy does not define ("request.foo") does not compile.
//
// The package holds no mutable state: Env is built once and is safe for concurrent use.
package celattr

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// Limits on an expression, applied before and while parsing: expressions come from users'
// config and are compiled by the control plane and by every proxy.
const (
	// MaxExpressionLength is the longest expression accepted, in bytes.
	MaxExpressionLength = 4096
	// MaxRecursionDepth bounds the nesting of the parsed expression.
	MaxRecursionDepth = 32
)

// Attribute is one of Envoy's attributes: its dotted name and its CEL type.
type Attribute struct {
	Name string
	Type *cel.Type
}

var (
	stringMap = cel.MapType(cel.StringType, cel.StringType)
	dynMap    = cel.MapType(cel.StringType, cel.DynType)
)

// certificateAttrs are the TLS attributes connection.* and upstream.* both have.
var certificateAttrs = []string{
	"tls_version", "subject_local_certificate", "subject_peer_certificate",
	"dns_san_local_certificate", "dns_san_peer_certificate",
	"uri_san_local_certificate", "uri_san_peer_certificate",
	"sha256_peer_certificate_digest",
}

// attributes lists Envoy's attributes with their types, as Envoy documents them.
var attributes = func() []Attribute {
	a := []Attribute{
		// Request attributes.
		{"request.path", cel.StringType},
		{"request.url_path", cel.StringType},
		{"request.host", cel.StringType},
		{"request.scheme", cel.StringType},
		{"request.method", cel.StringType},
		{"request.headers", stringMap},
		{"request.referer", cel.StringType},
		{"request.useragent", cel.StringType},
		{"request.time", cel.TimestampType},
		{"request.id", cel.StringType},
		{"request.protocol", cel.StringType},
		{"request.query", cel.StringType},
		{"request.duration", cel.DurationType},
		{"request.size", cel.IntType},
		{"request.total_size", cel.IntType},
		// Response attributes.
		{"response.code", cel.IntType},
		{"response.code_details", cel.StringType},
		{"response.flags", cel.IntType},
		{"response.grpc_status", cel.IntType},
		{"response.headers", stringMap},
		{"response.trailers", stringMap},
		{"response.size", cel.IntType},
		{"response.total_size", cel.IntType},
		{"response.backend_latency", cel.DurationType},
		// Connection attributes.
		{"source.address", cel.StringType},
		{"source.port", cel.IntType},
		{"destination.address", cel.StringType},
		{"destination.port", cel.IntType},
		{"connection.id", cel.UintType},
		{"connection.mtls", cel.BoolType},
		{"connection.requested_server_name", cel.StringType},
		{"connection.transport_failure_reason", cel.StringType},
		{"connection.termination_details", cel.StringType},
		// Upstream attributes.
		{"upstream.address", cel.StringType},
		{"upstream.port", cel.IntType},
		{"upstream.local_address", cel.StringType},
		{"upstream.transport_failure_reason", cel.StringType},
		{"upstream.request_attempt_count", cel.UintType},
		{"upstream.cx_pool_ready_duration", cel.DurationType},
		// Configuration attributes (metadata are dynamic structures).
		{"xds.node", cel.DynType},
		{"xds.cluster_name", cel.StringType},
		{"xds.cluster_metadata", cel.DynType},
		{"xds.listener_direction", cel.IntType},
		{"xds.listener_metadata", cel.DynType},
		{"xds.route_name", cel.StringType},
		{"xds.route_metadata", cel.DynType},
		{"xds.virtual_host_name", cel.StringType},
		{"xds.virtual_host_metadata", cel.DynType},
		{"xds.upstream_host_metadata", cel.DynType},
		{"xds.upstream_host_locality_metadata", cel.DynType},
		{"xds.filter_chain_name", cel.StringType},
		// Wasm-era and shared state: dynamic metadata and filter state, by key.
		{"metadata", cel.DynType},
		{"filter_state", dynMap},
	}
	for _, c := range certificateAttrs {
		a = append(a, Attribute{"connection." + c, cel.StringType}, Attribute{"upstream." + c, cel.StringType})
	}
	return a
}()

// Attributes returns Envoy's attributes, the variables of Env. The slice is a fresh copy.
func Attributes() []Attribute {
	return append([]Attribute(nil), attributes...)
}

// Env returns the CEL environment that declares Attributes, with the parser limits of this
// package. It is built once; the error is for a broken declaration (a programming error).
var Env = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.ParserExpressionSizeLimit(MaxExpressionLength),
		cel.ParserRecursionLimit(MaxRecursionDepth),
	}
	for _, a := range attributes {
		opts = append(opts, cel.Variable(a.Name, a.Type))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("declaring Envoy's attributes: %w", err)
	}
	return env, nil
})

// Compile parses and type-checks expr against Env. The error is a one-line message that
// names what is wrong ("undeclared reference to 'request.foo'") and where (column).
func Compile(expr string) (*cel.Ast, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("expression is empty")
	}
	if len(expr) > MaxExpressionLength {
		return nil, fmt.Errorf("expression is %d bytes, more than the limit of %d", len(expr), MaxExpressionLength)
	}
	env, err := Env()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, issueError(iss)
	}
	return ast, nil
}

// CompileFilter compiles an access log filter expression: it must be boolean (Envoy logs an
// entry only when its filter evaluates to true).
func CompileFilter(expr string) (*cel.Ast, error) {
	ast, err := Compile(expr)
	if err != nil {
		return nil, err
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("expression has type %s, want bool", t)
	}
	return ast, nil
}

// issueError renders the first problem of iss on one line, with its column.
func issueError(iss *cel.Issues) error {
	errs := iss.Errors()
	if len(errs) == 0 {
		return errors.New(strings.TrimSpace(iss.String()))
	}
	e := errs[0]
	msg := e.Message
	if loc := e.Location; loc != nil && loc.Column() >= 0 {
		msg = fmt.Sprintf("%s (at column %d)", msg, loc.Column()+1)
	}
	if n := len(errs); n > 1 {
		msg = fmt.Sprintf("%s, and %d more problems", msg, n-1)
	}
	return errors.New(msg)
}
