package telemetry

import (
	"sort"
	"strconv"
	"strings"
)

// writeHTTP renders the HTTP families, series sorted by labels for a stable output. Series of
// requests with istio.stats overrides have labels of their own per family (httpRows).
func (r *Recorder) writeHTTP(b *strings.Builder) {
	for m, name := range httpMetricNames {
		rows := r.httpRows(m)
		if len(rows) == 0 {
			continue
		}
		name = "istio_" + name
		switch m {
		case metricRequests, metricRequestMessages, metricResponseMessages:
			b.WriteString("# TYPE " + name + " counter\n")
			for _, row := range rows {
				var n uint64
				for _, s := range row.series {
					n += httpCounter(m, s)
				}
				sample(b, name, row.labels, n)
			}
			continue
		}
		b.WriteString("# TYPE " + name + " histogram\n")
		for _, row := range rows {
			hs := make([]*histogram, len(row.series))
			for i, s := range row.series {
				hs[i] = [...]*histogram{nil, &s.duration, &s.reqBytes, &s.respBytes}[m]
			}
			writeHistogram(b, name, row.labels, hs...)
		}
	}
}

// httpCounter reads counter metric m (an index of httpMetricNames) of a series.
func httpCounter(m int, s *httpSeries) uint64 {
	switch m {
	case metricRequestMessages:
		return s.reqMsgs.Load()
	case metricResponseMessages:
		return s.respMsgs.Load()
	}
	return s.requests()
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

// writeHistogram renders one histogram series, the sum of hs: cumulative buckets, +Inf, sum
// and count.
func writeHistogram(b *strings.Builder, name, labels string, hs ...*histogram) {
	var cum, sum uint64
	for i := range hs[0].counts {
		for _, h := range hs {
			cum += h.counts[i].Load()
		}
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
	for _, h := range hs {
		sum += h.sum.Load()
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
