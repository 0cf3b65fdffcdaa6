package accesslog

import (
	"strings"
	"testing"
	"time"

	gaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	gcelv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/accesslog/accesslogtest"
	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/xdspb"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	celv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/filters/cel/v3"
)

func parseFilter(t *testing.T, text string) *accesslogv3.AccessLogFilter {
	t.Helper()
	// go-control-plane's type parses the fields strait-proxy does not read too.
	var f gaccesslogv3.AccessLogFilter
	if err := prototext.Unmarshal([]byte(text), &f); err != nil {
		t.Fatalf("parsing %s: %v", text, err)
	}
	return xdspb.MustFrom[*accesslogv3.AccessLogFilter](&f)
}

func TestFilters(t *testing.T) {
	ok := &Entry{Protocol: "HTTP/1.1", Method: "GET", Path: "/a", ResponseCode: 200, Duration: 20 * time.Millisecond,
		RequestHeaders: attributes.HTTPHeaders{"X-Debug": {"1"}}}
	fail := &Entry{Protocol: "HTTP/2", Method: "POST", Path: "/b", ResponseCode: 503, ResponseFlags: "UF,URX", Duration: 3 * time.Second}
	tcp := &Entry{ResponseFlags: "UH", Duration: time.Second}
	tests := []struct {
		name            string
		f               *accesslogv3.AccessLogFilter
		ok, fail, onTCP bool
	}{
		{"status ge 500", parseFilter(t, `status_code_filter { comparison { op: GE value { default_value: 500 runtime_key: "k" } } }`), false, true, false},
		{"status eq 200", parseFilter(t, `status_code_filter { comparison { op: EQ value { default_value: 200 runtime_key: "k" } } }`), true, false, false},
		{"status le 0 (tcp)", parseFilter(t, `status_code_filter { comparison { op: LE value { default_value: 0 runtime_key: "k" } } }`), false, false, true},
		{"status ne 200", parseFilter(t, `status_code_filter { comparison { op: NE value { default_value: 200 runtime_key: "k" } } }`), false, true, true},
		{"duration ge 1s", parseFilter(t, `duration_filter { comparison { op: GE value { default_value: 1000 runtime_key: "k" } } }`), false, true, true},
		{"not health check", parseFilter(t, `not_health_check_filter {}`), true, true, true},
		{"any flag", parseFilter(t, `response_flag_filter {}`), false, true, true},
		{"flag URX", parseFilter(t, `response_flag_filter { flags: "URX" }`), false, true, false},
		{"flag UH or NR", parseFilter(t, `response_flag_filter { flags: ["NR", "UH"] }`), false, false, true},
		{"header present", parseFilter(t, `header_filter { header { name: "x-debug" present_match: true } }`), true, false, false},
		{"header method", parseFilter(t, `header_filter { header { name: ":method" string_match { exact: "POST" } } }`), false, true, false},
		{"or", parseFilter(t, `or_filter { filters { response_flag_filter { flags: "UH" } } filters { status_code_filter { comparison { op: EQ value { default_value: 200 runtime_key: "k" } } } } }`), true, false, true},
		{"and", parseFilter(t, `and_filter { filters { response_flag_filter {} } filters { duration_filter { comparison { op: LE value { default_value: 1000 runtime_key: "k" } } } } }`), false, false, true},
		{"cel 5xx", xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `response.code >= 500`)), false, true, false},
		{"cel not 5xx", xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `!(response.code >= 500)`)), true, false, false},
		{"cel flags", xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `response.flags != 0`)), false, true, true},
		{"cel header", xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `request.headers["x-debug"] == "1"`)), true, false, false},
		{"cel protocol", xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `request.protocol == "HTTP/2"`)), false, true, false},
	}
	for _, tc := range tests {
		f, err := compileFilter("filter", tc.f)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := [3]bool{f(ok), f(fail), f(tcp)}; got != [3]bool{tc.ok, tc.fail, tc.onTCP} {
			t.Errorf("%s: ok/fail/tcp = %v, want %v", tc.name, got, [3]bool{tc.ok, tc.fail, tc.onTCP})
		}
	}
}

func TestFilterErrors(t *testing.T) {
	other, _ := anypb.New(&routev3.Route{})
	tests := []struct {
		f    *accesslogv3.AccessLogFilter
		want string
	}{
		{parseFilter(t, `runtime_filter { runtime_key: "k" }`), "filter.runtime_filter: not supported"},
		{parseFilter(t, `traceable_filter {}`), "filter.traceable_filter: not supported"},
		{parseFilter(t, `grpc_status_filter {}`), "filter.grpc_status_filter: not supported"},
		{parseFilter(t, `metadata_filter {}`), "filter.metadata_filter: not supported"},
		{parseFilter(t, `log_type_filter {}`), "filter.log_type_filter: not supported"},
		{parseFilter(t, `and_filter { filters { not_health_check_filter {} } }`), "filter.and_filter.filters: 1 filters, at least 2"},
		{parseFilter(t, `or_filter { filters { not_health_check_filter {} } filters { runtime_filter { runtime_key: "k" } } }`), "filter.or_filter.filters[1].runtime_filter: not supported"},
		{parseFilter(t, `response_flag_filter { flags: "XX" }`), `filter.response_flag_filter.flags[0]: unknown response flag "XX"`},
		{parseFilter(t, `status_code_filter {}`), "filter.status_code_filter.comparison: missing"},
		{parseFilter(t, `status_code_filter { comparison { op: GE } }`), "filter.status_code_filter.comparison.value: missing"},
		{parseFilter(t, `header_filter { header { name: "x" safe_regex_match { regex: "(" } } }`), "filter.header_filter.header.safe_regex_match"},
		{&accesslogv3.AccessLogFilter{}, "filter: no filter set"},
		{&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
			Name: "x", ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: other}}}}, "filter.extension_filter.typed_config: not supported"},
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `response.code +`)), "filter.extension_filter.typed_config.expression: compiling CEL expression"},
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `response.code + 1`)), "not bool"},
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `upstream.cx_pool_ready_duration > duration("1s")`)), "attribute upstream.cx_pool_ready_duration: not supported"},
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, ``)), "expression: empty"},
	}
	for _, tc := range tests {
		_, err := compileFilter("filter", tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("compileFilter(%v) = %v, want an error containing %q", tc.f, err, tc.want)
		}
	}
	// The CEL extension's other fields are refused by name.
	a, _ := anypb.New(&gcelv3.ExpressionFilter{Expression: "true", CelConfig: &gcorev3.CelExpressionConfig{EnableStringConversion: true}})
	f := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
		Name: "cel", ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: a}}}}
	if _, err := compileFilter("filter", f); err == nil || !strings.Contains(err.Error(), "typed_config.cel_config: not supported") {
		t.Errorf("cel_config: %v", err)
	}
}

// BenchmarkLogFiltered measures Log with a CEL filter that drops the entry: the filter's whole
// cost per request when it does not log.
func BenchmarkLogFiltered(b *testing.B) {
	f, err := compileFilter("filter", &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
		ExtensionFilter: &accesslogv3.ExtensionFilter{Name: "cel", ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(b, `response.code >= 500`)}}}})
	if err != nil {
		b.Fatal(err)
	}
	l := &Logger{logs: []fileLog{{filter: f}}}
	e := &Entry{Protocol: "HTTP/1.1", ResponseCode: 200}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
}

func mustAny(b *testing.B, expr string) *anypb.Any {
	a, err := anypb.New(&celv3.ExpressionFilter{Expression: expr})
	if err != nil {
		b.Fatal(err)
	}
	return a
}
