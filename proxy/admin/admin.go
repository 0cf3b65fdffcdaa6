// Package admin is strait-proxy's admin HTTP interface, by default on 127.0.0.1:15000, shaped like
// Envoy's so that users' tools read it: /config_dump, /stats, /stats/prometheus, /ready, /healthz,
// /clusters, /drain_listeners, /quitquitquit and /logging. It only renders and forwards; the
// proxy core supplies the data through Source.
package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sort"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/strait-mesh/strait/proxy/stats"
)

// Source is what the admin interface needs from the proxy. Methods are called concurrently from
// admin request goroutines.
type Source interface {
	// ConfigDump returns the current configuration shaped like Envoy's ConfigDump. resource, when
	// not empty, names one repeated field to return on its own (e.g. "dynamic_active_clusters"),
	// as Envoy's ?resource= does; an unknown name is an error.
	ConfigDump(resource string) (*adminv3.ConfigDump, error)
	// Ready reports whether the first listeners and clusters were accepted, and the server state
	// name (LIVE, PRE_INITIALIZING, DRAINING).
	Ready() (bool, string)
	// Clusters returns Envoy's /clusters output.
	Clusters() *adminv3.Clusters
	// DrainListeners stops the listeners accepting (inboundOnly: only inbound ones) and lets open
	// connections finish.
	DrainListeners(inboundOnly bool)
	// Quit starts a graceful shutdown.
	Quit()
}

// Options configures the admin server.
type Options struct {
	Address string // default 127.0.0.1:15000
	Source  Source
	Stats   *stats.Store
	Level   *slog.LevelVar // the level /logging changes
	Logger  *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
}

// Listen binds the admin address; Serve then serves on it. Binding is separate so that a port
// conflict fails startup.
func Listen(opts Options) (*Server, error) {
	if opts.Address == "" {
		opts.Address = "127.0.0.1:15000"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Level == nil {
		opts.Level = new(slog.LevelVar)
	}
	ln, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("binding admin address %s: %w", opts.Address, err)
	}
	s := &Server{opts: opts, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server, letting running requests finish for up to five seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Handler returns the admin mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	routes := map[string]struct {
		h    http.HandlerFunc
		help string
		post bool
	}{
		"/config_dump":      {s.configDump, "dump current Envoy-shaped configs (?resource=)", false},
		"/stats":            {s.stats, "print server stats (?filter=, ?usedonly)", false},
		"/stats/prometheus": {s.prometheus, "print server stats in prometheus format", false},
		"/ready":            {s.ready, "print server state, 200 when LIVE", false},
		"/healthz":          {s.healthz, "200 while the process serves", false},
		"/clusters":         {s.clusters, "upstream cluster status (?format=json)", false},
		"/drain_listeners":  {s.drain, "drain listeners (?inboundonly)", true},
		"/quitquitquit":     {s.quit, "exit the server after draining", true},
		"/logging":          {s.logging, "query/change logging levels (?level=debug|info|warn|error)", true},
		"/server_info":      {s.serverInfo, "print server version/status information", false},
		"/listeners":        {s.listeners, "print listener names", false},
		"/runtime":          {s.runtime, "print runtime values (none)", false},
	}
	paths := make([]string, 0, len(routes))
	for p := range routes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		r := routes[p]
		h := r.h
		if r.post {
			h = postOnly(h)
		}
		mux.HandleFunc(p, h)
	}
	// Go's profiler, as Envoy exposes /cpuprofiler and /heapprofiler: only to loopback clients.
	mux.Handle("/debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", loopbackOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "admin commands are:")
		for _, p := range paths {
			fmt.Fprintf(w, "  %s: %s\n", p, routes[p].help)
		}
	})
	return mux
}

// loopbackOnly answers 403 to clients not on a loopback address: profiles reveal memory
// contents and cost CPU, so they stay local even when the admin address is not.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().IsLoopback() {
			http.Error(w, "profiling is only served to loopback clients", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// postOnly rejects mutating commands sent with GET, as Envoy does.
func postOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && !(r.URL.Path == "/logging" && len(r.URL.Query()) == 0) {
			w.Header().Set("Allow", "POST")
			http.Error(w, "This endpoint requires POST", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

// dumpJSON renders like Envoy: proto (snake_case) field names, Any with "@type".
var dumpJSON = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}

func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	dump, err := s.opts.Source.ConfigDump(r.URL.Query().Get("resource"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := dumpJSON.Marshal(dump)
	if err != nil {
		http.Error(w, "rendering config dump: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	w.Write([]byte("\n"))
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if s.opts.Stats == nil {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var buf bytes.Buffer
	if err := s.opts.Stats.WriteText(&buf, r.URL.Query().Get("filter")); err != nil {
		s.opts.Logger.Debug("writing stats", "error", err)
	}
	if _, used := r.URL.Query()["usedonly"]; !used {
		w.Write(buf.Bytes())
		return
	}
	// ?usedonly: only metrics that have been written (non-zero), as Envoy's.
	for _, line := range bytes.SplitAfter(buf.Bytes(), []byte("\n")) {
		if len(line) > 0 && !bytes.HasSuffix(line, []byte(": 0\n")) {
			w.Write(line)
		}
	}
}

func (s *Server) prometheus(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Stats == nil {
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := s.opts.Stats.WritePrometheus(w); err != nil {
		s.opts.Logger.Debug("writing prometheus stats", "error", err)
	}
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	ok, state := s.opts.Source.Ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, state)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (s *Server) clusters(w http.ResponseWriter, r *http.Request) {
	cs := s.opts.Source.Clusters()
	if r.URL.Query().Get("format") == "json" {
		b, err := dumpJSON.Marshal(cs)
		if err != nil {
			http.Error(w, "rendering clusters: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	writeClustersText(w, cs)
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	_, inbound := r.URL.Query()["inboundonly"]
	s.opts.Source.DrainListeners(inbound)
	fmt.Fprintln(w, "OK")
}

func (s *Server) quit(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "OK")
	s.opts.Source.Quit()
}

func (s *Server) logging(w http.ResponseWriter, r *http.Request) {
	if lv := r.URL.Query().Get("level"); lv != "" {
		var l slog.Level
		switch strings.ToLower(lv) {
		case "trace", "debug":
			l = slog.LevelDebug
		case "info":
			l = slog.LevelInfo
		case "warning", "warn":
			l = slog.LevelWarn
		case "error", "critical", "off":
			l = slog.LevelError
		default:
			http.Error(w, fmt.Sprintf("unknown level %q: want debug, info, warning or error", lv), http.StatusBadRequest)
			return
		}
		s.opts.Level.Set(l)
		s.opts.Logger.Info("log level changed", "level", l.String())
	}
	fmt.Fprintf(w, "active loggers:\n  strait: %s\n", strings.ToLower(s.opts.Level.Level().String()))
}

func (s *Server) serverInfo(w http.ResponseWriter, _ *http.Request) {
	_, state := s.opts.Source.Ready()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\n  \"version\": \"strait-proxy\",\n  \"state\": %q\n}\n", state)
}

func (s *Server) listeners(w http.ResponseWriter, _ *http.Request) {
	dump, err := s.opts.Source.ConfigDump("dynamic_listeners")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, a := range dump.GetConfigs() {
		var dl adminv3.ListenersConfigDump_DynamicListener
		if a.UnmarshalTo(&dl) == nil {
			fmt.Fprintln(w, dl.GetName())
		}
	}
}

func (s *Server) runtime(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintln(w, `{"layers": [], "entries": {}}`)
}

// writeClustersText renders /clusters as Envoy's text form:
// cluster::host:port::name::value per line.
func writeClustersText(w http.ResponseWriter, cs *adminv3.Clusters) {
	for _, c := range cs.GetClusterStatuses() {
		name := c.GetName()
		fmt.Fprintf(w, "%s::observability_name::%s\n", name, name)
		for _, h := range c.GetHostStatuses() {
			sa := h.GetAddress().GetSocketAddress()
			host := net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
			for _, st := range h.GetStats() {
				fmt.Fprintf(w, "%s::%s::%s::%d\n", name, host, st.GetName(), st.GetValue())
			}
			health := ""
			if hs := h.GetHealthStatus(); hs != nil {
				if e := hs.GetEdsHealthStatus(); e != corev3.HealthStatus_UNKNOWN && e != corev3.HealthStatus_HEALTHY {
					health += "/failed_eds_health"
				}
				if hs.GetFailedOutlierCheck() {
					health += "/failed_outlier_check"
				}
				if hs.GetFailedActiveHealthCheck() {
					health += "/failed_active_hc"
				}
			}
			if health == "" {
				health = "healthy"
			}
			fmt.Fprintf(w, "%s::%s::health_flags::%s\n", name, host, health)
			fmt.Fprintf(w, "%s::%s::weight::%d\n", name, host, h.GetWeight())
			if l := h.GetLocality(); l != nil {
				fmt.Fprintf(w, "%s::%s::region::%s\n%s::%s::zone::%s\n%s::%s::sub_zone::%s\n",
					name, host, l.GetRegion(), name, host, l.GetZone(), name, host, l.GetSubZone())
			}
		}
	}
}
