// Package admin is strait-proxy's admin HTTP interface, shaped like Envoy's so that users' tools
// read it: /config_dump, /stats, /stats/prometheus, /ready, /healthz, /clusters, /drain_listeners,
// /quitquitquit, /logging and Go's /debug/pprof/. It only renders and forwards; the proxy core
// supplies the data through Source.
//
// # Who may do what
//
// The admin interface is served twice, with different rights, because on a shared host (explicit
// mode: several workloads, each proxy's admin on 127.x) every local user reaches every TCP port:
//
//   - TCP (Options.Address, default 127.0.0.1:15000) serves the read-only endpoints to anyone who
//     can connect: /stats, /stats/prometheus, /ready, /healthz, /server_info, /clusters,
//     /listeners, /config_dump (private keys and generic secrets are redacted), /runtime. An
//     owner-only endpoint asked over TCP answers 403 with the socket's path, whatever the caller.
//   - The admin socket (Options.Socket, a Unix socket) serves every endpoint, including the
//     owner-only ones, and only to the proxy's own user and root:
//     /quitquitquit, /drain_listeners and /logging change the proxy's state (Envoy's POST
//     commands), and /debug/pprof/ costs CPU (a profile or trace runs for seconds) and shows
//     goroutine stacks and the command line.
//
// The socket is guarded twice: the file is created with mode 0600 in a directory that the
// proxy's user (or root) owns and no one else can write (see ListenSocket), and every
// connection's peer credentials (SO_PEERCRED) must name the proxy's effective uid or root — so a
// socket whose file mode is loosened by mistake still refuses other users. Root is allowed
// because it can signal or ptrace the proxy anyway. Without peer credentials (not Linux) the
// socket refuses everyone.
//
// Stopping a proxy does not need the admin interface: SIGTERM drains and exits as /quitquitquit
// does, and is governed by the same rule (only the proxy's user and root may signal it).
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdspb"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
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
	// Address is the TCP address of the read-only endpoints (default 127.0.0.1:15000; "-": no
	// TCP listener).
	Address string
	// Socket is the path of the admin socket, which serves every endpoint to the proxy's user and
	// root only (see the package doc and ListenSocket); "" or "-": no socket, and the owner-only
	// endpoints are served nowhere.
	Socket string
	// SocketBestEffort makes a Socket that cannot be bound a logged warning instead of an error
	// (for a default path the operator did not choose).
	SocketBestEffort bool
	Source           Source
	Stats            *stats.Store
	Level            *slog.LevelVar // the level /logging changes
	Logger           *slog.Logger
}

// Server is the admin HTTP server: the read-only endpoints on TCP and all of them on the admin
// socket.
type Server struct {
	opts     Options
	ownerUID uint32 // besides root, the only uid the socket serves (the proxy's effective uid)

	tcp, sock     *http.Server // either may be nil
	tcpLn, sockLn net.Listener
	socketPath    string // bound socket path, "" without one
}

// Listen binds the TCP address, then the admin socket; Serve then serves on them. Binding is
// separate so that a port conflict fails startup. At least one of the two must be configured.
func Listen(opts Options) (*Server, error) {
	if opts.Address == "" {
		opts.Address = "127.0.0.1:15000"
	}
	if opts.Socket == "-" {
		opts.Socket = ""
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Level == nil {
		opts.Level = new(slog.LevelVar)
	}
	if opts.Address == "-" && opts.Socket == "" {
		return nil, errors.New("admin: neither a TCP address nor a socket to listen on")
	}
	s := &Server{opts: opts, ownerUID: uint32(os.Geteuid())}
	if opts.Address != "-" {
		ln, err := net.Listen("tcp", opts.Address)
		if err != nil {
			return nil, fmt.Errorf("binding admin address %s: %w", opts.Address, err)
		}
		s.tcpLn = ln
	}
	if opts.Socket != "" {
		ln, err := ListenSocket(opts.Socket)
		switch {
		case err == nil:
			s.sockLn, s.socketPath = ln, opts.Socket
		case opts.SocketBestEffort && s.tcpLn != nil:
			opts.Logger.Warn("admin socket unavailable: /quitquitquit, /drain_listeners, /logging and "+
				"/debug/pprof/ are served nowhere (SIGTERM still stops the proxy); set --admin-socket", "error", err)
		default:
			if s.tcpLn != nil {
				s.tcpLn.Close()
			}
			return nil, err
		}
	}
	if s.tcpLn != nil {
		s.tcp = &http.Server{Handler: s.tcpHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	if s.sockLn != nil {
		s.sock = &http.Server{Handler: s.socketHandler(), ReadHeaderTimeout: 10 * time.Second,
			ConnContext: withPeer}
	}
	return s, nil
}

// Addr returns the bound TCP address, nil without one.
func (s *Server) Addr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// SocketPath returns the path of the bound admin socket, "" without one.
func (s *Server) SocketPath() string { return s.socketPath }

// Serve serves until Close; it returns nil after Close, else the first listener's error.
func (s *Server) Serve() error {
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.tcp, s.tcpLn}, {s.sock, s.sockLn}} {
		if p.srv == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Close stops the server, letting running requests finish for up to five seconds. It removes the
// socket file.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range []*http.Server{s.tcp, s.sock} {
		if srv != nil {
			errs = append(errs, srv.Shutdown(ctx))
		}
	}
	return errors.Join(errs...)
}

// route is one admin endpoint.
type route struct {
	h     http.Handler
	help  string
	post  bool // changes state: POST only, as Envoy (GET /logging without a query reads)
	owner bool // only on the admin socket (see the package doc)
}

// routes returns the admin endpoints by path. The owner flag is the one list of what a local
// user who is not the proxy's may not do.
func (s *Server) routes() map[string]route {
	return map[string]route{
		"/config_dump":      {h: http.HandlerFunc(s.configDump), help: "dump current Envoy-shaped configs (?resource=)"},
		"/stats":            {h: http.HandlerFunc(s.stats), help: "print server stats (?filter=, ?usedonly)"},
		"/stats/prometheus": {h: http.HandlerFunc(s.prometheus), help: "print server stats in prometheus format"},
		"/ready":            {h: http.HandlerFunc(s.ready), help: "print server state, 200 when LIVE"},
		"/healthz":          {h: http.HandlerFunc(s.healthz), help: "200 while the process serves"},
		"/clusters":         {h: http.HandlerFunc(s.clusters), help: "upstream cluster status (?format=json)"},
		"/server_info":      {h: http.HandlerFunc(s.serverInfo), help: "print server version/status information"},
		"/listeners":        {h: http.HandlerFunc(s.listeners), help: "print listener names"},
		"/runtime":          {h: http.HandlerFunc(s.runtime), help: "print runtime values (none)"},
		"/drain_listeners":  {h: http.HandlerFunc(s.drain), help: "drain listeners (?inboundonly)", post: true, owner: true},
		"/quitquitquit":     {h: http.HandlerFunc(s.quit), help: "exit the server after draining", post: true, owner: true},
		"/logging":          {h: http.HandlerFunc(s.logging), help: "query/change logging levels (?level=debug|info|warn|error)", post: true, owner: true},
		// Go's profiler, as Envoy's /cpuprofiler and /heapprofiler; pprof.Index also serves the
		// named profiles (/debug/pprof/heap, goroutine, ...).
		"/debug/pprof/":        {h: http.HandlerFunc(pprof.Index), help: "Go profiles (heap, goroutine, allocs, ...)", owner: true},
		"/debug/pprof/cmdline": {h: http.HandlerFunc(pprof.Cmdline), help: "the command line", owner: true},
		"/debug/pprof/profile": {h: http.HandlerFunc(pprof.Profile), help: "CPU profile (?seconds=)", owner: true},
		"/debug/pprof/symbol":  {h: http.HandlerFunc(pprof.Symbol), help: "symbol lookup", owner: true},
		"/debug/pprof/trace":   {h: http.HandlerFunc(pprof.Trace), help: "execution trace (?seconds=)", owner: true},
	}
}

// tcpHandler serves the read-only endpoints; an owner-only one answers 403 naming the socket.
func (s *Server) tcpHandler() http.Handler { return s.mux(false) }

// socketHandler serves every endpoint to the proxy's uid and root, and 403 to other peers.
func (s *Server) socketHandler() http.Handler { return s.requireOwner(s.mux(true)) }

// mux builds the admin mux of the TCP listener (socket false) or of the admin socket.
func (s *Server) mux(socket bool) http.Handler {
	mux := http.NewServeMux()
	routes := s.routes()
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
		if r.owner && !socket {
			h = s.socketOnly()
		}
		mux.Handle(p, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "admin commands are:")
		for _, p := range paths {
			note := ""
			if routes[p].owner && !socket {
				note = " (admin socket only)"
			}
			fmt.Fprintf(w, "  %s: %s%s\n", p, routes[p].help, note)
		}
	})
	return mux
}

// socketOnly answers an owner-only endpoint asked over TCP: 403, whoever asks, with where to go.
func (s *Server) socketOnly() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.opts.Logger.Debug("admin: owner-only endpoint refused over TCP", "path", r.URL.Path, "remote", r.RemoteAddr)
		msg := r.URL.Path + " changes the proxy's state or is costly to serve: it is served only on the admin socket, to the proxy's user and root"
		if s.socketPath != "" {
			msg += fmt.Sprintf(", e.g. curl --unix-socket %s -X POST http://localhost%s", s.socketPath, r.URL.Path)
		} else {
			msg += " (this proxy has no admin socket; see --admin-socket)"
		}
		http.Error(w, msg, http.StatusForbidden)
	})
}

// postOnly rejects mutating commands sent with GET, as Envoy does.
func postOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && !(r.URL.Path == "/logging" && len(r.URL.Query()) == 0) {
			w.Header().Set("Allow", "POST")
			http.Error(w, "This endpoint requires POST", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// dumpJSON renders like Envoy: proto (snake_case) field names, Any with "@type". The Anys
// resolve to strait-proxy's own xDS types, so a dump shows the fields the proxy reads (a field it
// does not read is an unknown field, which protojson leaves out).
var dumpJSON = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, Resolver: dumpResolver{}}

// dumpResolver resolves the type URLs of a dump in proxy/xdspb's registry first, then in the
// global one, where the typed configs that are not xDS types (Istio's stats.PluginConfig)
// registered.
type dumpResolver struct{}

func (dumpResolver) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := xdspb.Resolver.FindMessageByName(n); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(n)
}

func (dumpResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := xdspb.Resolver.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

func (dumpResolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := xdspb.Resolver.FindExtensionByName(n); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (dumpResolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := xdspb.Resolver.FindExtensionByNumber(m, n); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

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
	b, _ := json.MarshalIndent(struct {
		Version     string `json:"version"`
		State       string `json:"state"`
		AdminSocket string `json:"admin_socket,omitempty"` // where the owner-only endpoints are
	}{"strait-proxy", state, s.socketPath}, "", "  ")
	w.Write(append(b, '\n'))
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
