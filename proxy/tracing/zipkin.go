package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// zipkinSender posts Zipkin v2 JSON (collector_endpoint_version HTTP_JSON) to the collector
// endpoint through the collector cluster, with Host collector_hostname (the cluster name when
// unset), as Envoy's Zipkin reporter does. A reply other than 202 Accepted counts as
// reports_dropped, a failure as reports_failed, an unknown cluster as
// reports_skipped_no_cluster.
type zipkinSender struct {
	cluster, path, host string
	service, ip         string
	st                  *exporterStats
}

// ZipkinSpan is a span in Zipkin's v2 JSON model (exported for tests of receivers).
type ZipkinSpan struct {
	TraceID       string            `json:"traceId"`
	ParentID      string            `json:"parentId,omitempty"`
	ID            string            `json:"id"`
	Kind          string            `json:"kind,omitempty"`
	Name          string            `json:"name"`
	Timestamp     int64             `json:"timestamp"`
	Duration      int64             `json:"duration"`
	LocalEndpoint *ZipkinEndpoint   `json:"localEndpoint,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	Shared        bool              `json:"shared,omitempty"`
}

// ZipkinEndpoint is a Zipkin v2 endpoint.
type ZipkinEndpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
	IPv4        string `json:"ipv4,omitempty"`
	IPv6        string `json:"ipv6,omitempty"`
}

func (z *zipkinSender) endpoint() *ZipkinEndpoint {
	ep := &ZipkinEndpoint{ServiceName: z.service}
	if ip := z.ip; ip != "" {
		for i := 0; i < len(ip); i++ {
			if ip[i] == ':' {
				ep.IPv6 = ip
				return ep
			}
		}
		ep.IPv4 = ip
	}
	return ep
}

func zipkinSpan(sp *Span, ep *ZipkinEndpoint) ZipkinSpan {
	z := ZipkinSpan{TraceID: sp.TraceID.B3String(), ID: sp.SpanID.String(), Name: sp.Name,
		Timestamp: sp.Start.UnixMicro(), Duration: max(int64(sp.End.Sub(sp.Start)/time.Microsecond), 1),
		LocalEndpoint: ep, Shared: sp.Shared}
	if !sp.ParentID.IsZero() {
		z.ParentID = sp.ParentID.String()
	}
	switch sp.Kind {
	case KindServer:
		z.Kind = "SERVER"
	case KindClient:
		z.Kind = "CLIENT"
	}
	if len(sp.Attrs) > 0 {
		z.Tags = make(map[string]string, len(sp.Attrs))
		for _, a := range sp.Attrs {
			z.Tags[a.Key] = a.Value
		}
	}
	return z
}

func (z *zipkinSender) send(cluster func(string) RoundTripper) sendFunc {
	target := &httpTarget{cluster: z.cluster, host: z.host, path: z.path, timeout: DefaultTimeout}
	return func(ctx context.Context, spans []*Span) error {
		ep := z.endpoint()
		out := make([]ZipkinSpan, 0, len(spans))
		for _, sp := range spans {
			out = append(out, zipkinSpan(sp, ep))
		}
		body, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encoding Zipkin spans: %w", err)
		}
		err = target.post(ctx, cluster, "application/json", body)
		var nc errNoCluster
		var se *statusError
		switch {
		case err == nil:
			z.st.reportsSent.Inc()
		case errors.As(err, &nc):
			z.st.noCluster.Inc()
		case errors.As(err, &se):
			z.st.reportsDropped.Inc()
		default:
			z.st.reportsFailed.Inc()
		}
		return err
	}
}
