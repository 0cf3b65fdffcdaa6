package route

import (
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
)

// TestEveryFieldHandled fails when istio.io/api adds a field to a message this package
// translates: a new field must be mapped (or rejected with an error) before the upgrade, never
// ignored. The lists name the fields the translation reads or deliberately leaves to the caller.
func TestEveryFieldHandled(t *testing.T) {
	handled := map[proto.Message]string{
		&networking.VirtualService{}:           "hosts gateways http tls tcp export_to",
		&networking.HTTPRoute{}:                "name match route redirect direct_response delegate rewrite timeout retries fault mirror mirrors mirror_percent mirror_percentage cors_policy headers",
		&networking.HTTPMatchRequest{}:         "name uri scheme method authority headers port source_labels gateways query_params ignore_uri_case without_headers source_namespace stat_prefix",
		&networking.StringMatch{}:              "exact prefix regex",
		&networking.HTTPRouteDestination{}:     "destination weight headers",
		&networking.Destination{}:              "host subset port",
		&networking.PortSelector{}:             "number",
		&networking.HTTPRedirect{}:             "uri authority port derive_port scheme redirect_code prefix_rewrite",
		&networking.HTTPDirectResponse{}:       "status body",
		&networking.HTTPBody{}:                 "string bytes",
		&networking.Delegate{}:                 "name namespace",
		&networking.HTTPRewrite{}:              "uri authority uri_regex_rewrite",
		&networking.RegexRewrite{}:             "match rewrite",
		&networking.HTTPRetry{}:                "attempts per_try_timeout retry_on retry_remote_localities retry_ignore_previous_hosts backoff",
		&networking.HTTPFaultInjection{}:       "delay abort",
		&networking.HTTPFaultInjection_Delay{}: "percent fixed_delay exponential_delay percentage",
		&networking.HTTPFaultInjection_Abort{}: "http_status grpc_status http2_error percentage",
		&networking.HTTPMirrorPolicy{}:         "destination percentage",
		&networking.Percent{}:                  "value",
		&networking.CorsPolicy{}:               "allow_origin allow_origins allow_methods allow_headers expose_headers max_age allow_credentials unmatched_preflights",
		&networking.Headers{}:                  "request response",
		&networking.Headers_HeaderOperations{}: "set add remove",
		&networking.TCPRoute{}:                 "match route",
		&networking.TLSRoute{}:                 "match route",
		&networking.L4MatchAttributes{}:        "destination_subnets port source_subnet source_labels gateways source_namespace",
		&networking.TLSMatchAttributes{}:       "sni_hosts destination_subnets port source_labels gateways source_namespace",
		&networking.RouteDestination{}:         "destination weight",
	}
	for m, list := range handled {
		want := strings.Fields(list)
		sort.Strings(want)
		var got []string
		fields := m.ProtoReflect().Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			got = append(got, string(fields.Get(i).Name()))
		}
		sort.Strings(got)
		for _, f := range got {
			if !contains(want, f) {
				t.Errorf("%s.%s is not translated: map it (or reject it with an error) and add it here", m.ProtoReflect().Descriptor().Name(), f)
			}
		}
		for _, f := range want {
			if m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(f)) == nil {
				t.Errorf("%s has no field %s: update the list", m.ProtoReflect().Descriptor().Name(), f)
			}
		}
	}
}
