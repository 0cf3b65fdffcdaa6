package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// serverChild is the server process (-role=server).
type serverChild struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	xds, ctl string // the xDS address and the control URL (http://host:port)
}

// startChild starts the server process with its xDS listener on listen and waits for its
// addresses.
func startChild(ctx context.Context, cfg options, listen string) (*serverChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding own executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "-role=server", "-listen="+listen,
		"-services="+strconv.Itoa(cfg.services), "-ports="+strconv.Itoa(cfg.ports), "-virtualservices="+strconv.Itoa(cfg.vs),
		"-debounce="+cfg.debounce.String(), "-generator="+cfg.generator, "-timeout="+cfg.timeout.String(),
		"-stream-rate="+strconv.FormatFloat(cfg.streamRate, 'g', -1, 64), "-stream-burst="+strconv.Itoa(cfg.streamBurst),
		"-stream-wait="+cfg.streamWait.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("server stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("server stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting server: %w", err)
	}
	c := &serverChild{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("reading server address: %w", err)
	}
	var ctlAddr string
	if _, err := fmt.Sscanf(line, "LISTEN %s %s", &c.xds, &ctlAddr); err != nil {
		c.stop()
		return nil, fmt.Errorf("server said %q: %w", line, err)
	}
	c.ctl = "http://" + ctlAddr
	return c, nil
}

// stop ends the server: it exits when its stdin closes.
func (c *serverChild) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

// kill ends the server at once, as a crash would.
func (c *serverChild) kill() {
	_ = c.cmd.Process.Kill()
	c.stop()
}

// restartServer kills the server under the connected proxies and starts a new one on the same
// xDS address, then waits (bounded) until every proxy has resynced on the new server: reconnected
// and received a response of every type it subscribes to. It prints what the restart cost and
// returns the new server.
func restartServer(ctx context.Context, cfg options, old *serverChild, proxies []*simProxy) (*serverChild, error) {
	syncs := make([]int64, len(proxies))
	for i, p := range proxies {
		syncs[i] = p.syncs.Load()
	}
	bytesBefore := receivedBytes(proxies)
	killed := time.Now()
	old.kill()
	child, err := startChild(ctx, cfg, old.xds)
	if err != nil {
		return nil, fmt.Errorf("restarting the server: %w", err)
	}
	up := time.Since(killed)
	profDone := make(chan error, 1)
	if cfg.profile != "" {
		go func() { profDone <- fetchToFile(ctx, child.ctl+"/debug/pprof/profile?seconds=30", cfg.profile) }()
	} else {
		profDone <- nil
	}
	deadline := time.Now().Add(5 * time.Minute)
	var per []time.Duration
	for i, p := range proxies {
		for p.syncs.Load() <= syncs[i] {
			if time.Now().After(deadline) || ctx.Err() != nil {
				child.stop()
				return nil, fmt.Errorf("restart: proxy %d did not resync within 5 minutes", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		per = append(per, time.Duration(p.syncedAt.Load()-killed.UnixNano()))
	}
	all := slices.Max(per)
	if err := <-profDone; err != nil {
		child.stop()
		return nil, err
	}
	m, err := serverMetrics(ctx, child.ctl)
	if err != nil {
		child.stop()
		return nil, err
	}
	mem, err := getJSON[memStats](ctx, child.ctl+"/mem")
	if err != nil {
		child.stop()
		return nil, err
	}
	bytesAfter := receivedBytes(proxies)
	var resent int64
	for _, t := range slices.Sorted(maps.Keys(bytesAfter)) {
		resent += bytesAfter[t] - bytesBefore[t]
	}
	admitted := m[`strait_xds_stream_admissions_total{result="admitted"}`]
	deferred := m[`strait_xds_stream_admissions_total{result="deferred"}`]
	refused := m[`strait_xds_stream_admissions_total{result="refused"}`]
	fmt.Printf("restart: server killed and listening again after %s; all %d proxies resynced %s after the kill (per proxy p50 %s, p99 %s)\n",
		up.Round(time.Millisecond), len(proxies), all.Round(time.Millisecond), pct(per, 50), pct(per, 99))
	if cfg.streamRate < 0 {
		fmt.Println("restart: stream admission off (-stream-rate negative)")
	} else {
		fmt.Printf("restart: streams admitted at once %.0f, after waiting %.0f, refused with a retry delay %.0f (admission %g/s, burst %d, wait %s); %.0f streams/s on average from the server's start to the last resync\n",
			admitted, deferred, refused, cfg.streamRate, cfg.streamBurst, cfg.streamWait,
			(admitted+deferred)/max(all-up, time.Millisecond).Seconds())
	}
	fmt.Printf("restart: bytes received per proxy on resync %.1f KiB (Delta initial versions skip what a proxy holds); new server's RSS peak %.0f MiB\n",
		float64(resent)/float64(len(proxies))/1024, mib(mem.PeakRSS))
	return child, nil
}

// serverMetrics reads the server's /metrics: series (name with labels) → value.
func serverMetrics(ctx context.Context, ctl string) (map[string]float64, error) {
	body, err := getText(ctx, ctl+"/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}
