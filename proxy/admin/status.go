package admin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/strait-mesh/strait/internal/appprobe"
	"github.com/strait-mesh/strait/proxy/stats"
)

// StatusOptions configure the listeners Istio's sidecars have beside the admin interface:
// 15020, the merged Prometheus endpoint and the readiness probe, 15021, the readiness probe
// alone, and 15090, the proxy's own Prometheus endpoint. All serve read-only data to anyone who
// can reach them, as Istio's do.
type StatusOptions struct {
	// Address serves /stats/prometheus (the proxy's statistics, then the application's when
	// AppMetricsURL is set: Istio's metrics merging) and /healthz/ready (200 once the proxy is
	// ready, as /ready). "" or "-": not served.
	Address string
	// PrometheusAddress serves /stats/prometheus, the proxy's statistics only. "" or "-": not
	// served.
	PrometheusAddress string
	// HealthAddress serves /healthz/ready only: Istio's 15021, where gateways' load balancers
	// and Kubernetes probes ask whether the proxy is ready. "" or "-": not served.
	HealthAddress string
	// AppMetricsURL is the application's own Prometheus endpoint (Istio's prometheus.io/port and
	// prometheus.io/path annotations), scraped on each request to Address's /stats/prometheus.
	AppMetricsURL string
	// AppProbers are the application's own probes, rewritten by the injector to Address's
	// /app-health/CONTAINER/{livez,readyz,startupz} (Istio's ISTIO_KUBE_APP_PROBERS); each is
	// run against PodIP when asked.
	AppProbers appprobe.Probers
	PodIP      string
	Source     Source
	Stats      *stats.Store
	Logger     *slog.Logger
}

// maxAppMetrics bounds what is read from the application's metrics endpoint.
const maxAppMetrics = 16 << 20

// StatusServers are the status listeners; Close stops them.
type StatusServers struct{ servers []*http.Server }

// ListenStatus binds the status addresses (a conflict fails startup) and serves them until
// Close.
func ListenStatus(o StatusOptions) (*StatusServers, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ss := &StatusServers{}
	prom := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if o.Stats != nil {
			if err := o.Stats.WritePrometheus(w); err != nil {
				o.Logger.Debug("writing prometheus stats", "error", err)
			}
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	merged := func(w http.ResponseWriter, r *http.Request) {
		prom(w, r)
		if o.AppMetricsURL == "" {
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, o.AppMetricsURL, nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			o.Logger.Debug("scraping the application's metrics", "url", o.AppMetricsURL, "error", err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAppMetrics))
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
			b = append(b, '\n')
		}
		w.Write(b)
	}
	ready := func(w http.ResponseWriter, _ *http.Request) {
		ok, state := o.Source.Ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, state)
	}
	serve := func(addr string, mux *http.ServeMux) error {
		if addr == "" || addr == "-" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			ss.Close()
			return fmt.Errorf("binding status address %s: %w", addr, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		ss.servers = append(ss.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
				o.Logger.Error("status server failed", "address", addr, "error", err)
			}
		}()
		return nil
	}
	status := http.NewServeMux()
	status.HandleFunc("/stats/prometheus", merged)
	status.HandleFunc("/healthz/ready", ready)
	status.HandleFunc(appprobe.PathPrefix, appHealth(o))
	if err := serve(o.Address, status); err != nil {
		return nil, err
	}
	health := http.NewServeMux()
	health.HandleFunc("/healthz/ready", ready)
	if err := serve(o.HealthAddress, health); err != nil {
		return nil, err
	}
	promMux := http.NewServeMux()
	promMux.HandleFunc("/stats/prometheus", prom)
	if err := serve(o.PrometheusAddress, promMux); err != nil {
		return nil, err
	}
	return ss, nil
}

// Close stops the status listeners.
func (ss *StatusServers) Close() {
	if ss == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range ss.servers {
		_ = s.Shutdown(ctx)
	}
}

// appHealth runs the application probe registered for the request's path: 200 when it
// succeeds, 503 with the reason when it fails, 404 for a path no probe was rewritten to.
func appHealth(o StatusOptions) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := o.AppProbers[r.URL.Path]
		if p == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := p.Run(r.Context(), o.PodIP); err != nil {
			o.Logger.Debug("application probe failed", "path", r.URL.Path, "error", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// WaitReady polls url every period until it answers 200 or ctx ends: `strait-proxy wait`,
// which holds an application container until its sidecar is ready.
func WaitReady(ctx context.Context, url string, period time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness URL: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %d", url, resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proxy was not ready in time: %w", last)
		case <-time.After(period):
		}
	}
}
