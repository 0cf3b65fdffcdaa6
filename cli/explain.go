package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/httppath"
	"github.com/strait-mesh/strait/proxy/jwtauthn"
	"github.com/strait-mesh/strait/proxy/xdspb"
	extauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ext_authz/v3"
	jwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
	httprbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	phcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// explainFlags describe the request `strait explain` evaluates.
type explainFlags struct {
	pcFlags
	port      uint32
	principal string // the caller's identity: a SPIFFE ID or Istio's TD/ns/NS/sa/SA
	plaintext bool   // the caller has no mesh identity (a plaintext connection)
	sourceIP  string
	destIP    string
	method    string
	path      string
	host      string
	headers   []string
	jwt       string
	sni       string
}

// newExplain returns `strait explain`: which AuthorizationPolicies (and RequestAuthentication)
// a request meets at a proxy, and the decision, computed by strait-proxy's own RBAC and JWT code
// over the proxy's live configuration.
func newExplain(g *globals) *cobra.Command {
	pc := &proxyConfig{g: g, client: &http.Client{Timeout: 15 * time.Second}, now: time.Now}
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain PROXY --port PORT [--principal ID] [--method M] [--path P] [--host H] [-H 'name: value'] [--jwt TOKEN]",
		Short: "Explain which authorization policies a request meets at a proxy, and the decision",
		Long: `explain evaluates a described request against the authorization configuration a proxy is
running (its /config_dump, or --file), with the very code strait-proxy enforces it with: the
connection manager's path normalization, the JWT filter (RequestAuthentication; a token given
with --jwt is verified against the keys in the configuration), then each RBAC filter in order
(AuthorizationPolicy: CUSTOM, DENY, ALLOW; AUDIT and dry-run policies as shadow rules). It prints
every policy that matches and the decision, naming the policy that decides.

PROXY is named as for strait proxy-config. The inbound listener of --port is used (a gateway's
listener of that port); the caller's identity (--principal, e.g. cluster.local/ns/web/sa/web or
spiffe://cluster.local/ns/web/sa/web) selects the mutual TLS filter chain, --plaintext the
plaintext one.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && f.file == "" {
				return fmt.Errorf("name the proxy (its admin address or name), or a saved config dump with --file")
			}
			if f.port == 0 {
				return fmt.Errorf("--port is required: the destination port whose listener decides")
			}
			d, err := pc.decodedDump(cmd.Context(), args, &f.pcFlags)
			if err != nil {
				return err
			}
			ls, err := d.listenerList()
			if err != nil {
				return err
			}
			ex, err := explainRequest(ls, &f)
			if err != nil {
				return err
			}
			if f.output == "json" {
				enc := json.NewEncoder(pc.g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ex)
			}
			ex.write(pc.g.stdout)
			if !ex.Allowed {
				return errExplainDenied
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "short", "output format: short or json")
	fl.StringVar(&f.file, "file", "", "a saved /config_dump to read instead of a live proxy")
	fl.Uint32Var(&f.port, "port", 0, "the destination port (required)")
	fl.StringVar(&f.principal, "principal", "", "the caller's mesh identity (SPIFFE ID, or TD/ns/NS/sa/SA)")
	fl.BoolVar(&f.plaintext, "plaintext", false, "the caller connects in plaintext (no mesh identity)")
	fl.StringVar(&f.sourceIP, "source-ip", "127.0.0.1", "the caller's address")
	fl.StringVar(&f.destIP, "destination-ip", "", "the destination address (default: the listener's)")
	fl.StringVar(&f.method, "method", "GET", "the request method")
	fl.StringVar(&f.path, "path", "/", "the request path (query allowed)")
	fl.StringVar(&f.host, "host", "", "the request authority (default: the proxy's service host is unknown, so empty)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "a request header, 'name: value' (repeatable)")
	fl.StringVar(&f.jwt, "jwt", "", "a bearer token sent in Authorization")
	fl.StringVar(&f.sni, "sni", "", "the TLS server name the caller sent")
	return cmd
}

// errExplainDenied makes explain exit non-zero for a request that would not reach the
// application, as a script expects.
var errExplainDenied = errors.New("the request would not reach the application")

// explanation is explain's result.
type explanation struct {
	Listener    string        `json:"listener"`
	FilterChain string        `json:"filterChain"`
	Path        string        `json:"normalizedPath"`
	JWT         string        `json:"jwt,omitempty"`
	Steps       []explainStep `json:"filters"`
	Allowed     bool          `json:"allowed"`
	Decision    string        `json:"decision"`
	DecidedBy   string        `json:"decidedBy,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
}

// explainStep is one HTTP filter's evaluation.
type explainStep struct {
	Filter   string   `json:"filter"`
	Action   string   `json:"action,omitempty"`
	Matched  []string `json:"matchedPolicies,omitempty"`
	Shadow   []string `json:"shadowMatchedPolicies,omitempty"`
	Verdict  string   `json:"verdict"`
	Policies int      `json:"policies"`
}

// explainRequest finds the connection manager that would serve the request and runs its
// normalization, JWT and RBAC filters over it.
func explainRequest(ls []*listenerv3.Listener, f *explainFlags) (*explanation, error) {
	l, chain, m, err := pickConnectionManager(ls, f)
	if err != nil {
		return nil, err
	}
	req, err := newExplainReq(f, l)
	if err != nil {
		return nil, err
	}
	ex := &explanation{Listener: l.GetName(), FilterChain: chain.GetName(), Allowed: true, Decision: "ALLOWED"}
	if !httppath.UpperMethod(req.method) {
		ex.Allowed, ex.Decision = false, "REFUSED (400: a method with lower-case letters)"
		return ex, nil
	}
	// The proxy's filters read its trimmed xDS types: the typed configs below decode into them
	// (as in the proxy), and the connection manager converts.
	pm, err := xdspb.From[*phcmv3.HttpConnectionManager](m)
	if err != nil {
		return nil, err
	}
	p, err := httppath.NormalizeURI(req.path, httppath.OptionsFor(pm))
	if err != nil {
		ex.Allowed, ex.Decision = false, "REFUSED (400: "+err.Error()+")"
		return ex, nil
	}
	req.path, ex.Path = p, p
	custom := "" // the external authorizer a CUSTOM policy sends the request to
	for i, hf := range m.GetHttpFilters() {
		if hf.GetDisabled() {
			continue
		}
		tc := hf.GetTypedConfig()
		field := fmt.Sprintf("http_filters[%d]", i)
		switch {
		case tc.MessageIs((*jwtauthnv3.JwtAuthentication)(nil)):
			var jc jwtauthnv3.JwtAuthentication
			if err := tc.UnmarshalTo(&jc); err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			jf, err := jwtauthn.Compile(&jc, field)
			if err != nil {
				return nil, fmt.Errorf("%s: the proxy's JWT configuration does not compile here: %w", field, err)
			}
			res := jf.Verify(req)
			step := explainStep{Filter: hf.GetName(), Verdict: "passed"}
			switch {
			case res.Status != jwtauthn.OK:
				step.Verdict = "refused: " + res.Status.String()
				ex.JWT = "invalid: " + res.Status.String()
				ex.Steps = append(ex.Steps, step)
				ex.Allowed, ex.Decision = false, "REFUSED (401/403 by RequestAuthentication: "+res.Status.String()+")"
				return ex, nil
			case res.Metadata != nil:
				req.metadata[jwtauthn.MetadataNamespace] = res.Metadata
				ex.JWT = "valid"
				step.Verdict = "passed: token verified"
			default:
				ex.JWT = "none"
				step.Verdict = "passed: no token (authorization decides)"
			}
			ex.Steps = append(ex.Steps, step)
		case tc.MessageIs((*httprbacv3.RBAC)(nil)):
			var rc httprbacv3.RBAC
			if err := tc.UnmarshalTo(&rc); err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			af, err := authz.CompileHTTPFilter(&rc, m.GetStatPrefix(), field)
			if err != nil {
				return nil, fmt.Errorf("%s: the proxy's RBAC configuration does not compile here: %w", field, err)
			}
			step := explainStep{Filter: hf.GetName(), Verdict: "no enforced rules"}
			if af.Rules != nil {
				step.Action = af.Rules.Action().String()
				step.Policies = len(af.Rules.Policies())
				step.Matched = af.Rules.MatchingPolicies(req)
			}
			if af.Shadow != nil {
				step.Shadow = af.Shadow.MatchingPolicies(req)
				if af.Rules == nil {
					step.Action = "shadow " + af.Shadow.Action().String()
					step.Policies = len(af.Shadow.Policies())
				}
				// As the proxy: the shadow decision goes to the dynamic metadata, where a
				// CUSTOM policy's ext_authz filter reads whether to call its authorizer.
				mergeMetadata(req.metadata, vocab.FilterHTTPRBAC, af.ShadowMetadataStruct(af.Shadow.Evaluate(req)))
			}
			res := af.Check(req)
			if af.Rules != nil {
				if res.Allowed() {
					step.Verdict = "allowed"
				} else {
					step.Verdict = "denied"
				}
				if res.Enforced.Policy != "" {
					step.Verdict += " by " + res.Enforced.Policy
				}
			}
			ex.Steps = append(ex.Steps, step)
			if !res.Allowed() {
				ex.Allowed, ex.Decision, ex.DecidedBy = false, "DENIED (403 "+authz.DeniedBody+")", res.Enforced.Policy
				return ex, nil
			}
			if res.Enforced.Policy != "" {
				ex.DecidedBy = res.Enforced.Policy
			}
		case tc.MessageIs((*extauthzv3.ExtAuthz)(nil)):
			var ec extauthzv3.ExtAuthz
			if err := tc.UnmarshalTo(&ec); err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			checked := true
			if fm := ec.GetFilterEnabledMetadata(); fm != nil {
				mm, err := authz.CompileMetadataMatcher(field+".filter_enabled_metadata", fm)
				if err != nil {
					return nil, err
				}
				checked = mm.Match(func(ns string) *structpb.Struct { return req.metadata[ns] })
			}
			step := explainStep{Filter: hf.GetName(), Action: "CUSTOM", Verdict: "not called: no CUSTOM rule selects the request"}
			if checked {
				step.Verdict = "the external authorizer decides (" + extAuthzTarget(&ec) + ")"
				ex.Notes = append(ex.Notes, "a CUSTOM policy sends this request to an external authorizer, which explain does not call: the decision above holds only if it allows")
				custom = extAuthzTarget(&ec)
			}
			ex.Steps = append(ex.Steps, step)
		}
	}
	if custom != "" {
		ex.Decision = "ALLOWED if the external authorizer allows (" + custom + ")"
	}
	return ex, nil
}

// write prints the explanation for people.
func (ex *explanation) write(w io.Writer) {
	fmt.Fprintf(w, "Listener:      %s (filter chain %q)\n", ex.Listener, ex.FilterChain)
	if ex.Path != "" {
		fmt.Fprintf(w, "Path seen:     %s\n", ex.Path)
	}
	if ex.JWT != "" {
		fmt.Fprintf(w, "JWT:           %s\n", ex.JWT)
	}
	for _, s := range ex.Steps {
		fmt.Fprintf(w, "%-14s %s", s.Filter+":", s.Action)
		if s.Policies > 0 {
			fmt.Fprintf(w, " (%d policies)", s.Policies)
		}
		fmt.Fprintf(w, " -> %s\n", s.Verdict)
		for _, p := range s.Matched {
			fmt.Fprintf(w, "    matches %s\n", p)
		}
		for _, p := range s.Shadow {
			fmt.Fprintf(w, "    matches (shadow: dry run, AUDIT or CUSTOM) %s\n", p)
		}
	}
	fmt.Fprintf(w, "Decision:      %s\n", ex.Decision)
	if ex.DecidedBy != "" {
		fmt.Fprintf(w, "Decided by:    %s\n", ex.DecidedBy)
	}
	for _, n := range ex.Notes {
		fmt.Fprintf(w, "Note:          %s\n", n)
	}
}

// pickConnectionManager finds the listener of the port and, among its chains, the HTTP
// connection manager the caller's connection would reach: a mutual TLS chain for a caller with
// an identity, a plaintext one otherwise.
func pickConnectionManager(ls []*listenerv3.Listener, f *explainFlags) (*listenerv3.Listener, *listenerv3.FilterChain, *hcmv3.HttpConnectionManager, error) {
	wantTLS := f.principal != "" && !f.plaintext
	type cand struct {
		l *listenerv3.Listener
		c *listenerv3.FilterChain
		m *hcmv3.HttpConnectionManager
	}
	var exact, fallback []cand
	for _, l := range ls {
		lp := listenerPort(l)
		for _, c := range filterChains(l) {
			cm := c.GetFilterChainMatch()
			if dp := cm.GetDestinationPort().GetValue(); dp != 0 && dp != f.port {
				continue
			}
			if cm.GetDestinationPort() == nil && lp != f.port {
				continue
			}
			if l.GetTrafficDirection().String() == "OUTBOUND" && strings.HasPrefix(l.GetName(), "virtualOutbound") {
				continue
			}
			for _, nf := range c.GetFilters() {
				if !isHCM(nf) {
					continue
				}
				var m hcmv3.HttpConnectionManager
				if nf.GetTypedConfig().UnmarshalTo(&m) != nil {
					continue
				}
				isTLS := cm.GetTransportProtocol() == "tls" || c.GetTransportSocket() != nil
				x := cand{l, c, &m}
				if isTLS == wantTLS {
					exact = append(exact, x)
				} else {
					fallback = append(fallback, x)
				}
			}
		}
	}
	// Inbound listeners first: they carry the workload's policies.
	byInbound := func(a, b cand) int {
		ai, bi := a.l.GetTrafficDirection().String() == "INBOUND", b.l.GetTrafficDirection().String() == "INBOUND"
		switch {
		case ai && !bi:
			return -1
		case bi && !ai:
			return 1
		}
		return 0
	}
	slices.SortStableFunc(exact, byInbound)
	slices.SortStableFunc(fallback, byInbound)
	switch {
	case len(exact) > 0:
		return exact[0].l, exact[0].c, exact[0].m, nil
	case len(fallback) > 0 && !wantTLS:
		return nil, nil, nil, fmt.Errorf("port %d accepts only mutual TLS (PeerAuthentication STRICT): a plaintext caller is refused before any policy; pass --principal", f.port)
	case len(fallback) > 0:
		return fallback[0].l, fallback[0].c, fallback[0].m, nil
	}
	return nil, nil, nil, fmt.Errorf("the proxy has no HTTP listener for port %d", f.port)
}

// explainReq is the described request, as the RBAC and JWT filters see one.
type explainReq struct {
	method, path, host, sni string
	header                  http.Header
	src, dst                netip.Addr
	port                    uint16
	peer                    *authz.Peer
	metadata                map[string]*structpb.Struct
}

func newExplainReq(f *explainFlags, l *listenerv3.Listener) (*explainReq, error) {
	r := &explainReq{method: f.method, path: f.path, host: f.host, sni: f.sni, header: http.Header{},
		port: uint16(f.port), metadata: map[string]*structpb.Struct{}}
	if !strings.HasPrefix(r.path, "/") {
		return nil, fmt.Errorf("--path %q must start with /", f.path)
	}
	var err error
	if r.src, err = netip.ParseAddr(f.sourceIP); err != nil {
		return nil, fmt.Errorf("--source-ip: %w", err)
	}
	dst := f.destIP
	if dst == "" {
		dst = addressHost(l.GetAddress())
	}
	if a, err := netip.ParseAddr(dst); err == nil {
		r.dst = a
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: want 'name: value'", h)
		}
		r.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if f.jwt != "" {
		r.header.Set("Authorization", "Bearer "+f.jwt)
	}
	if f.principal != "" && !f.plaintext {
		id := f.principal
		if !strings.HasPrefix(id, "spiffe://") {
			id = "spiffe://" + id
		}
		r.peer = &authz.Peer{URISANs: []string{id}}
	}
	return r, nil
}

func (r *explainReq) DestinationIP() netip.Addr   { return r.dst }
func (r *explainReq) DestinationPort() uint16     { return r.port }
func (r *explainReq) DirectRemoteIP() netip.Addr  { return r.src }
func (r *explainReq) RemoteIP() netip.Addr        { return r.src }
func (r *explainReq) RequestedServerName() string { return r.sni }
func (r *explainReq) Peer() *authz.Peer           { return r.peer }
func (r *explainReq) Metadata(ns string) *structpb.Struct {
	return r.metadata[ns]
}
func (r *explainReq) FilterState(string) (string, bool) { return "", false }
func (r *explainReq) Method() string                    { return r.method }
func (r *explainReq) Path() string                      { return r.path }
func (r *explainReq) SetPath(p string)                  { r.path = p }
func (r *explainReq) Host() string                      { return r.host }
func (r *explainReq) Scheme() string                    { return "http" }

// Header serves both filters: RBAC asks in lower case, JWT in canonical form.
func (r *explainReq) Header(name string) []string {
	return r.header[textproto.CanonicalMIMEHeaderKey(name)]
}
func (r *explainReq) DelHeader(name string)        { r.header.Del(name) }
func (r *explainReq) AddHeader(name, value string) { r.header.Add(name, value) }

// mergeMetadata merges v's fields into the namespace ns, as the proxy's stream does.
func mergeMetadata(md map[string]*structpb.Struct, ns string, v *structpb.Struct) {
	cur := md[ns]
	if cur == nil {
		md[ns] = v
		return
	}
	for k, f := range v.GetFields() {
		cur.Fields[k] = f
	}
}

// extAuthzTarget names the authorizer of an ext_authz filter: its cluster.
func extAuthzTarget(c *extauthzv3.ExtAuthz) string {
	if g := c.GetGrpcService().GetEnvoyGrpc(); g != nil {
		return "gRPC " + g.GetClusterName()
	}
	if u := c.GetHttpService().GetServerUri(); u != nil {
		return "HTTP " + u.GetCluster()
	}
	return "unknown service"
}
