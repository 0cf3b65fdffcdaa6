package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The instruction count of the telemetry features (-instructions): proxy/l7's
// BenchmarkTelemetryPipeline (one request at a time through a sidecar's connection manager, an
// in-memory upstream) run under valgrind's cachegrind with one P (GOMAXPROCS=1, as the bench
// proxies run), which counts the instructions the process executes — the request path, the
// access-log writer and the span exporter, not the kernel. Each case runs twice, with
// instrShort and instrLong requests; the difference divided by the difference in requests is
// the count per request, free of the start-up. Other work on the machine changes the time this
// takes, not the count: with the garbage collector off (GOGC=off) two runs agree within about
// 0.5 %, which the wall-clock comparison of the sidecar pairs cannot do on a shared 2-core
// machine. The garbage is reported as B/op and allocs/op of a native run; the count with the
// collector on is printed too, but it moves by several thousand instructions with the heap's
// size (a feature that keeps a buffer makes the collector run less often in this small heap).
const (
	instrShort = 2000
	instrLong  = 12000
)

// instrSides are the connection manager's sides benchmarked, as the sub-benchmark names them.
var instrSides = []string{"outbound", "inbound"}

// instrCases are BenchmarkTelemetryPipeline's per-feature cases, "off" first.
var instrCases = []string{"off", "metrics", "accesslog", "tracing", "full"}

// instrRow is one case's count.
type instrRow struct {
	side, name    string
	perRequest    float64 // instructions per request, the garbage collector off
	withGC        float64 // the same with the collector on (GOGC=100): indicative
	bytes, allocs float64 // B/op and allocs/op of a native run
	nsPerOp       float64 // of the native run: indicative only
}

// runInstructions builds proxy/l7's test binary (unless bin names one), counts each case's
// instructions per request and prints (and with out, records) the table.
func runInstructions(out, bin string) error {
	if _, err := exec.LookPath("valgrind"); err != nil {
		return fmt.Errorf("valgrind not installed (apt-get install valgrind): %w", err)
	}
	work, err := os.MkdirTemp("", "proxybench-instr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if bin == "" {
		bin = filepath.Join(work, "l7.test")
		build := exec.Command("go", "test", "-c", "-o", bin, "./proxy/l7/")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building proxy/l7's tests: %w", err)
		}
	}
	var rows []instrRow
	for _, side := range instrSides {
		for _, c := range instrCases {
			r := instrRow{side: side, name: c}
			bench := "TelemetryPipeline/" + side + "/" + c + "$"
			var err error
			if r.perRequest, err = perRequest(bin, bench, "off"); err != nil {
				return err
			}
			if r.withGC, err = perRequest(bin, bench, "100"); err != nil {
				return err
			}
			if r.nsPerOp, r.bytes, r.allocs, err = benchmem(bin, bench); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s/%s: %.0f instructions per request (%.0f with GC), %.0f B/op, %.0f allocs/op\n",
				side, c, r.perRequest, r.withGC, r.bytes, r.allocs)
			rows = append(rows, r)
		}
	}
	table := renderInstructions(rows)
	fmt.Print(table)
	if out == "" {
		return nil
	}
	return updateDocSection(out, instrBegin, instrEnd, table)
}

// perRequest is the benchmark's instructions per request with GOGC=gogc.
func perRequest(bin, bench, gogc string) (float64, error) {
	short, err := cachegrind(bin, bench, gogc, instrShort)
	if err != nil {
		return 0, err
	}
	long, err := cachegrind(bin, bench, gogc, instrLong)
	if err != nil {
		return 0, err
	}
	return float64(long-short) / (instrLong - instrShort), nil
}

var instrRefs = regexp.MustCompile(`I\s+refs:\s+([0-9,]+)`)

// cachegrind runs the benchmark bench for n requests with one P and GOGC=gogc under cachegrind
// and returns the instructions the whole process executed.
func cachegrind(bin, bench, gogc string, n int) (int64, error) {
	cmd := exec.Command("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
		bin, "-test.run", "^$", "-test.bench", bench, "-test.benchtime", fmt.Sprintf("%dx", n), "-test.cpu", "1")
	cmd.Env = append(os.Environ(), "GOGC="+gogc)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("valgrind %s: %w\n%s", bench, err, outb.String())
	}
	m := instrRefs.FindStringSubmatch(outb.String())
	if m == nil {
		return 0, fmt.Errorf("valgrind %s: no instruction count in its output:\n%s", bench, outb.String())
	}
	return strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
}

// benchmem runs the benchmark natively (one P, 20,000 requests) and returns its ns/op, B/op
// and allocs/op.
func benchmem(bin, bench string) (ns, b, allocs float64, err error) {
	cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", bench, "-test.benchtime", "20000x", "-test.cpu", "1", "-test.benchmem")
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w\n%s", bench, err, outb)
	}
	sc := bufio.NewScanner(bytes.NewReader(outb))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
			switch f[i+1] {
			case "ns/op":
				ns = v
			case "B/op":
				b = v
			case "allocs/op":
				allocs = v
			}
		}
		return ns, b, allocs, nil
	}
	return 0, 0, 0, fmt.Errorf("%s: no benchmark line in:\n%s", bench, outb)
}

const (
	instrBegin = "<!-- proxybench-instructions:begin -->"
	instrEnd   = "<!-- proxybench-instructions:end -->"
)

// renderInstructions is the Markdown table of the counts, each case against "off" of its side.
func renderInstructions(rows []instrRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nInstructions per request through a sidecar's connection manager (`BenchmarkTelemetryPipeline`, in-memory upstream, GOMAXPROCS=1), counted by valgrind's cachegrind (%d − %d requests), %s; the kernel is not counted. The garbage is in B/op and allocs/op; the count with the collector on moves with the heap's size and is indicative.\n\n",
		instrBegin, instrLong, instrShort, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| side | telemetry | instructions / request, GOGC=off | vs off | B/op | allocs/op | instructions with GC (indicative) | vs off |\n|---|---|---|---|---|---|---|---|\n")
	off, offGC := map[string]float64{}, map[string]float64{}
	for _, r := range rows {
		if r.name == "off" {
			off[r.side], offGC[r.side] = r.perRequest, r.withGC
		}
	}
	delta := func(v, o float64, name string) string {
		if o <= 0 || name == "off" {
			return "–"
		}
		return fmt.Sprintf("%+.0f (%+.1f %%)", v-o, (v/o-1)*100)
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %.0f | %.0f | %.0f | %s |\n", r.side, r.name, r.perRequest, delta(r.perRequest, off[r.side], r.name),
			r.bytes, r.allocs, r.withGC, delta(r.withGC, offGC[r.side], r.name))
	}
	b.WriteString("\nReproduce: `go run ./bench/proxybench -instructions`\n" + instrEnd + "\n")
	return b.String()
}
