// Package appprobe is the application health-probe table a sidecar serves on its status port
// (15020) under /app-health/: Istio's ISTIO_KUBE_APP_PROBERS. Under mutual TLS the kubelet
// cannot reach an application's HTTP probe through the sidecar, so the injector rewrites each
// probe to the sidecar's status port and records the original here; the sidecar then runs the
// original probe against the application, as the kubelet would, and answers with its result.
//
// The injector (controlplane/inject) writes the table and strait-proxy (proxy/admin) reads and
// runs it; this package is the format both agree on, in Istio's JSON shape so that a pod spec
// written for Istio keeps working. It imports nothing from Kubernetes: strait-proxy does not
// link client-go or its API types.
package appprobe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PathPrefix is the status-port path under which rewritten probes are served:
// /app-health/CONTAINER/livez, /readyz or /startupz.
const PathPrefix = "/app-health/"

// Limits on a table, which arrives through a command-line flag or environment variable.
const (
	maxTableBytes = 64 << 10
	maxProbers    = 256
	maxHeaders    = 32
	// DefaultTimeout is a probe's timeout when the table gives none (Kubernetes' default).
	DefaultTimeout = time.Second
)

// Probers maps a status-port path to the probe it runs.
type Probers map[string]*Prober

// Prober is one original probe: exactly one of HTTPGet, TCPSocket and GRPC.
type Prober struct {
	HTTPGet        *HTTPGet   `json:"httpGet,omitempty"`
	TCPSocket      *TCPSocket `json:"tcpSocket,omitempty"`
	GRPC           *GRPC      `json:"grpc,omitempty"`
	TimeoutSeconds int32      `json:"timeoutSeconds,omitempty"`
}

// HTTPGet is an HTTP probe (Kubernetes' HTTPGetAction with a numeric port).
type HTTPGet struct {
	Path        string   `json:"path,omitempty"`
	Port        int      `json:"port"`
	Host        string   `json:"host,omitempty"`
	Scheme      string   `json:"scheme,omitempty"`
	HTTPHeaders []Header `json:"httpHeaders,omitempty"`
}

// Header is one header an HTTP probe sends.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocket is a TCP probe: success when a connection opens.
type TCPSocket struct {
	Port int    `json:"port"`
	Host string `json:"host,omitempty"`
}

// GRPC is a gRPC health probe (grpc.health.v1.Health/Check).
type GRPC struct {
	Port    int     `json:"port"`
	Service *string `json:"service,omitempty"`
}

// Parse decodes and validates a table. An empty string is an empty table.
func Parse(s string) (Probers, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if len(s) > maxTableBytes {
		return nil, fmt.Errorf("app probers: %d bytes, more than %d", len(s), maxTableBytes)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var p Probers
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("app probers: %w", err)
	}
	if len(p) > maxProbers {
		return nil, fmt.Errorf("app probers: %d entries, more than %d", len(p), maxProbers)
	}
	for path, pr := range p {
		if err := pr.validate(path); err != nil {
			return nil, fmt.Errorf("app probers: %s: %w", path, err)
		}
	}
	return p, nil
}

func validPort(p int) bool { return p > 0 && p < 65536 }

func (p *Prober) validate(path string) error {
	if !strings.HasPrefix(path, PathPrefix) || strings.ContainsAny(path, "?#") {
		return fmt.Errorf("path must start with %s", PathPrefix)
	}
	if p == nil {
		return fmt.Errorf("no probe")
	}
	n := 0
	if h := p.HTTPGet; h != nil {
		n++
		if !validPort(h.Port) {
			return fmt.Errorf("httpGet.port %d out of range", h.Port)
		}
		switch strings.ToUpper(h.Scheme) {
		case "", "HTTP", "HTTPS":
		default:
			return fmt.Errorf("httpGet.scheme %q: want HTTP or HTTPS", h.Scheme)
		}
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			return fmt.Errorf("httpGet.path %q must start with /", h.Path)
		}
		if len(h.HTTPHeaders) > maxHeaders {
			return fmt.Errorf("httpGet.httpHeaders: more than %d", maxHeaders)
		}
		for _, hd := range h.HTTPHeaders {
			if hd.Name == "" || strings.ContainsAny(hd.Name+hd.Value, "\r\n\x00") {
				return fmt.Errorf("httpGet.httpHeaders: invalid header %q", hd.Name)
			}
		}
	}
	if t := p.TCPSocket; t != nil {
		n++
		if !validPort(t.Port) {
			return fmt.Errorf("tcpSocket.port %d out of range", t.Port)
		}
	}
	if g := p.GRPC; g != nil {
		n++
		if !validPort(g.Port) {
			return fmt.Errorf("grpc.port %d out of range", g.Port)
		}
	}
	if n != 1 {
		return fmt.Errorf("want exactly one of httpGet, tcpSocket, grpc; got %d", n)
	}
	if p.TimeoutSeconds < 0 {
		return fmt.Errorf("timeoutSeconds %d is negative", p.TimeoutSeconds)
	}
	return nil
}

// Timeout is the probe's timeout.
func (p *Prober) Timeout() time.Duration {
	if p.TimeoutSeconds > 0 {
		return time.Duration(p.TimeoutSeconds) * time.Second
	}
	return DefaultTimeout
}

// Run runs the probe against the application, whose default host is podIP (the kubelet probes
// the pod's IP when a probe names no host). It returns nil on success: an HTTP status in
// [200, 400), an open TCP connection, or a SERVING gRPC health answer.
func (p *Prober) Run(ctx context.Context, podIP string) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout())
	defer cancel()
	host := func(h string) string {
		if h != "" {
			return h
		}
		return podIP
	}
	switch {
	case p.HTTPGet != nil:
		return p.HTTPGet.run(ctx, host(p.HTTPGet.Host))
	case p.TCPSocket != nil:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host(p.TCPSocket.Host), strconv.Itoa(p.TCPSocket.Port)))
		if err != nil {
			return err
		}
		return c.Close()
	case p.GRPC != nil:
		return p.GRPC.run(ctx, podIP)
	}
	return fmt.Errorf("no probe")
}

// probeClient is shared by HTTP probes. As the kubelet, it does not verify the application's
// certificate and does not follow redirects to other hosts (a redirect counts as success).
var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:        &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe targets either
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (h *HTTPGet) run(ctx context.Context, host string) error {
	scheme := "http"
	if strings.EqualFold(h.Scheme, "HTTPS") {
		scheme = "https"
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(h.Port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/strait")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe answered %d", resp.StatusCode)
	}
	return nil
}
