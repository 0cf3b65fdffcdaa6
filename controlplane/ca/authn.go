package ca

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// maxAuthorizationLen bounds the authorization metadata value read (a Kubernetes JWT is ~1 KiB).
const maxAuthorizationLen = 8 << 10

// Authenticator proves who is calling a gRPC method of straitd's mesh port. Each implementation
// reads one kind of credential from the request context (the TLS peer, gRPC metadata).
//
// Authenticate returns the proven caller, or an error wrapping ErrNoCredential when the request
// carries no credential of its kind (so the next Authenticator is tried), or another error when
// it carries one that does not prove anything (expired, forged, of another trust domain, ...).
// It must be safe for concurrent use and must not log secrets. One implementation per file:
// certificate.go, bootstrap.go, kubernetes.go.
type Authenticator interface {
	Authenticate(ctx context.Context) (*Caller, error)
}

// Caller is an authenticated caller: the identity its credential proved and how.
type Caller struct {
	Identity Identity
	// Method names the Authenticator that proved it: MethodCertificate, MethodBootstrapToken or
	// MethodKubernetesToken.
	Method string
	// Credential describes the credential for logs without revealing it: a certificate's serial
	// number, a token's non-secret ID.
	Credential string
}

// Authentication methods, as reported in Caller.Method.
const (
	MethodCertificate     = "certificate"
	MethodBootstrapToken  = "bootstrap-token"
	MethodKubernetesToken = "kubernetes-token"
)

// ErrNoCredential is wrapped by an Authenticator's error when the request carries no credential
// it handles.
var ErrNoCredential = errors.New("no credential")

// AuthenticationError is returned by Authenticate (the function) when no Authenticator proved the
// caller. It keeps every Authenticator's reason for the log; the caller gets only a generic
// message.
type AuthenticationError struct {
	// Reasons has one entry per Authenticator that saw a credential and refused it.
	Reasons []error
}

func (e *AuthenticationError) Error() string {
	if len(e.Reasons) == 0 {
		return "authenticating the caller: no credential (a mesh client certificate or an authorization bearer token)"
	}
	msgs := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		msgs[i] = r.Error()
	}
	return "authenticating the caller: " + strings.Join(msgs, "; ")
}

// Unwrap returns the reasons, so errors.Is finds a specific refusal.
func (e *AuthenticationError) Unwrap() []error { return e.Reasons }

// Authenticate tries each Authenticator in order and returns the first caller proved. As in
// Istio, a refused credential does not stop the next Authenticator from proving the caller by
// another one. If none proves the caller it returns an *AuthenticationError.
func Authenticate(ctx context.Context, authenticators []Authenticator) (*Caller, error) {
	ae := &AuthenticationError{}
	for _, a := range authenticators {
		c, err := a.Authenticate(ctx)
		switch {
		case err == nil && c != nil:
			return c, nil
		case err == nil:
			ae.Reasons = append(ae.Reasons, fmt.Errorf("%T returned no caller and no error", a))
		case !errors.Is(err, ErrNoCredential):
			ae.Reasons = append(ae.Reasons, err)
		}
	}
	return nil, ae
}

// bearerToken returns the token of the request's "authorization: Bearer <token>" gRPC metadata,
// or "" when the request has no authorization value or one of another scheme. Several
// authorization values (ambiguous) and a value longer than maxAuthorizationLen are errors.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", fmt.Errorf("%d authorization values", len(vals))
	case len(vals[0]) > maxAuthorizationLen:
		return "", fmt.Errorf("authorization value longer than %d bytes", maxAuthorizationLen)
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", nil
	}
	return token, nil
}

// overTLS reports whether the request came over a TLS connection: a bearer token sent in
// cleartext is a stolen identity.
func overTLS(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	_, ok = p.AuthInfo.(credentials.TLSInfo)
	return ok
}
