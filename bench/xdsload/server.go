package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/procstat"
)

// memStats is the server's memory after a full GC.
type memStats struct {
	HeapInuse  uint64 `json:"heapInuse"`
	HeapAlloc  uint64 `json:"heapAlloc"`
	StackInuse uint64 `json:"stackInuse"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
	Connected  int    `json:"connected"`
	// PeakRSS is the server process's peak resident set size (VmHWM), 0 where /proc is missing.
	PeakRSS uint64 `json:"peakRSS"`
	RSS     uint64 `json:"rss"` // resident set size now (VmRSS)
}

// updateResult tells the driver when an Update was handed to the server.
type updateResult struct {
	MeshVersion uint64 `json:"meshVersion"`
	UnixNano    int64  `json:"unixNano"`
}

// generators are the selectable Generators (-generator).
var generators = map[string]func(*buildcache.Owner) (translate.Generator, error){
	"synthetic": func(*buildcache.Owner) (translate.Generator, error) { return &synthetic{}, nil },
	"real": func(c *buildcache.Owner) (translate.Generator, error) {
		return translate.New(translate.Options{Caches: c}), nil
	},
}

// runServer is the straitd stand-in: the xDS server alone in this process, so that its heap is
// measured without the simulated proxies. It prints "LISTEN <xds> <control>" and serves until its
// stdin closes (the driver exited), it is killed (-restart) or the deadline passes. Its metrics
// are at /metrics on the control address.
func runServer(cfg options) error {
	newGen, ok := generators[cfg.generator]
	if !ok {
		return fmt.Errorf("unknown -generator %q", cfg.generator)
	}
	caches := buildcache.New() // as straitd: one owner of the generator's and the server's caches
	gen, err := newGen(caches)
	if err != nil {
		return fmt.Errorf("building generator: %w", err)
	}
	reg := prometheus.NewRegistry()
	srv, err := xds.New(xds.Options{
		Caches:     caches,
		Generator:  gen,
		Debounce:   cfg.debounce,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer: reg,
		Flow:       xds.FlowLimits{StreamRate: cfg.streamRate, StreamBurst: cfg.streamBurst, StreamWait: cfg.streamWait},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	var mu sync.Mutex
	model := newMeshModel(cfg.services, cfg.ports, cfg.vs)
	srv.Update(model.snapshot())

	xdsLis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(xdsLis) }()
	defer g.Stop()

	ctlLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/debug/syncz", srv.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	mux.HandleFunc("/mem", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(memStats{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc,
			StackInuse: ms.StackInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine(), Connected: len(srv.Status()),
			PeakRSS: procstat.Status(0, "VmHWM"), RSS: procstat.Status(0, "VmRSS")})
	})
	mux.HandleFunc("/update", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		model.change(r.URL.Query().Get("change"))
		snap := model.snapshot()
		mu.Unlock()
		res := updateResult{MeshVersion: snap.Version, UnixNano: time.Now().UnixNano()}
		srv.Update(snap)
		_ = json.NewEncoder(w).Encode(res)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ctlLis) }()
	defer hs.Close()

	fmt.Printf("LISTEN %s %s\n", xdsLis.Addr(), ctlLis.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	go func() { // the driver closes our stdin when it is done or dies
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	<-ctx.Done()
	return nil
}
