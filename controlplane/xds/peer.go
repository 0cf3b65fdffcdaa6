package xds

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// peerIdentity is what a stream's transport proved about the proxy at its other end.
type peerIdentity struct {
	// spiffe is the SPIFFE ID of the verified client certificate; empty on a plaintext stream.
	spiffe        string
	namespace, sa string
	authenticated bool
}

// streamPeer reads the peer identity of a new stream from its context. A stream over TLS (the mesh
// port) must present a client certificate verified against the mesh roots (the listener's TLS
// configuration verifies it) carrying exactly one URI SAN, a SPIFFE ID of the mesh's trust domain
// for a namespace and service account; it is refused otherwise. A stream without TLS (the
// development plaintext port) is unauthenticated.
func (s *Server) streamPeer(ctx context.Context) (peerIdentity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return peerIdentity{}, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return peerIdentity{}, nil
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return peerIdentity{}, status.Error(codes.Unauthenticated,
			"xDS on the mesh port needs a mesh client certificate (the workload certificate of the proxy's identity agent)")
	}
	leaf := chains[0][0]
	if len(leaf.URIs) != 1 {
		return peerIdentity{}, status.Errorf(codes.Unauthenticated, "client certificate has %d URI SANs, want exactly one SPIFFE ID", len(leaf.URIs))
	}
	id := leaf.URIs[0].String()
	td, ns, sa, err := parseSPIFFE(id)
	if err != nil {
		return peerIdentity{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	if want := s.opts.TrustDomain; want != "" && td != want {
		return peerIdentity{}, status.Errorf(codes.PermissionDenied, "client certificate identity %s is not of trust domain %s", id, want)
	}
	return peerIdentity{spiffe: id, namespace: ns, sa: sa, authenticated: true}, nil
}

// parseSPIFFE splits spiffe://TD/ns/NS/sa/SA.
func parseSPIFFE(id string) (td, ns, sa string, err error) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 5 || parts[0] == "" || parts[1] != "ns" || parts[2] == "" || parts[3] != "sa" || parts[4] == "" {
		return "", "", "", fmt.Errorf("identity %q is not spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT", id)
	}
	return parts[0], parts[2], parts[4], nil
}

// bind checks a proxy's claims against the identity its stream proved and records the identity
// in it: an authenticated proxy gets configuration only for its own namespace and service
// account. An unauthenticated proxy's claims stand as they are (the plaintext port is for
// development only), but it is never an authenticated identity.
func bind(p *translate.Proxy, id peerIdentity) error {
	if !id.authenticated {
		return nil
	}
	if p.Namespace != id.namespace {
		return status.Errorf(codes.PermissionDenied, "node %q claims namespace %q, but its certificate proves %s",
			p.ID.String(), p.Namespace, id.spiffe)
	}
	switch p.ServiceAccount {
	case id.sa:
	case "":
		p.ServiceAccount = id.sa
	default:
		return status.Errorf(codes.PermissionDenied, "node %q claims service account %q, but its certificate proves %s",
			p.ID.String(), p.ServiceAccount, id.spiffe)
	}
	p.Identity = id.spiffe
	return nil
}

// AuthenticatedProxies returns the connected proxies whose streams proved an identity on the
// mesh port (their Identity is set and their namespace and service account are the client
// certificate's; see bind), sorted by node ID. Proxies on the plaintext port are not listed:
// nothing proves their claims. The proxies are shared and must not be modified. It must not be
// called from OnConnect or OnDisconnect (they run with the connection lock held).
func (s *Server) AuthenticatedProxies() []*translate.Proxy {
	s.connMu.Lock()
	out := make([]*translate.Proxy, 0, len(s.proxies))
	for _, p := range s.proxies {
		if p.proxy.Identity != "" {
			out = append(out, p.proxy)
		}
	}
	s.connMu.Unlock()
	slices.SortFunc(out, func(a, b *translate.Proxy) int { return strings.Compare(a.Node.GetId(), b.Node.GetId()) })
	return out
}
