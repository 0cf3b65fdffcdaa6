package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sort"
	"strings"
	"time"
)

// The compared paths: sidecar pairs of features.go that differ in one thing, measured in
// rounds. A round measures each selected path once per protocol, in the comparisons' order and
// back in the next round (for telemetry: off, metrics, access log, tracing, full; full, ...,
// off), so that a slow drift of the machine's load weighs on every path alike. The summary
// gives each path's median CPU per request and its spread over the rounds, and its cost against
// the comparison's base path two ways: the ratio of the medians, and the median of the
// per-round ratios (each path against the base's run of its own round, a few seconds apart).

// comparison is a group of paths compared against the first, its base.
type comparison struct {
	title string // the summary's heading sentence
	pairs []sidecarPair
}

// comparisons are the compared groups: telemetry (issue 8) and the hop between sidecars over
// HTTP/2 instead of pooled HTTP/1.1 (issue 10 item 3).
var comparisons = []comparison{
	{title: "Telemetry (issue 8): each telemetry path's CPU per request against telemetry-off", pairs: telemetryPairs},
	{title: "The hop between sidecars (issue 10 item 3): HTTP/1.1 requests carried over HTTP/2 between the sidecars (DestinationRule h2UpgradePolicy: UPGRADE) against pooled HTTP/1.1", pairs: hopPairs},
}

// isCompared reports whether a path is one of the comparisons'.
func isCompared(name string) bool {
	for _, c := range comparisons {
		if slices.ContainsFunc(c.pairs, func(p sidecarPair) bool { return p.name == name }) {
			return true
		}
	}
	return false
}

// measureCompared measures the selected compared targets in rounds (rows numbered by round
// when there are several).
func measureCompared(ctx context.Context, fortio, work string, d time.Duration, rounds int, targets []target, selected func(target) bool) ([]row, error) {
	var order []target
	for _, h2 := range []bool{false, true} {
		for _, c := range comparisons {
			for _, p := range c.pairs {
				for _, t := range targets {
					if t.name == p.name && t.h2 == h2 && selected(t) {
						order = append(order, t)
					}
				}
			}
		}
	}
	var rows []row
	for round := 1; round <= rounds; round++ {
		runs := slices.Clone(order)
		if round%2 == 0 {
			slices.Reverse(runs)
		}
		for _, t := range runs {
			rates := t.rates
			if len(rates) == 0 {
				rates = []int{1000}
			}
			for _, qps := range rates {
				r, err := measure(ctx, fortio, work, t, qps, d)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", t.name, err)
				}
				if rounds > 1 {
					r.round = round
				}
				log.Printf("round %d/%d: %s (load average %s)", round, rounds, r, loadAverage())
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// comparisonTables summarizes the compared paths' runs, a table per comparison whose base was
// measured: per protocol and path, the median CPU per 1,000 requests with its spread (min–max),
// the median p99, and the cost against the base.
func comparisonTables(rows []row) string {
	var b strings.Builder
	for _, c := range comparisons {
		b.WriteString(comparisonTable(c, rows))
	}
	return b.String()
}

func comparisonTable(c comparison, rows []row) string {
	type key struct {
		h2   bool
		name string
	}
	runs := map[key][]row{}
	for _, r := range rows {
		if r.cpuPer1k > 0 {
			k := key{r.h2, r.name}
			runs[k] = append(runs[k], r)
		}
	}
	base := c.pairs[0].name
	var b strings.Builder
	for _, h2 := range []bool{false, true} {
		off := runs[key{h2, base}]
		if len(off) == 0 {
			continue
		}
		offByRound := map[int]float64{}
		for _, r := range off {
			offByRound[r.round] = r.cpuPer1k
		}
		offMedian := median(cpus(off))
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\n%s, over the rounds of this run (n runs each; spread is min–max). \"vs %[2]s, per round\" is the median of each round's ratio to the %[2]s run of the same round.\n\n", c.title, base)
			fmt.Fprintf(&b, "| proto | path | runs | CPU-s / 1k req, median | spread | vs %[1]s, medians | vs %[1]s, per round | p99 ms, median |\n", base)
			b.WriteString("|---|---|---|---|---|---|---|---|\n")
		}
		for _, p := range c.pairs {
			rs := runs[key{h2, p.name}]
			if len(rs) == 0 {
				continue
			}
			cs := cpus(rs)
			var ratios []float64
			for _, r := range rs {
				if o := offByRound[r.round]; o > 0 {
					ratios = append(ratios, r.cpuPer1k/o)
				}
			}
			vsMedian, vsRound := "–", "–"
			if p.name != base {
				vsMedian = fmt.Sprintf("%+.1f %%", (median(cs)/offMedian-1)*100)
				if len(ratios) > 0 {
					vsRound = fmt.Sprintf("%+.1f %%", (median(ratios)-1)*100)
				}
			}
			p99 := make([]float64, len(rs))
			for i, r := range rs {
				p99[i] = r.p99
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %.3f | %.3f–%.3f | %s | %s | %.3f |\n", proto(h2), p.name, len(rs), median(cs),
				slices.Min(cs), slices.Max(cs), vsMedian, vsRound, median(p99))
		}
	}
	return b.String()
}

func cpus(rs []row) []float64 {
	c := make([]float64, len(rs))
	for i, r := range rs {
		c[i] = r.cpuPer1k
	}
	return c
}

// median of xs (not empty); the mean of the middle two for an even count.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
