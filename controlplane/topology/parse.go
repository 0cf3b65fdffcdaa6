package topology

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Istio's standard metrics that the graph is computed from.
const (
	metricRequests = "istio_requests_total"
	metricDuration = "istio_request_duration_milliseconds"
	metricTCPSent  = "istio_tcp_sent_bytes_total"
	metricTCPRecv  = "istio_tcp_received_bytes_total"
)

// Series kinds: which counter a seriesKey names.
const (
	kindRequests uint8 = iota + 1
	kindDurationBucket
	kindTCPSent
	kindTCPReceived
)

// maxLabelValue bounds each kept label value (a request's Host header can become
// destination_service): longer values are cut, so distinct long values may share a series.
const maxLabelValue = 256

// maxLineLength bounds one line of the exposition text.
const maxLineLength = 64 << 10

// labels are the labels of Istio's standard metrics that the graph reads. Comparable, so that
// a seriesKey is a map key.
type labels struct {
	Reporter        string // "source" or "destination"
	SourceWorkload  string
	SourceNamespace string // source_workload_namespace
	SourcePrincipal string
	DestService     string // destination_service (a hostname)
	DestServiceName string
	DestServiceNS   string // destination_service_namespace
	DestWorkload    string
	DestNamespace   string // destination_workload_namespace
	Protocol        string // request_protocol: http, grpc; "tcp" for istio_tcp_*
	ResponseCode    string
	SecurityPolicy  string // connection_security_policy: mutual_tls, none, unknown
	DestVersion     string // destination_canonical_revision, shown on workloads
}

// seriesKey names one counter value of one scrape: a counter series, or one bucket (Le) of the
// request duration histogram.
type seriesKey struct {
	kind   uint8
	labels labels
	le     float64 // upper bound of a duration bucket (+Inf included); 0 otherwise
}

// sample is what one scrape of one proxy kept: Istio's series, by key.
type sample map[seriesKey]float64

// parseExposition reads Prometheus text exposition (version 0.0.4) and keeps Istio's standard
// metrics that the graph uses. Only lines about istio_* metrics are parsed; a line longer than
// maxLineLength, a malformed istio_* line, or more than maxSeries kept values is an error.
func parseExposition(body []byte, maxSeries int) (sample, error) {
	var kept bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), maxLineLength)
	for sc.Scan() {
		line := sc.Bytes()
		if relevant(line) {
			kept.Write(line)
			kept.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(&kept)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	s := sample{}
	add := func(k seriesKey, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil // not a counter value; ignored like a missing series
		}
		if _, ok := s[k]; !ok && len(s) >= maxSeries {
			return fmt.Errorf("more than %d series of Istio's standard metrics", maxSeries)
		}
		s[k] += v
		return nil
	}
	for name, kind := range map[string]uint8{metricRequests: kindRequests, metricTCPSent: kindTCPSent, metricTCPRecv: kindTCPReceived} {
		mf := families[name]
		if mf == nil {
			continue
		}
		if t := mf.GetType(); t != dto.MetricType_COUNTER && t != dto.MetricType_UNTYPED {
			return nil, fmt.Errorf("parsing metrics: %s is a %s, want a counter", name, t)
		}
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			if kind != kindRequests {
				l.Protocol, l.ResponseCode = "tcp", ""
			}
			v := m.GetCounter().GetValue()
			if mf.GetType() == dto.MetricType_UNTYPED {
				v = m.GetUntyped().GetValue()
			}
			if err := add(seriesKey{kind: kind, labels: l}, v); err != nil {
				return nil, err
			}
		}
	}
	if mf := families[metricDuration]; mf != nil {
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			return nil, fmt.Errorf("parsing metrics: %s is a %s, want a histogram", metricDuration, mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			h := m.GetHistogram()
			inf := false
			for _, b := range h.GetBucket() {
				le := b.GetUpperBound()
				if math.IsNaN(le) || math.IsInf(le, -1) {
					continue
				}
				inf = inf || math.IsInf(le, 1)
				if err := add(seriesKey{kind: kindDurationBucket, labels: l, le: le}, count(b.GetCumulativeCount(), b.GetCumulativeCountFloat())); err != nil {
					return nil, err
				}
			}
			if !inf { // the +Inf bucket is the sample count
				if err := add(seriesKey{kind: kindDurationBucket, labels: l, le: math.Inf(1)}, count(h.GetSampleCount(), h.GetSampleCountFloat())); err != nil {
					return nil, err
				}
			}
		}
	}
	return s, nil
}

// relevant reports whether an exposition line is about an istio_* metric the graph reads.
func relevant(line []byte) bool {
	line = bytes.TrimLeft(line, " \t")
	if bytes.HasPrefix(line, []byte("#")) {
		f := bytes.Fields(line)
		return len(f) >= 3 && (string(f[1]) == "TYPE" || string(f[1]) == "HELP") && wanted(string(f[2]))
	}
	name := line
	if i := bytes.IndexAny(line, "{ \t"); i >= 0 {
		name = line[:i]
	}
	return wanted(string(name))
}

// wanted reports whether a metric name (with a histogram's _bucket, _sum or _count suffix) is
// one of the graph's metrics.
func wanted(name string) bool {
	switch name {
	case metricRequests, metricTCPSent, metricTCPRecv,
		metricDuration + "_bucket", metricDuration + "_sum", metricDuration + "_count", metricDuration:
		return true
	}
	return false
}

func count(i uint64, f float64) float64 {
	if f != 0 {
		return f
	}
	return float64(i)
}

// labelsOf extracts the graph's labels of a metric, each cut to maxLabelValue bytes.
func labelsOf(m *dto.Metric) labels {
	var l labels
	for _, p := range m.GetLabel() {
		v := p.GetValue()
		if len(v) > maxLabelValue {
			v = strings.ToValidUTF8(v[:maxLabelValue], "")
		}
		switch p.GetName() {
		case "reporter":
			l.Reporter = v
		case "source_workload":
			l.SourceWorkload = v
		case "source_workload_namespace":
			l.SourceNamespace = v
		case "source_principal":
			l.SourcePrincipal = v
		case "destination_service":
			l.DestService = v
		case "destination_service_name":
			l.DestServiceName = v
		case "destination_service_namespace":
			l.DestServiceNS = v
		case "destination_workload":
			l.DestWorkload = v
		case "destination_workload_namespace":
			l.DestNamespace = v
		case "request_protocol":
			l.Protocol = v
		case "response_code":
			l.ResponseCode = v
		case "connection_security_policy":
			l.SecurityPolicy = v
		case "destination_canonical_revision":
			l.DestVersion = v
		}
	}
	return l
}
