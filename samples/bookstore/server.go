package bookstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Identity names the service and version that produced a response. Every JSON answer of the
// bookstore starts with it.
type Identity struct {
	Service string `json:"service"`
	Version string `json:"version"`
	// Caller is who called this service, as its sidecar verified it: the SPIFFE ID of the
	// caller's certificate on the mesh mTLS hop (x-forwarded-client-cert URI). Empty when the
	// request came in plaintext.
	Caller string `json:"caller,omitempty"`
}

// For returns the identity for an answer to r: id with r's caller.
func (id Identity) For(r *http.Request) Identity {
	id.Caller = CallerOf(r.Header)
	return id
}

// CallerOf returns the URI of the last element of x-forwarded-client-cert (the client certificate
// the local sidecar verified: it appends its own element last), or "".
func CallerOf(h http.Header) string {
	v := h.Get("X-Forwarded-Client-Cert")
	if v == "" {
		return ""
	}
	// Elements are separated by ',' and pairs by ';' outside double quotes.
	var elems [][]string
	pairs, cur, quoted := []string{}, []byte{}, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && quoted && i+1 < len(v):
			i++
			cur = append(cur, v[i])
		case c == '"':
			quoted = !quoted
		case (c == ';' || c == ',') && !quoted:
			pairs = append(pairs, string(cur))
			cur = cur[:0]
			if c == ',' {
				elems = append(elems, pairs)
				pairs = []string{}
			}
		default:
			cur = append(cur, c)
		}
	}
	elems = append(elems, append(pairs, string(cur)))
	for _, kv := range elems[len(elems)-1] {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.EqualFold(strings.TrimSpace(k), "URI") {
			return val
		}
	}
	return ""
}

// Handler returns the HTTP handler of the service o.Service: its endpoints, /healthz, the
// identity headers, the fault flags and an access log line per request on log. o must be valid
// (see Options.Validate). The handler is safe for concurrent use.
func Handler(o Options, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	id := Identity{Service: o.Service, Version: o.Version}
	var proxy *url.URL
	if o.Proxy != "" {
		proxy, _ = url.Parse(o.Proxy) // checked by Validate
	}
	up := newUpstream(o.upstreamTimeout(), proxy)
	mux := http.NewServeMux()
	switch o.Service {
	case Web:
		newWeb(id, o, up, log).register(mux)
	case Details:
		newDetails(id).register(mux)
	case Reviews:
		newReviews(id, o, up, log).register(mux)
	case Ratings:
		newRatings(id).register(mux)
	}
	// /healthz is outside the faults: a demo of retries must not get the workload restarted.
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Identity
			Status string `json:"status"`
		}{id, "ok"})
	})
	root.Handle("/", faults(mux, o.FailRate, o.FailCode, o.Delay))
	return accessLog(identify(root, id), log)
}

// Run serves the service described by o until ctx is done, then shuts down gracefully (in-flight
// requests get up to 5 seconds). It returns an error if o is invalid or the listener cannot be
// opened; nil after a clean shutdown. log (default slog.Default()) should name the service.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.Listen, err)
	}
	srv := &http.Server{
		Handler:           Handler(o, log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Info("serving", "addr", ln.Addr().String(),
		"details", o.DetailsURL, "reviews", o.ReviewsURL, "ratings", o.RatingsURL, "proxy", o.Proxy,
		"timeout", o.upstreamTimeout(), "fail_rate", o.FailRate, "fail_code", o.FailCode, "delay", o.Delay)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// identify sets the identity headers on every response.
func identify(next http.Handler, id Identity) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderService, id.Service)
		w.Header().Set(HeaderVersion, id.Version)
		next.ServeHTTP(w, r)
	})
}

// faults delays every request by delay and then answers a fraction failRate of them with the
// status failCode, as a flaky or slow service would. A client that goes away during the delay
// ends the wait.
func faults(next http.Handler, failRate float64, failCode int, delay time.Duration) http.Handler {
	if failRate == 0 && delay == 0 {
		return next
	}
	if failCode == 0 {
		failCode = http.StatusInternalServerError
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if failRate > 0 && rand.Float64() < failRate {
			writeError(w, failCode, "injected failure (--fail-rate)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// accessLog logs one line per request, except health checks, with the request id and user so
// that a request can be followed through the services' logs.
func accessLog(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration", time.Since(start).Round(time.Microsecond), "request_id", r.Header.Get("X-Request-Id"),
			"end_user", r.Header.Get("End-User"))
	})
}

// writeJSON writes v as the JSON body of a response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// errorBody is the JSON body of an error answer.
type errorBody struct {
	Error string `json:"error"`
}

// writeError writes a JSON error answer.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{msg})
}
