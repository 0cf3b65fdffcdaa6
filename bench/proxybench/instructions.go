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
// access-log writer, the span exporter and the garbage collector, not the kernel. Each case runs
// twice, with instrShort and instrLong requests; the difference divided by the difference in
// requests is the count per request, free of the start-up. Other work on the machine changes
// the time this takes, not the count: two runs agree within about 1 %, which the wall-clock
// comparison of the sidecar pairs cannot do on a shared 2-core machine.
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
	perRequest    float64 // instructions per request, with the garbage collector
	bytes, allocs float64 // B/op and allocs/op of a native run
	nsPerOp       float64 // of the native run: indicative only
}

// runInstructions builds proxy/l7's test binary, counts each case's instructions per request
// and prints (and with out, records) the table.
func runInstructions(out string) error {
	if _, err := exec.LookPath("valgrind"); err != nil {
		return fmt.Errorf("valgrind not installed (apt-get install valgrind): %w", err)
	}
	work, err := os.MkdirTemp("", "proxybench-instr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "l7.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "./proxy/l7/")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building proxy/l7's tests: %w", err)
	}
	var rows []instrRow
	for _, side := range instrSides {
		for _, c := range instrCases {
			r := instrRow{side: side, name: c}
			bench := "TelemetryPipeline/" + side + "/" + c + "$"
			short, err := cachegrind(bin, bench, instrShort)
			if err != nil {
				return err
			}
			long, err := cachegrind(bin, bench, instrLong)
			if err != nil {
				return err
			}
			r.perRequest = float64(long-short) / (instrLong - instrShort)
			if r.nsPerOp, r.bytes, r.allocs, err = benchmem(bin, bench); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s/%s: %.0f instructions per request, %.0f B/op, %.0f allocs/op\n", side, c, r.perRequest, r.bytes, r.allocs)
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

var instrRefs = regexp.MustCompile(`I\s+refs:\s+([0-9,]+)`)

// cachegrind runs the benchmark bench for n requests with one P under cachegrind and returns
// the instructions the whole process executed.
func cachegrind(bin, bench string, n int) (int64, error) {
	cmd := exec.Command("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
		bin, "-test.run", "^$", "-test.bench", bench, "-test.benchtime", fmt.Sprintf("%dx", n), "-test.cpu", "1")
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
	fmt.Fprintf(&b, "%s\nInstructions per request through a sidecar's connection manager (`BenchmarkTelemetryPipeline`, in-memory upstream, GOMAXPROCS=1), counted by valgrind's cachegrind (%d − %d requests), %s. Garbage collection included; the kernel is not.\n\n",
		instrBegin, instrLong, instrShort, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| side | telemetry | instructions / request | vs off | B/op | allocs/op |\n|---|---|---|---|---|---|\n")
	off := map[string]float64{}
	for _, r := range rows {
		if r.name == "off" {
			off[r.side] = r.perRequest
		}
	}
	for _, r := range rows {
		delta := "–"
		if o := off[r.side]; o > 0 && r.name != "off" {
			delta = fmt.Sprintf("%+.0f (%+.1f %%)", r.perRequest-o, (r.perRequest/o-1)*100)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %.0f | %.0f |\n", r.side, r.name, r.perRequest, delta, r.bytes, r.allocs)
	}
	b.WriteString("\nReproduce: `go run ./bench/proxybench -instructions`\n" + instrEnd + "\n")
	return b.String()
}
