// Package jwks fetches the JSON Web Key Sets that RequestAuthentication's jwksUri names, as
// istiod does: the control plane fetches them (with a timeout and a size limit, never from
// loopback, link-local or unspecified addresses unless allowed) and inlines the keys into each
// proxy's jwt_authn configuration, so that proxies never fetch anything.
//
// Get never blocks translation: a URI seen for the first time is fetched in the background and
// OnUpdate is called when its keys arrive (the control plane then rebuilds the snapshot). Until
// then, and when a fetch fails with no earlier keys, Get returns an error: the translator then
// configures keys that verify no token, so a request with a token is refused (fail closed) while
// a request without one passes on to authorization, as Istio's fake JWKS does. Known keys are
// refreshed every Refresh; a failed refresh keeps the last good keys.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/strait-mesh/strait/internal/boundedhttp"
	"github.com/strait-mesh/strait/proxy/jwtauthn"
)

// Defaults of Options.
const (
	DefaultTimeout = 5 * time.Second
	DefaultRefresh = 20 * time.Minute // Istio's default JWKS refresh interval
	DefaultMaxSize = 256 << 10
	// MaxKeys bounds the keys of one set.
	MaxKeys = 64
)

// Options configure a Resolver.
type Options struct {
	// Timeout bounds one fetch (default DefaultTimeout); Refresh is how often known keys are
	// fetched again (default DefaultRefresh); MaxSize bounds a response body (default
	// DefaultMaxSize).
	Timeout, Refresh time.Duration
	MaxSize          int64
	// AllowPrivate lets fetches reach loopback, link-local and unspecified addresses (tests and
	// single-machine meshes whose issuer runs locally).
	AllowPrivate bool
	// OnUpdate is called, from the resolver's goroutine, when a URI's keys change.
	OnUpdate func()
	Logger   *slog.Logger
}

// Resolver fetches and caches key sets by URI. Safe for concurrent use.
type Resolver struct {
	o      Options
	client *http.Client

	mu      sync.Mutex
	entries map[string]*entry
	closed  bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type entry struct {
	keys     string // the last good set, re-encoded; "" before the first success
	err      error  // the last failure, nil after a success
	fetching bool
	fetched  time.Time
}

// New returns a Resolver; Close stops its fetches.
func New(o Options) *Resolver {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Resolver{o: o, entries: map[string]*entry{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	dialer := &net.Dialer{Timeout: o.Timeout, Control: r.checkAddress}
	r.client = &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: o.Timeout,
			ResponseHeaderTimeout: o.Timeout, MaxResponseHeaderBytes: 64 << 10, Proxy: nil},
		// A redirect is followed only to another allowed address (checkAddress applies to it).
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return checkScheme(req.URL)
		},
	}
	go r.refreshLoop()
	return r
}

// Close stops background fetches and waits for them.
func (r *Resolver) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// Get returns the key set of uri as JSON, or why there is none yet. The first call for a URI
// starts its fetch.
func (r *Resolver) Get(uri string) (string, error) {
	if u, err := url.Parse(uri); err != nil {
		return "", fmt.Errorf("jwksUri %q: %w", uri, err)
	} else if err := checkScheme(u); err != nil {
		return "", fmt.Errorf("jwksUri %q: %w", uri, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[uri]
	if e == nil {
		e = &entry{err: errors.New("fetching")}
		r.entries[uri] = e
		r.startFetch(uri, e)
	}
	if e.keys == "" {
		return "", fmt.Errorf("jwksUri %q: no keys yet: %w", uri, e.err)
	}
	return e.keys, nil
}

// startFetch fetches uri in the background unless a fetch is running. r.mu is held.
func (r *Resolver) startFetch(uri string, e *entry) {
	if e.fetching || r.closed {
		return
	}
	e.fetching = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		keys, err := r.fetch(uri)
		r.mu.Lock()
		e.fetching, e.fetched = false, time.Now()
		changed := false
		if err != nil {
			e.err = err
			r.o.Logger.Warn("fetching a JWKS failed; tokens of its issuer are refused until it succeeds unless earlier keys are known",
				"uri", uri, "error", err, "haveKeys", e.keys != "")
		} else {
			changed = keys != e.keys
			e.keys, e.err = keys, nil
		}
		r.mu.Unlock()
		if changed && r.o.OnUpdate != nil {
			r.o.OnUpdate()
		}
	}()
}

func (r *Resolver) refreshLoop() {
	t := time.NewTicker(r.o.Refresh)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.mu.Lock()
			for uri, e := range r.entries {
				r.startFetch(uri, e)
			}
			r.mu.Unlock()
		}
	}
}

// fetch gets and validates one key set, returning it re-encoded (only the public keys).
func (r *Resolver) fetch(uri string) (string, error) {
	body, err := boundedhttp.Get(r.ctx, r.client, uri, "application/json", r.o.MaxSize)
	if err != nil {
		return "", err
	}
	return Normalize(body)
}

// Normalize parses a JWKS document (or a single JWK) and re-encodes it as a key set holding only
// public keys; it refuses documents without keys, with more than MaxKeys, or with private or
// symmetric keys.
//
// The document is read as strait-proxy and Envoy read a key set (jwtauthn.JWKSJSON: C++
// protobuf's JSON rules, so single-quoted strings, bare member names and trailing commas are
// accepted, and duplicate member names, more than 100 nested levels and numbers out of range
// refused), member names matched exactly. A key set ({"keys": ...}) must also be one the proxy
// finds a usable key in as it is (jwtauthn.CheckJWKS), as Envoy would be handed it; and what is
// returned always is.
func Normalize(doc []byte) (string, error) {
	strict, ok := jwtauthn.JWKSJSON(doc)
	if !ok {
		return "", errors.New("not a JSON Web Key Set: not JSON as Envoy reads a key set")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(strict, &top); err != nil {
		return "", fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	var set jose.JSONWebKeySet
	if raw, isSet := top["keys"]; isSet {
		if err := jwtauthn.CheckJWKS(doc); err != nil {
			return "", fmt.Errorf("not a JSON Web Key Set strait-proxy can use: %w", err)
		}
		if err := json.Unmarshal(raw, &set.Keys); err != nil {
			return "", fmt.Errorf("not a JSON Web Key Set: %w", err)
		}
	} else {
		var one jose.JSONWebKey
		if err := one.UnmarshalJSON(strict); err != nil {
			return "", fmt.Errorf("not a JSON Web Key Set: %w", err)
		}
		set.Keys = []jose.JSONWebKey{one}
	}
	if len(set.Keys) == 0 {
		return "", errors.New("not a JSON Web Key Set: no keys")
	}
	if len(set.Keys) > MaxKeys {
		return "", fmt.Errorf("%d keys, at most %d", len(set.Keys), MaxKeys)
	}
	for i, k := range set.Keys {
		if !k.Valid() {
			return "", fmt.Errorf("key %d is not valid", i)
		}
		if !k.IsPublic() {
			return "", fmt.Errorf("key %d (kid %q) is not a public key", i, k.KeyID)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return "", err
	}
	if err := jwtauthn.CheckJWKS(b); err != nil {
		return "", fmt.Errorf("not a JSON Web Key Set strait-proxy can use: %w", err)
	}
	return string(b), nil
}

func checkScheme(u *url.URL) error {
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// checkAddress refuses connections to loopback, link-local (cloud metadata services),
// unspecified and multicast addresses unless AllowPrivate: a jwksUri must not let whoever writes
// a RequestAuthentication make the control plane probe its own host.
func (r *Resolver) checkAddress(_, address string, _ syscall.RawConn) error {
	if r.o.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	ip := ap.Addr().Unmap()
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("address %s is loopback, link-local or unspecified: refused (straitd --jwks-allow-private allows it)", ip)
	}
	return nil
}
