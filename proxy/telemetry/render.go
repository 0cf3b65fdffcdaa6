package telemetry

import (
	"sort"
	"strconv"
	"strings"
)

// writeHTTP renders the HTTP families, series sorted by labels for a stable output.
func (r *Recorder) writeHTTP(b *strings.Builder) {
	ss := r.http.series()
	if len(ss) == 0 {
		return
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].labels < ss[j].labels })
	b.WriteString("# TYPE istio_requests_total counter\n")
	for _, s := range ss {
		sample(b, "istio_requests_total", s.labels, s.requests.Load())
	}
	for _, f := range []struct {
		name string
		h    func(*httpSeries) *histogram
	}{
		{"istio_request_duration_milliseconds", func(s *httpSeries) *histogram { return &s.duration }},
		{"istio_request_bytes", func(s *httpSeries) *histogram { return &s.reqBytes }},
		{"istio_response_bytes", func(s *httpSeries) *histogram { return &s.respBytes }},
	} {
		b.WriteString("# TYPE " + f.name + " histogram\n")
		for _, s := range ss {
			writeHistogram(b, f.name, s.labels, f.h(s))
		}
	}
}

// writeHistogram renders one histogram series: cumulative buckets, +Inf, sum and count.
func writeHistogram(b *strings.Builder, name, labels string, h *histogram) {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		le := "+Inf"
		if i < len(bucketLabels) {
			le = bucketLabels[i]
		}
		b.WriteString(name)
		b.WriteString("_bucket{")
		b.WriteString(labels)
		b.WriteString(`,le="`)
		b.WriteString(le)
		b.WriteString(`"} `)
		b.WriteString(strconv.FormatUint(cum, 10))
		b.WriteByte('\n')
	}
	sample(b, name+"_sum", labels, h.sum.Load())
	sample(b, name+"_count", labels, cum)
}

func sample(b *strings.Builder, name, labels string, v uint64) {
	b.WriteString(name)
	b.WriteByte('{')
	b.WriteString(labels)
	b.WriteString("} ")
	b.WriteString(strconv.FormatUint(v, 10))
	b.WriteByte('\n')
}
