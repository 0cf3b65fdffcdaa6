package telemetry

import (
	"sort"
	"strconv"
	"strings"
)

// writeHTTP renders the HTTP families, series sorted by labels for a stable output. Series
// with equal labels (a peer that left the workload table and came back is a new key) are
// rendered as one, their values added.
func (r *Recorder) writeHTTP(b *strings.Builder) {
	ss := r.http.series()
	if len(ss) == 0 {
		return
	}
	labels := make([]string, len(ss))
	for i, s := range ss {
		labels[i] = r.httpLabels(s.key, s.flagText)
	}
	groups := byLabels(ss, labels)
	b.WriteString("# TYPE istio_requests_total counter\n")
	for _, g := range groups {
		var n uint64
		for _, s := range g.series {
			n += s.requests.Load()
		}
		sample(b, "istio_requests_total", g.labels, n)
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
		for _, g := range groups {
			var counts [len(Buckets) + 1]uint64
			var sum uint64
			for _, s := range g.series {
				h := f.h(s)
				for i := range h.counts {
					counts[i] += h.counts[i].Load()
				}
				sum += h.sum.Load()
			}
			writeHistogram(b, f.name, g.labels, &counts, sum)
		}
	}
}

// group is the series with one label text.
type group[S any] struct {
	labels string
	series []S
}

// byLabels sorts series by their label texts (labels[i] is ss[i]'s) and groups equal ones.
func byLabels[S any](ss []S, labels []string) []group[S] {
	idx := make([]int, len(ss))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return labels[idx[a]] < labels[idx[b]] })
	var out []group[S]
	for _, i := range idx {
		if n := len(out); n > 0 && out[n-1].labels == labels[i] {
			out[n-1].series = append(out[n-1].series, ss[i])
			continue
		}
		out = append(out, group[S]{labels: labels[i], series: []S{ss[i]}})
	}
	return out
}

// writeHistogram renders one histogram series from its per-bucket counts: cumulative buckets,
// +Inf, sum and count.
func writeHistogram(b *strings.Builder, name, labels string, counts *[len(Buckets) + 1]uint64, sum uint64) {
	var cum uint64
	for i := range counts {
		cum += counts[i]
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
	sample(b, name+"_sum", labels, sum)
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
