package listener

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	netextauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// authorizer is a real envoy.service.auth.v3 Authorization server (grpc-go) on loopback.
type authorizer struct {
	authv3.UnimplementedAuthorizationServer
	testenv.Calls[*authv3.CheckRequest]
	cancelled atomic.Int64
	reply     func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) // set before serving
}

func (a *authorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.Add(req)
	res, err := a.reply(ctx, req)
	if ctx.Err() != nil {
		a.cancelled.Add(1)
	}
	return res, err
}

// count is how many checks the authorizer received, and how many of them were cancelled.
func (a *authorizer) count() (calls, cancelled int) {
	return a.Len(), int(a.cancelled.Load())
}

func startAuthorizer(t *testing.T, reply func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)) (*authorizer, string) {
	t.Helper()
	a := &authorizer{reply: reply}
	return a, testenv.AuthorizationServer(t, a)
}

func allowWith(md *structpb.Struct) func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, DynamicMetadata: md}, nil
	}
}

func deny(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
}

// h2cUpstream is an l7.Upstream that sends every request to one h2c address: the stand-in for
// the proxy's gRPC cluster of the authorizer.
type h2cUpstream struct {
	addr string
	rt   *http.Transport
}

func newH2CUpstream(addr string) *h2cUpstream {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &h2cUpstream{addr: addr, rt: &http.Transport{Protocols: p, DisableCompression: true}}
}

func (u *h2cUpstream) RoundTrip(req *http.Request, _ balance.Context) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = "http", u.addr
	return u.rt.RoundTrip(out)
}
func (u *h2cUpstream) AcquireRetry() bool { return true }
func (u *h2cUpstream) ReleaseRetry()      {}

// authzEnv is a testEnv whose HTTP clusters (the authorizer's) are h2c upstreams.
type authzEnv struct {
	*testEnv
	clusters map[string]l7.Upstream
}

type authzHTTP struct{ clusters map[string]l7.Upstream }

func (e authzEnv) HTTP() l7.Env                     { return authzHTTP{e.clusters} }
func (h authzHTTP) Route(string) *route.Table       { return nil }
func (h authzHTTP) Cluster(name string) l7.Upstream { return h.clusters[name] }
func newAuthzEnv(cluster, addr string) authzEnv {
	return authzEnv{newEnv(), map[string]l7.Upstream{cluster: newH2CUpstream(addr)}}
}
func (e authzEnv) value(name string) uint64             { return e.counter(name) }
func (e authzEnv) active(prefix string) int64           { return e.st.Gauge(prefix+"active", "").Value() }
func (e authzEnv) addTCP(cluster, addr string) authzEnv { e.tcp[cluster] = addr; return e }

// recordingBackend is a real TCP echo server that counts its connections and the bytes it got.
type recordingBackend struct {
	addr  string
	conns atomic.Int64
	bytes atomic.Int64
}

func newRecordingBackend(t *testing.T) *recordingBackend {
	b := &recordingBackend{}
	b.addr = testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		b.conns.Add(1)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			b.bytes.Add(int64(n))
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.(*net.TCPConn).CloseWrite()
				return
			}
		}
	})
	return b
}

const (
	authzCluster   = "outbound|9000||ext-authz.foo.svc.cluster.local"
	backendCluster = "backend"
	istioPolicy    = "istio-ext-authz-ns[foo]-policy[ext-authz]-rule[0]"
)

// istioExtAuthz is the filter as the control plane emits it for an envoyExtAuthzGrpc provider.
func istioExtAuthz(failOpen bool) *netextauthzv3.ExtAuthz {
	x := testenv.IstioNetworkExtAuthz(authzCluster)
	x.GrpcService.Timeout = durationpb.New(10 * time.Second)
	x.FailureModeAllow = failOpen
	return x
}

// shadowRBAC is the network RBAC filter before it: shadow DENY rules whose one policy matches
// connections from the principal p.
func shadowRBAC(p *rbacv3.Principal) *netrbacv3.RBAC {
	return &netrbacv3.RBAC{StatPrefix: "tcp.", ShadowRulesStatPrefix: "istio_ext_authz_", ShadowRules: &rbacv3.RBAC{
		Action: rbacv3.RBAC_DENY,
		Policies: map[string]*rbacv3.Policy{istioPolicy: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{p},
		}},
	}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

// chainOf is a filter chain of the given network filters followed by a tcp_proxy to backend.
func chainOf(t *testing.T, filters ...proto.Message) *listenerv3.FilterChain {
	var fs []*listenerv3.Filter
	for _, f := range filters {
		name := "envoy.filters.network.rbac"
		if _, ok := f.(*netextauthzv3.ExtAuthz); ok {
			name = "envoy.filters.network.ext_authz"
		}
		fs = append(fs, &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, f)}})
	}
	fs = append(fs, &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: testenv.MustAny(t, &tcpv3.TcpProxy{StatPrefix: "tcp", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: backendCluster}})}})
	return &listenerv3.FilterChain{Name: "tcp", Filters: fs}
}

// exchange dials addr (from local when set), writes msg, half-closes and reads to the end.
func exchange(t *testing.T, local, addr, msg string) (string, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

const statPrefix = "ext_authz.tcp.."

func TestNetworkExtAuthzAllowAndDeny(t *testing.T) {
	verdict := atomic.Value{}
	verdict.Store(true)
	md := &structpb.Struct{Fields: map[string]*structpb.Value{"user": structpb.NewStringValue("alice")}}
	a, aaddr := startAuthorizer(t, func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		if verdict.Load().(bool) {
			return allowWith(md)(ctx, req)
		}
		return deny(ctx, req)
	})
	be := newRecordingBackend(t)
	env := newAuthzEnv(authzCluster, aaddr).addTCP(backendCluster, be.addr)
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{
		chainOf(t, shadowRBAC(anyPrincipal()), istioExtAuthz(false))}}, env)

	if got, err := exchange(t, "", addr, "hello"); err != nil || got != "hello" {
		t.Fatalf("allowed: got %q, %v", got, err)
	}
	ac := a.Last(t).GetAttributes()
	src, dst := ac.GetSource().GetAddress().GetSocketAddress(), ac.GetDestination().GetAddress().GetSocketAddress()
	if src.GetAddress() != "127.0.0.1" || src.GetPortValue() == 0 || dst.GetAddress() != "127.0.0.1" ||
		uint32(port(addr)) != dst.GetPortValue() || ac.GetRequest() != nil || ac.GetTlsSession() != nil ||
		ac.GetSource().GetPrincipal() != "" || ac.GetMetadataContext() != nil {
		t.Errorf("attributes %v", ac)
	}

	verdict.Store(false)
	if got, err := exchange(t, "", addr, "secret"); got != "" {
		t.Fatalf("denied: got %q, %v", got, err)
	}
	if be.conns.Load() != 1 || be.bytes.Load() != int64(len("hello")) {
		t.Errorf("backend saw %d connections, %d bytes; want only the allowed one", be.conns.Load(), be.bytes.Load())
	}
	waitFor(t, "stats", func() bool { return env.value(statPrefix+"cx_closed") == 1 })
	for name, want := range map[string]uint64{"total": 2, "ok": 1, "denied": 1, "error": 0, "disabled": 0,
		"failure_mode_allowed": 0, "cx_closed": 1} {
		if got := env.value(statPrefix + name); got != want {
			t.Errorf("%s%s = %d, want %d", statPrefix, name, got, want)
		}
	}
	if env.active(statPrefix) != 0 {
		t.Errorf("active = %d", env.active(statPrefix))
	}
	if env.value("tcp.rbac.istio_ext_authz_shadow_denied") != 2 {
		t.Errorf("shadow_denied = %d", env.value("tcp.rbac.istio_ext_authz_shadow_denied"))
	}
}

func TestNetworkExtAuthzAuthorizerDown(t *testing.T) {
	ln := testenv.Listen(t, "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	for _, failOpen := range []bool{false, true} {
		be := newRecordingBackend(t)
		env := newAuthzEnv(authzCluster, down).addTCP(backendCluster, be.addr)
		_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{
			chainOf(t, shadowRBAC(anyPrincipal()), istioExtAuthz(failOpen))}}, env)
		got, _ := exchange(t, "", addr, "hello")
		waitFor(t, "the check's end", func() bool { return env.value(statPrefix+"error") == 1 && env.active(statPrefix) == 0 })
		if failOpen {
			if got != "hello" || env.value(statPrefix+"failure_mode_allowed") != 1 || env.value(statPrefix+"cx_closed") != 0 {
				t.Errorf("failure_mode_allow: got %q, failure_mode_allowed %d", got, env.value(statPrefix+"failure_mode_allowed"))
			}
			continue
		}
		if got != "" || be.conns.Load() != 0 || env.value(statPrefix+"cx_closed") != 1 {
			t.Errorf("fail closed: got %q, backend connections %d, cx_closed %d", got, be.conns.Load(), env.value(statPrefix+"cx_closed"))
		}
	}

	// A cluster that does not exist is a failed check too.
	be := newRecordingBackend(t)
	env := authzEnv{newEnv(), nil}.addTCP(backendCluster, be.addr)
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{
		chainOf(t, shadowRBAC(anyPrincipal()), istioExtAuthz(false))}}, env)
	if got, _ := exchange(t, "", addr, "hello"); got != "" || be.conns.Load() != 0 {
		t.Errorf("no cluster: got %q, backend connections %d", got, be.conns.Load())
	}
}

// TestNetworkExtAuthzShadowMetadata drives the filter from the shadow RBAC filter's metadata as
// Istio does: only connections a CUSTOM policy matches (here: from 127.0.0.2) are checked.
func TestNetworkExtAuthzShadowMetadata(t *testing.T) {
	a, aaddr := startAuthorizer(t, allowWith(nil))
	be := newRecordingBackend(t)
	env := newAuthzEnv(authzCluster, aaddr).addTCP(backendCluster, be.addr)
	x := istioExtAuthz(false)
	x.MetadataContextNamespaces = []string{"envoy.filters.network.rbac"}
	from2 := &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{
		AddressPrefix: "127.0.0.2", PrefixLen: wrapperspb.UInt32(32)}}}
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{chainOf(t, shadowRBAC(from2), x)}}, env)

	if got, err := exchange(t, "127.0.0.1", addr, "one"); err != nil || got != "one" {
		t.Fatalf("unmatched: got %q, %v", got, err)
	}
	if calls, _ := a.count(); calls != 0 || env.value(statPrefix+"disabled") != 1 || env.value(statPrefix+"total") != 0 {
		t.Fatalf("unmatched connection: %d calls, disabled %d", calls, env.value(statPrefix+"disabled"))
	}
	if got, err := exchange(t, "127.0.0.2", addr, "two"); err != nil || got != "two" {
		t.Fatalf("matched: got %q, %v", got, err)
	}
	if calls, _ := a.count(); calls != 1 || env.value(statPrefix+"ok") != 1 {
		t.Fatalf("matched connection: %d calls, ok %d", calls, env.value(statPrefix+"ok"))
	}
	// The CheckRequest carries the shadow metadata (metadata_context_namespaces).
	got := a.Last(t).GetAttributes().GetMetadataContext().GetFilterMetadata()["envoy.filters.network.rbac"]
	want := &structpb.Struct{Fields: map[string]*structpb.Value{
		"istio_ext_authz_shadow_effective_policy_id": structpb.NewStringValue(istioPolicy),
		"istio_ext_authz_shadow_engine_result":       structpb.NewStringValue("denied"),
	}}
	if !proto.Equal(got, want) {
		t.Errorf("metadata_context %v, want %v", got, want)
	}
	if env.value("tcp.rbac.istio_ext_authz_shadow_allowed") != 1 || env.value("tcp.rbac.istio_ext_authz_shadow_denied") != 1 {
		t.Errorf("shadow stats allowed %d denied %d", env.value("tcp.rbac.istio_ext_authz_shadow_allowed"),
			env.value("tcp.rbac.istio_ext_authz_shadow_denied"))
	}

	// Without a shadow RBAC filter there is no metadata: never checked.
	_, addr = start(t, &listenerv3.Listener{Name: "l2", FilterChains: []*listenerv3.FilterChain{chainOf(t, istioExtAuthz(false))}}, env)
	if got, err := exchange(t, "127.0.0.2", addr, "three"); err != nil || got != "three" {
		t.Fatalf("no metadata: got %q, %v", got, err)
	}
	if calls, _ := a.count(); calls != 1 {
		t.Errorf("%d calls, want still 1", calls)
	}
}

// TestNetworkExtAuthzMetadataToLaterFilters checks that the authorizer's dynamic metadata
// reaches the filters after it: an enforced RBAC filter allows only user alice.
func TestNetworkExtAuthzMetadataToLaterFilters(t *testing.T) {
	user := atomic.Value{}
	user.Store("alice")
	_, aaddr := startAuthorizer(t, func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return allowWith(&structpb.Struct{Fields: map[string]*structpb.Value{"user": structpb.NewStringValue(user.Load().(string))}})(ctx, req)
	})
	be := newRecordingBackend(t)
	env := newAuthzEnv(authzCluster, aaddr).addTCP(backendCluster, be.addr)
	x := istioExtAuthz(false)
	x.FilterEnabledMetadata = nil // every connection
	onlyAlice := &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{"alice": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
			Filter: "envoy.filters.network.ext_authz",
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "user"}}},
			Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "alice"}}}},
		}}}},
	}}}}
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{chainOf(t, x, onlyAlice)}}, env)
	if got, err := exchange(t, "", addr, "hi"); err != nil || got != "hi" {
		t.Fatalf("alice: got %q, %v", got, err)
	}
	user.Store("bob")
	if got, _ := exchange(t, "", addr, "hi"); got != "" {
		t.Fatalf("bob: got %q", got)
	}
	if env.value("tcp.rbac.allowed") != 1 || env.value("tcp.rbac.denied") != 1 || env.value(statPrefix+"ok") != 2 {
		t.Errorf("rbac allowed %d denied %d, ext_authz ok %d", env.value("tcp.rbac.allowed"), env.value("tcp.rbac.denied"),
			env.value(statPrefix+"ok"))
	}
}

// TestNetworkExtAuthzHoldsData checks that bytes (and the end of stream) a client sends before
// the reply are held, then delivered in order; and that a client that resets the connection
// during the check cancels it.
func TestNetworkExtAuthzHoldsData(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	a, aaddr := startAuthorizer(t, func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		select {
		case <-release:
			return allowWith(nil)(ctx, req)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	be := newRecordingBackend(t)
	env := newAuthzEnv(authzCluster, aaddr).addTCP(backendCluster, be.addr)
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{
		chainOf(t, shadowRBAC(anyPrincipal()), istioExtAuthz(false))}}, env)

	// A client that resets its connection while the check runs: the check is cancelled.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first check", func() bool { n, _ := a.count(); return n == 1 })
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	waitFor(t, "the cancelled check", func() bool { _, n := a.count(); return n == 1 && env.active(statPrefix) == 0 })
	if env.value(statPrefix+"total") != 1 || env.value(statPrefix+"ok")+env.value(statPrefix+"error")+env.value(statPrefix+"cx_closed") != 0 ||
		be.conns.Load() != 0 {
		t.Errorf("reset during the check: total %d error %d cx_closed %d, backend connections %d", env.value(statPrefix+"total"),
			env.value(statPrefix+"error"), env.value(statPrefix+"cx_closed"), be.conns.Load())
	}

	// A client that sends and half-closes before the reply gets its echo once allowed.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "early bytes"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	waitFor(t, "the second check", func() bool { n, _ := a.count(); return n == 2 })
	if be.conns.Load() != 0 {
		t.Fatal("the backend was reached before the reply")
	}
	once.Do(func() { close(release) })
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "early bytes" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestNetworkExtAuthzListenerCloseCancelsChecks(t *testing.T) {
	a, aaddr := startAuthorizer(t, func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	be := newRecordingBackend(t)
	env := newAuthzEnv(authzCluster, aaddr).addTCP(backendCluster, be.addr)
	l, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{
		chainOf(t, shadowRBAC(anyPrincipal()), istioExtAuthz(true))}}, env)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the check", func() bool { n, _ := a.count(); return n == 1 })
	l.Close()
	waitFor(t, "the cancelled check", func() bool { _, n := a.count(); return n == 1 && l.ActiveConnections() == 0 })
	if be.conns.Load() != 0 {
		t.Error("a connection cut by Close reached the backend (failure_mode_allow)")
	}
}

func TestNetworkExtAuthzCompileErrors(t *testing.T) {
	env := newEnv()
	for name, tc := range map[string]struct {
		mutate func(*netextauthzv3.ExtAuthz)
		field  string
	}{
		"include_peer_certificate": {func(x *netextauthzv3.ExtAuthz) { x.IncludePeerCertificate = true }, "include_peer_certificate"},
		"shadow_mode":              {func(x *netextauthzv3.ExtAuthz) { x.ShadowMode = true }, "shadow_mode"},
		"send_tls_alert_on_denial": {func(x *netextauthzv3.ExtAuthz) { x.SendTlsAlertOnDenial = true }, "send_tls_alert_on_denial"},
		"bootstrap labels":         {func(x *netextauthzv3.ExtAuthz) { x.BootstrapMetadataLabelsKey = "k" }, "bootstrap_metadata_labels_key"},
		"typed metadata":           {func(x *netextauthzv3.ExtAuthz) { x.TypedMetadataContextNamespaces = []string{"a"} }, "typed_metadata_context_namespaces"},
		"v2":                       {func(x *netextauthzv3.ExtAuthz) { x.TransportApiVersion = corev3.ApiVersion_V2 }, "transport_api_version"},
		"google_grpc": {func(x *netextauthzv3.ExtAuthz) {
			x.GrpcService.TargetSpecifier = &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: "x", StatPrefix: "s"}}
		}, "grpc_service.google_grpc"},
		"retry_policy": {func(x *netextauthzv3.ExtAuthz) { x.GrpcService.RetryPolicy = &corev3.RetryPolicy{} }, "grpc_service.retry_policy"},
	} {
		x := istioExtAuthz(false)
		tc.mutate(x)
		_, err := Compile(&listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0),
			FilterChains: []*listenerv3.FilterChain{chainOf(t, x)}}, env)
		var ue *xdsfield.UnsupportedError
		if !errors.As(err, &ue) || !strings.HasSuffix(ue.Field, "filters[0].typed_config."+tc.field) {
			t.Errorf("%s: %v, want an UnsupportedError naming %s", name, err, tc.field)
		}
	}
	for name, mutate := range map[string]func(*netextauthzv3.ExtAuthz){
		"no stat_prefix":   func(x *netextauthzv3.ExtAuthz) { x.StatPrefix = "" },
		"no grpc_service":  func(x *netextauthzv3.ExtAuthz) { x.GrpcService = nil },
		"no cluster":       func(x *netextauthzv3.ExtAuthz) { x.GrpcService.GetEnvoyGrpc().ClusterName = "" },
		"negative timeout": func(x *netextauthzv3.ExtAuthz) { x.GrpcService.Timeout = durationpb.New(-time.Second) },
	} {
		x := istioExtAuthz(false)
		mutate(x)
		if _, err := Compile(&listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0),
			FilterChains: []*listenerv3.FilterChain{chainOf(t, x)}}, env); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	// ext_authz cannot end a chain.
	lr := &listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.ext_authz", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, istioExtAuthz(false))}}}}}}
	if _, err := Compile(lr, env); err == nil || !strings.Contains(err.Error(), "terminal") {
		t.Errorf("ext_authz as the terminal filter: %v", err)
	}
}
