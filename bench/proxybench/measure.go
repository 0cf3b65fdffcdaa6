package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// row is one measured run.
type row struct {
	name          string
	h2            bool
	qps           int // requested; 0 = maximum
	actualQPS     float64
	requests      int64
	errors        int64
	p50, p90, p99 float64 // milliseconds
	cpuPer1k      float64 // proxy CPU-seconds per 1,000 requests (summed over the path's proxies)
	rssIdle       float64 // MiB, summed, before the run
	rssLoad       float64 // MiB, summed, at the end of the run
	proxies       int
	newConns      int64 // sidecar pairs: connections the client sidecar opened to the server sidecar during the run; -1 elsewhere
	round         int   // the telemetry paths with -rounds above 1: which round (from 1); 0 otherwise
}

func (r row) String() string {
	s := fmt.Sprintf("%-18s %-3s qps=%-5d actual=%.0f p50=%.3fms p99=%.3fms errors=%d cpu/1k=%.3fs rss=%.1f/%.1fMiB",
		r.name, proto(r.h2), r.qps, r.actualQPS, r.p50, r.p99, r.errors, r.cpuPer1k, r.rssIdle, r.rssLoad)
	if r.newConns >= 0 {
		s += fmt.Sprintf(" new-upstream-conns=%d", r.newConns)
	}
	return s
}

func proto(h2 bool) string {
	if h2 {
		return "h2"
	}
	return "h1"
}

// fortioResult is the part of fortio's JSON output used here.
type fortioResult struct {
	ActualQPS         float64
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
}

// measure runs fortio against t for d at qps (0 = as fast as possible) with 1 KiB POST bodies
// echoed back, and samples the proxies' CPU time and RSS around the run.
func measure(ctx context.Context, fortio, work string, t target, qps int, d time.Duration) (row, error) {
	r := row{name: t.name, h2: t.h2, qps: qps, proxies: len(t.proxies), newConns: -1}
	conns := "16"
	q := fmt.Sprint(qps)
	if qps == 0 {
		q = "-1"
		conns = "32"
	}
	// Warm up connections and pools briefly (bounded), unmeasured.
	if err := runFortio(ctx, fortio, work, t, "200", "4", 2*time.Second, filepath.Join(work, "warm.json")); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	// For a sidecar pair, the connections its client sidecar opens to the server sidecar (each
	// one a TLS handshake in the mTLS pair): few when connections are reused.
	cxStat := "cluster." + t.pair.cluster() + ".upstream_cx_total"
	var cx0 int64
	if t.pair.service != "" {
		var err error
		if cx0, err = statValue(ctx, t.pair.clientAdm, cxStat); err != nil {
			return r, err
		}
	}
	cpu0 := make([]float64, len(t.proxies))
	for i, p := range t.proxies {
		cpu0[i] = p.cpuSeconds()
		r.rssIdle += p.rssMiB()
	}
	jsonPath := filepath.Join(work, "run.json")
	if err := runFortio(ctx, fortio, work, t, q, conns, d, jsonPath); err != nil {
		return r, err
	}
	var cpu float64
	for i, p := range t.proxies {
		cpu += p.cpuSeconds() - cpu0[i]
		r.rssLoad += p.rssMiB()
	}
	if t.pair.service != "" {
		cx1, err := statValue(ctx, t.pair.clientAdm, cxStat)
		if err != nil {
			return r, err
		}
		r.newConns = cx1 - cx0
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return r, err
	}
	var res fortioResult
	if err := json.Unmarshal(b, &res); err != nil {
		return r, fmt.Errorf("reading fortio output: %w", err)
	}
	r.actualQPS = res.ActualQPS
	r.requests = res.DurationHistogram.Count
	for code, n := range res.RetCodes {
		if code != "200" {
			r.errors += n
		}
	}
	if r.errors > 0 {
		log.Printf("%s %s at %d rps: answers by code %v (fortio's -1 is a request that got no answer)", t.name, proto(t.h2), qps, res.RetCodes)
	}
	for _, p := range res.DurationHistogram.Percentiles {
		switch p.Percentile {
		case 50:
			r.p50 = p.Value * 1000
		case 90:
			r.p90 = p.Value * 1000
		case 99:
			r.p99 = p.Value * 1000
		}
	}
	if r.requests > 0 && len(t.proxies) > 0 {
		r.cpuPer1k = cpu / (float64(r.requests) / 1000)
	}
	return r, nil
}

func runFortio(ctx context.Context, fortio, work string, t target, qps, conns string, d time.Duration, jsonPath string) error {
	args := []string{"load", "-qps", qps, "-c", conns, "-t", d.String(), "-payload-size", "1024",
		"-p", "50,90,99", "-json", jsonPath, "-logger-json=false", "-nocatchup", "-allow-initial-errors"}
	if t.h2 {
		args = append(args, "-h2")
	}
	if t.uniform {
		args = append(args, "-uniform")
	}
	if t.host != "" {
		args = append(args, "-H", "Host: "+t.host)
	}
	args = append(args, t.url+"?size=1024")
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", "0", fortio}, args...)...)
	if _, err := exec.LookPath("taskset"); err != nil {
		cmd = exec.CommandContext(ctx, fortio, args...)
	}
	logf, err := os.OpenFile(filepath.Join(work, "fortio.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("fortio %s: %w (log: %s/fortio.log)", strings.Join(args, " "), err, work)
	}
	return nil
}

const (
	markBegin = "<!-- proxybench:begin -->"
	markEnd   = "<!-- proxybench:end -->"
)

// loadAverage returns the machine's load averages from /proc/loadavg, or "unknown": other work
// on the machine inflates latencies and CPU figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

func renderTable(rows []row, d time.Duration, uniform bool) string {
	var b strings.Builder
	host, _ := os.Hostname()
	arrivals := "fortio's connections sending in phase (at 1,000 rps over 16 connections, a burst of 16 requests every 16 ms)"
	if uniform {
		arrivals = "requests spread uniformly over time (fortio -uniform)"
	}
	fmt.Fprintf(&b, "%s\nMeasured %s on %s (2 cores), %s per run, 1 KiB POST bodies echoed back, %s; proxies pinned to CPU 1 with one core each, fortio and the backend on CPU 0. Load average at the end (1, 5, 15 min): %s. CPU-s and RSS are summed over the path's proxies (two for a pair).\n\n",
		markBegin, time.Now().UTC().Format("2006-01-02 15:04 MST"), host, d, arrivals, loadAverage())
	b.WriteString("| path | proto | target rps | achieved rps | p50 ms | p90 ms | p99 ms | errors | proxy CPU-s / 1k req | RSS idle MiB | RSS load MiB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		target := "max"
		if r.qps > 0 {
			target = fmt.Sprint(r.qps)
		}
		cpu, idle, load := "–", "–", "–"
		if r.proxies > 0 {
			cpu = fmt.Sprintf("%.3f", r.cpuPer1k)
			idle = fmt.Sprintf("%.1f", r.rssIdle)
			load = fmt.Sprintf("%.1f", r.rssLoad)
		}
		name := r.name
		if r.round > 0 {
			name += fmt.Sprintf(" #%d", r.round)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.3f | %.3f | %.3f | %d | %s | %s | %s |\n",
			name, proto(r.h2), target, r.actualQPS, r.p50, r.p90, r.p99, r.errors, cpu, idle, load)
	}
	b.WriteString(mtlsTable(rows))
	b.WriteString(comparisonTables(rows))
	flags := "-duration " + d.String()
	if uniform {
		flags += " -uniform"
	}
	b.WriteString("\nReproduce: `make build && go run ./bench/proxybench " + flags + "`\n" + markEnd + "\n")
	return b.String()
}

// mtlsTable compares the sidecar pair with mutual TLS to the same pair in plaintext, row by row
// of the same run (empty when either was not measured).
func mtlsTable(rows []row) string {
	type key struct {
		h2  bool
		qps int
	}
	plain := map[key]row{}
	for _, r := range rows {
		if r.name == plainPair.name {
			plain[key{r.h2, r.qps}] = r
		}
	}
	var b strings.Builder
	for _, m := range rows {
		p, ok := plain[key{m.h2, m.qps}]
		if m.name != mtlsPair.name || !ok {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nmTLS overhead: the sidecar pair with identities from straitd's CA, whose hop is mutual TLS (automatic mTLS), against the same sidecar pair in plaintext, in the same run. CPU-s are summed over both sidecars; new connections are those the client sidecar opened to the server sidecar during the run (in the mTLS pair each is a full TLS handshake).\n\n")
			b.WriteString("| proto | target rps | achieved rps, plaintext / mTLS | CPU-s / 1k req, plaintext | CPU-s / 1k req, mTLS | mTLS CPU per request | p50 ms, plaintext / mTLS | p99 ms, plaintext / mTLS | new connections, plaintext / mTLS |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		}
		target := "max"
		if m.qps > 0 {
			target = fmt.Sprint(m.qps)
		}
		over := "–"
		if p.cpuPer1k > 0 {
			over = fmt.Sprintf("%+.1f %%", (m.cpuPer1k/p.cpuPer1k-1)*100)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f / %.0f | %.3f | %.3f | %s | %.3f / %.3f | %.3f / %.3f | %d / %d |\n",
			proto(m.h2), target, p.actualQPS, m.actualQPS, p.cpuPer1k, m.cpuPer1k, over, p.p50, m.p50, p.p99, m.p99, p.newConns, m.newConns)
	}
	return b.String()
}

// updateDoc replaces the proxybench section of path (or appends it).
func updateDoc(path, section string) error {
	return updateDocSection(path, markBegin, markEnd, section)
}

// updateDocSection replaces the section of path between the markers begin and end (section
// includes them and ends with a newline), or appends it when path has none.
func updateDocSection(path, begin, end, section string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + section + strings.TrimPrefix(s[j+len(end):], "\n")
	} else {
		s += "\n" + section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
