// Command xdsload measures straitd's xDS server under many proxies: it starts the server (the
// controlplane/xds Server with a pluggable Generator) in a child process, connects N simulated
// proxies to it over Delta (or, with -sotw, state-of-the-world) ADS on loopback, each on its own gRPC connection, and reports
//
//   - the server's memory per connected proxy: (heap in use with N proxies − heap in use with
//     none) / N after a full GC, plus goroutine stacks;
//   - the time from a mesh snapshot Update to its ACK by every proxy, over -updates changes;
//   - with -restart, the time until every proxy resynced after the server was killed and
//     started again (the simulated proxies reconnect with strait-proxy's backoff and Delta
//     initial resource versions), and the stream admissions;
//   - with -stuck N, the server's queued bytes against their cap while N proxies do not read;
//   - the bytes of each proxy's initial configuration; with -ondemand N, for proxies served
//     on-demand configuration that demand N services each.
//
// Everything is bounded: the connection ramp, each update wait and the whole run (-timeout).
//
//	go run ./bench/xdsload -proxies 1000 -services 334 -ports 3 -updates 20
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/strait-mesh/strait/controlplane/xds"
)

type options struct {
	role      string
	proxies   int
	services  int
	ports     int
	updates   int
	change    string
	debounce  time.Duration
	generator string
	parallel  int
	timeout   time.Duration
	profile   string
	heapProf  string
	vs        int
	sotw      bool
	stuck     int
	vhds      bool
	restart   bool
	ondemand  int
	client    bool
	listen    string // server role: the xDS listen address (the driver keeps it across a restart)

	streamRate  float64
	streamBurst int
	streamWait  time.Duration
}

func main() {
	var cfg options
	flag.StringVar(&cfg.role, "role", "driver", "driver (default) or server (internal: the child process)")
	flag.IntVar(&cfg.proxies, "proxies", 1000, "simulated proxies connected over ADS")
	flag.IntVar(&cfg.services, "services", 334, "services (ServiceEntries) in the generated mesh")
	flag.IntVar(&cfg.ports, "ports", 3, "ports per service (1-3)")
	flag.IntVar(&cfg.vs, "virtualservices", 0, "VirtualServices (with a DestinationRule each: subsets v1/v2, a 90/10 split on the HTTP port) for the first services")
	flag.IntVar(&cfg.updates, "updates", 20, "config changes to time")
	flag.StringVar(&cfg.change, "change", "endpoint", "kind of change: endpoint (moves an endpoint: EDS), service (adds a service: CDS, EDS and routes) or virtualservice (edits a VirtualService's weights: routes; needs -virtualservices)")
	flag.DurationVar(&cfg.debounce, "debounce", 100*time.Millisecond, "server debounce quiet period (negative: none)")
	flag.StringVar(&cfg.generator, "generator", "synthetic", "generator: synthetic (shared resources of realistic size) or real (translate.New, Strait's translator)")
	flag.IntVar(&cfg.parallel, "parallel", 50, "proxies connecting at the same time during the ramp")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	flag.StringVar(&cfg.profile, "cpuprofile", "", "write a 30 s CPU profile of the server, taken during the updates (with -restart: of the new server from its start, during the resync), to this file")
	flag.BoolVar(&cfg.sotw, "sotw", false, "simulated proxies use state-of-the-world ADS instead of Delta")
	flag.BoolVar(&cfg.vhds, "vhds", true, "simulated Delta proxies announce VHDS support (as strait-proxy does) and subscribe to virtual hosts")
	flag.IntVar(&cfg.stuck, "stuck", 0, "this many of the proxies stop reading their stream once synced (the updates are timed on the others)")
	flag.StringVar(&cfg.heapProf, "memprofile", "", "write a heap profile of the server, taken with all proxies connected, to this file")
	flag.BoolVar(&cfg.restart, "restart", false, "once the proxies are synced, kill the server and start a new one on the same address: report the time until every proxy resynced, the stream admissions, the bytes re-sent and the new server's peak RSS (the updates then run on it)")
	flag.IntVar(&cfg.ondemand, "ondemand", 0, "simulated proxies ask for on-demand configuration (node.FeatureOnDemand, ON_DEMAND=true) and demand the HTTP port of this many services each; reports the initial configuration's bytes and the server's memory per proxy (needs -generator real and Delta with VHDS; the updates are not timed: -updates 0)")
	flag.BoolVar(&cfg.client, "client", false, "after the ramp, also run strait-proxy's real xDS client (Delta, VHDS; with -ondemand, on-demand and demanding as the router would) and report the heap its configuration takes")
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "server role (internal): the xDS listen address")
	flag.Float64Var(&cfg.streamRate, "stream-rate", xds.DefaultStreamRate, "server: new xDS streams admitted per second, straitd's --xds-stream-rate (negative: unlimited)")
	flag.IntVar(&cfg.streamBurst, "stream-burst", xds.DefaultStreamBurst, "server: straitd's --xds-stream-burst")
	flag.DurationVar(&cfg.streamWait, "stream-wait", xds.DefaultStreamWait, "server: straitd's --xds-stream-wait")
	flag.Parse()
	if cfg.sotw {
		cfg.vhds = false // VHDS is Delta only
	}
	if _, ok := changeKinds[cfg.change]; !ok || cfg.change == "virtualservice" && cfg.vs == 0 {
		fmt.Fprintln(os.Stderr, "xdsload: -change must be endpoint, service or virtualservice (which needs -virtualservices)")
		os.Exit(2)
	}
	if cfg.ports < 1 || cfg.ports > len(benchPorts) || cfg.proxies < 1 || cfg.services < 1 || cfg.parallel < 1 || cfg.vs < 0 || cfg.vs > cfg.services {
		fmt.Fprintln(os.Stderr, "xdsload: -ports must be 1-3; -proxies, -services and -parallel positive; -virtualservices at most -services")
		os.Exit(2)
	}
	if cfg.ondemand < 0 || cfg.ondemand > 0 && (cfg.generator != "real" || !cfg.vhds || cfg.updates != 0 || cfg.ondemand > cfg.services) {
		fmt.Fprintln(os.Stderr, "xdsload: -ondemand N needs -generator real, Delta with VHDS, -updates 0 and N at most -services")
		os.Exit(2)
	}
	var err error
	if cfg.role == "server" {
		err = runServer(cfg)
	} else {
		err = runDriver(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdsload:", err)
		os.Exit(1)
	}
}
