// Package accesslogtest builds access log configuration for the tests of the packages that
// compile it (proxy/accesslog, and the listeners and connection managers that log through it).
package accesslogtest

import (
	"testing"

	"google.golang.org/protobuf/types/known/anypb"

	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	celv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/filters/cel/v3"
)

// CELFilter is Envoy's CEL access log filter (envoy.access_loggers.extension_filters.cel) for
// expr: what Istio's Telemetry accessLogging.filter.expression becomes.
func CELFilter(t testing.TB, expr string) *accesslogv3.AccessLogFilter {
	t.Helper()
	a, err := anypb.New(&celv3.ExpressionFilter{Expression: expr})
	if err != nil {
		t.Fatal(err)
	}
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
		ExtensionFilter: &accesslogv3.ExtensionFilter{Name: "envoy.access_loggers.extension_filters.cel",
			ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: a}}}}
}
