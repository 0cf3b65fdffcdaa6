package telemetry

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	statspb "istio.io/api/envoy/extensions/stats"

	"github.com/strait-mesh/strait/proxy/stats"
)

// grpcMessage frames payload as a gRPC length-prefixed message.
func grpcMessage(payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestGRPCFrames(t *testing.T) {
	var stream []byte
	for _, n := range []int{0, 1, 5, 300, 70000} {
		stream = append(stream, grpcMessage(make([]byte, n))...)
	}
	// However the bytes are cut, five messages are counted.
	for _, chunk := range []int{1, 2, 3, 5, 6, 7, 4096, len(stream)} {
		var f GRPCFrames
		for p := stream; len(p) > 0; {
			n := min(chunk, len(p))
			f.Feed(p[:n])
			p = p[n:]
		}
		if f.Messages() != 5 {
			t.Errorf("chunks of %d: %d messages, want 5", chunk, f.Messages())
		}
	}
	// A message cut short counts once it started; a header claiming 4 GiB needs no memory.
	var f GRPCFrames
	f.Feed([]byte{0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	if f.Messages() != 1 {
		t.Errorf("truncated: %d messages, want 1", f.Messages())
	}
	var empty GRPCFrames
	empty.Feed(nil)
	if empty.Messages() != 0 {
		t.Errorf("no bytes: %d messages", empty.Messages())
	}
}

func TestGRPCFramesDoesNotAllocate(t *testing.T) {
	msg := grpcMessage(make([]byte, 100))
	var f GRPCFrames
	if n := testing.AllocsPerRun(100, func() { f.Feed(msg) }); n != 0 {
		t.Errorf("%v allocations per Feed", n)
	}
}

// TestRecordGRPCMessages: gRPC requests add their message counts to
// istio_request_messages_total and istio_response_messages_total; HTTP requests have no such
// series. An override may drop them or change their labels.
func TestRecordGRPCMessages(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st})
	grpc := func(req, resp uint64) *HTTPRequest {
		return &HTTPRequest{Reporter: Source, Code: 200, GRPC: true, GRPCStatus: "0",
			Cluster: "outbound|9080||ratings.default.svc.cluster.local", Duration: time.Millisecond,
			RequestMessages: req, ResponseMessages: resp}
	}
	r.RecordHTTP(grpc(1, 1))
	r.RecordHTTP(grpc(5, 7))
	r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|9080||ratings.default.svc.cluster.local",
		RequestMessages: 3}) // not gRPC: not counted
	out := render(t, st)
	lbl := `reporter="source",source_workload="reviews-v1",source_canonical_service="reviews",source_canonical_revision="v1",` +
		`source_workload_namespace="default",source_principal="unknown",source_app="reviews",` +
		`source_version="v1",source_cluster="Kubernetes",destination_workload="unknown",destination_workload_namespace="unknown",` +
		`destination_principal="unknown",destination_app="unknown",destination_version="unknown",` +
		`destination_service="ratings.default.svc.cluster.local",destination_canonical_service="unknown",destination_canonical_revision="latest",` +
		`destination_service_name="ratings",destination_service_namespace="default",destination_cluster="unknown",` +
		`request_protocol="grpc",response_code="200",grpc_response_status="0",response_flags="-",connection_security_policy="unknown"`
	for _, line := range []string{
		"# TYPE istio_request_messages_total counter",
		"istio_request_messages_total{" + lbl + "} 6",
		"# TYPE istio_response_messages_total counter",
		"istio_response_messages_total{" + lbl + "} 8",
		"istio_requests_total{" + lbl + "} 2",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("output lacks %s", line)
		}
	}
	if n := strings.Count(out, "istio_request_messages_total{"); n != 1 {
		t.Errorf("%d istio_request_messages_total series, want 1 (gRPC only)", n)
	}
	if t.Failed() {
		t.Log(out)
	}

	// Overrides: request messages dropped, response messages without source_app.
	st = stats.NewStore()
	r = New(Options{Local: local, Stats: st})
	c := statsConfig(t, &statspb.PluginConfig{Metrics: []*statspb.MetricConfig{
		{Name: "request_messages_total", Drop: true},
		{Name: "response_messages_total", TagsToRemove: []string{"source_app"}},
	}})
	q := grpc(2, 3)
	q.Overrides = c.Overrides
	r.RecordHTTP(q)
	out = render(t, st)
	if strings.Contains(out, "istio_request_messages_total") {
		t.Errorf("request_messages_total was dropped:\n%s", out)
	}
	want := "istio_response_messages_total{" + strings.Replace(lbl, `source_app="reviews",`, "", 1) + "} 3\n"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %s\n%s", want, out)
	}
	if !strings.Contains(out, "istio_requests_total{"+lbl+"} 1\n") {
		t.Errorf("requests_total changed by the message overrides:\n%s", out)
	}
}
