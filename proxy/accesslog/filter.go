package accesslog

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	celv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/filters/cel/v3"
)

// TypeCELFilter is the type URL of Envoy's CEL access log filter
// (envoy.access_loggers.extension_filters.cel), the one extension_filter strait-proxy implements;
// Istio's Telemetry API sends accessLogging.filter.expression in it.
const TypeCELFilter = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"

// filter is a compiled AccessLogFilter: whether an entry is logged. It is immutable.
type filter func(e *Entry) bool

// headerMatch bounds the regular expressions of header_filter as route matching does.
var headerMatch = matcher.Options{MaxProgramSize: 1000, MaxRegexLen: 4096}

// compileFilter compiles an access log filter: status_code_filter, duration_filter,
// not_health_check_filter, response_flag_filter, header_filter, and_filter, or_filter and the
// CEL extension_filter. Any other filter (runtime_filter, traceable_filter, grpc_status_filter,
// metadata_filter, log_type_filter, another extension) is an error naming it.
func compileFilter(path string, f *accesslogv3.AccessLogFilter) (filter, error) {
	switch x := f.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		// Envoy compares 0 when there is no response code (a TCP connection, a reset).
		return compileComparisonFilter(path+".status_code_filter", x.StatusCodeFilter,
			func(e *Entry) uint64 { return uint64(max(e.ResponseCode, 0)) })
	case *accesslogv3.AccessLogFilter_DurationFilter:
		return compileComparisonFilter(path+".duration_filter", x.DurationFilter,
			func(e *Entry) uint64 { return uint64(max(e.Duration.Milliseconds(), 0)) })
	case *accesslogv3.AccessLogFilter_NotHealthCheckFilter:
		if err := xdsfield.Check(x.NotHealthCheckFilter, path+".not_health_check_filter"); err != nil {
			return nil, err
		}
		// A request is a health check only when Envoy's health_check HTTP filter marks it;
		// strait-proxy refuses that filter, so no request ever is one.
		return func(*Entry) bool { return true }, nil
	case *accesslogv3.AccessLogFilter_AndFilter:
		return compileJunction(path+".and_filter", x.AndFilter.GetFilters(), false)
	case *accesslogv3.AccessLogFilter_OrFilter:
		return compileJunction(path+".or_filter", x.OrFilter.GetFilters(), true)
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		return compileResponseFlagFilter(path+".response_flag_filter", x.ResponseFlagFilter)
	case *accesslogv3.AccessLogFilter_HeaderFilter:
		p := path + ".header_filter"
		if err := xdsfield.Check(x.HeaderFilter, p, "header"); err != nil {
			return nil, err
		}
		hm, err := matcher.CompileHeader(p+".header", x.HeaderFilter.GetHeader(), headerMatch)
		if err != nil {
			return nil, err
		}
		return func(e *Entry) bool {
			v, ok := filterHeader(e, hm.Name())
			return hm.Match(v, ok)
		}, nil
	case *accesslogv3.AccessLogFilter_ExtensionFilter:
		return compileExtensionFilter(path+".extension_filter", x.ExtensionFilter)
	case nil:
		return nil, fmt.Errorf("%s: no filter set", path)
	default:
		name := fmt.Sprintf("%T", x)
		if fd := f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("filter_specifier")); fd != nil {
			name = string(fd.Name())
		}
		return nil, xdsfield.Unsupported(path+"."+name, "access log filter")
	}
}

// comparisonFilter is a status_code_filter or a duration_filter.
type comparisonFilter interface {
	proto.Message
	GetComparison() *accesslogv3.ComparisonFilter
}

// compileComparisonFilter compiles a filter that compares value(entry) with its comparison.
func compileComparisonFilter(path string, f comparisonFilter, value func(*Entry) uint64) (filter, error) {
	cmp, err := compileComparison(path, f.GetComparison())
	if err != nil {
		return nil, err
	}
	if err := xdsfield.Check(f, path, "comparison"); err != nil {
		return nil, err
	}
	return func(e *Entry) bool { return cmp(value(e)) }, nil
}

// compileJunction compiles an and_filter (or false: every filter must log) or an or_filter (or
// true: one filter logging is enough).
func compileJunction(path string, fs []*accesslogv3.AccessLogFilter, or bool) (filter, error) {
	cs, err := compileFilters(path, fs)
	if err != nil {
		return nil, err
	}
	return func(e *Entry) bool {
		for _, f := range cs {
			if f(e) == or {
				return or
			}
		}
		return !or
	}, nil
}

func compileFilters(path string, fs []*accesslogv3.AccessLogFilter) ([]filter, error) {
	if len(fs) < 2 {
		return nil, fmt.Errorf("%s.filters: %d filters, at least 2 are required", path, len(fs))
	}
	out := make([]filter, len(fs))
	for i, f := range fs {
		c, err := compileFilter(fmt.Sprintf("%s.filters[%d]", path, i), f)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// compileComparison compiles a ComparisonFilter. There is no runtime layer: value.runtime_key
// never overrides value.default_value, as in an Envoy without that runtime entry.
func compileComparison(path string, c *accesslogv3.ComparisonFilter) (func(uint64) bool, error) {
	path += ".comparison"
	if c == nil {
		return nil, fmt.Errorf("%s: missing", path)
	}
	if err := xdsfield.Check(c, path, "op", "value"); err != nil {
		return nil, err
	}
	if c.GetValue() == nil {
		return nil, fmt.Errorf("%s.value: missing", path)
	}
	if err := xdsfield.Check(c.GetValue(), path+".value", "default_value", "runtime_key"); err != nil {
		return nil, err
	}
	v := uint64(c.GetValue().GetDefaultValue())
	switch c.GetOp() {
	case accesslogv3.ComparisonFilter_EQ:
		return func(x uint64) bool { return x == v }, nil
	case accesslogv3.ComparisonFilter_GE:
		return func(x uint64) bool { return x >= v }, nil
	case accesslogv3.ComparisonFilter_LE:
		return func(x uint64) bool { return x <= v }, nil
	case accesslogv3.ComparisonFilter_NE:
		return func(x uint64) bool { return x != v }, nil
	}
	return nil, xdsfield.Unsupported(path+".op", "operator %v", c.GetOp())
}

// compileResponseFlagFilter matches entries with any of the listed flags (Envoy's short names),
// or with any flag at all when none is listed.
func compileResponseFlagFilter(path string, f *accesslogv3.ResponseFlagFilter) (filter, error) {
	if err := xdsfield.Check(f, path, "flags"); err != nil {
		return nil, err
	}
	want := f.GetFlags()
	for i, fl := range want {
		if !slices.Contains(attributes.FlagNames(), fl) {
			return nil, fmt.Errorf("%s.flags[%d]: unknown response flag %q", path, i, fl)
		}
	}
	return func(e *Entry) bool {
		flags := e.ResponseFlags
		if flags == "" || flags == "-" {
			return false
		}
		if len(want) == 0 {
			return true
		}
		for flags != "" {
			var fl string
			fl, flags, _ = strings.Cut(flags, ",")
			if slices.Contains(want, fl) {
				return true
			}
		}
		return false
	}, nil
}

// compileExtensionFilter compiles the CEL filter: the entry is logged when the expression is
// true. An evaluation error (an absent attribute) or a non-boolean result does not log, as in
// Envoy.
func compileExtensionFilter(path string, ef *accesslogv3.ExtensionFilter) (filter, error) {
	if err := xdsfield.Check(ef, path, "name", "typed_config"); err != nil {
		return nil, err
	}
	tc := ef.GetTypedConfig()
	if tc.GetTypeUrl() != TypeCELFilter {
		return nil, xdsfield.Unsupported(path+".typed_config", "access log filter extension %q (only %s)", tc.GetTypeUrl(), TypeCELFilter)
	}
	var cf celv3.ExpressionFilter
	if err := tc.UnmarshalTo(&cf); err != nil {
		return nil, fmt.Errorf("decoding %s.typed_config: %w", path, err)
	}
	p := path + ".typed_config"
	if err := xdsfield.Check(&cf, p, "expression"); err != nil {
		return nil, err
	}
	prg, err := attributes.CompileBool(cf.GetExpression())
	if err != nil {
		return nil, fmt.Errorf("%s.expression: %w", p, err)
	}
	return prg.Match, nil
}

// filterHeader returns a request header's value for header_filter (several joined with ","),
// pseudo-headers included, and whether it is present.
func filterHeader(e *Entry, name string) (string, bool) {
	var v string
	switch strings.ToLower(name) {
	case ":method":
		v = e.Method
	case ":path":
		v = e.Path
	case ":authority", "host":
		v = e.Authority
	case ":scheme":
		v = e.Scheme
	default:
		vs := attributes.Values(e.RequestHeaders, name)
		if len(vs) == 0 {
			return "", false
		}
		if len(vs) == 1 {
			return vs[0], true
		}
		return strings.Join(vs, ","), true
	}
	return v, v != ""
}
