package ca

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Authenticator (c), the Kubernetes service-account token. This package must not link
// client-go: KubernetesTokens takes the TokenReview API as a TokenReviewer, which
// controlplane/ca/kubeauth implements over client-go.
//
// Contract:
//
//   - Credential: gRPC metadata "authorization: Bearer <JWT>", the projected service-account
//     token with audience "istio-ca" that Istio's agent sends (pilot-agent's istio-token). A
//     bearer value starting with BootstrapTokenPrefix is not its business (ErrNoCredential);
//     BootstrapTokens likewise leaves JWTs alone, so both run in one list in either order.
//   - Proof: a TokenReview through TokenReviewer (the kube API server checks signature, expiry,
//     audience and that the pod still exists); the proven identity is the reviewed
//     system:serviceaccount:<namespace>:<name> in the Authority's trust domain, never a claim
//     read from the unverified JWT.
//   - Result: Caller{Method: MethodKubernetesToken, Credential: the pod name if bound, never
//     the token}.
//   - Placement: after CertificateAuthenticator and BootstrapTokens in the Service's list.

// TokenReviewer is the Kubernetes TokenReview API, implemented over client-go in
// controlplane/ca/kubeauth. Review returns who a valid token for one of audiences belongs to, or
// an error if the API server refuses it or cannot be asked. Its errors must not contain the token.
// It must be safe for concurrent use.
type TokenReviewer interface {
	Review(ctx context.Context, token string, audiences []string) (ReviewedToken, error)
}

// ReviewedToken is what the API server's TokenReview proved about a service-account token.
type ReviewedToken struct {
	// Namespace and ServiceAccount name the token's service account
	// (system:serviceaccount:<Namespace>:<ServiceAccount>).
	Namespace, ServiceAccount string
	// Pod is the name of the pod the token is bound to ("" for a token bound to no pod).
	Pod string
}

// Defaults for KubernetesOptions.
const (
	// DefaultKubernetesAudience is the audience of the token Istio's injected sidecars send.
	DefaultKubernetesAudience = "istio-ca"
	// DefaultReviewTimeout bounds one TokenReview.
	DefaultReviewTimeout = 5 * time.Second
	// DefaultMaxConcurrentReviews bounds the TokenReviews in flight.
	DefaultMaxConcurrentReviews = 32
)

// ErrKubernetesToken is wrapped by the errors of refused Kubernetes tokens.
var ErrKubernetesToken = errors.New("kubernetes token refused")

// KubernetesOptions configure KubernetesTokens.
type KubernetesOptions struct {
	// Reviewer checks tokens with the API server (required).
	Reviewer TokenReviewer
	// TrustDomain is the trust domain of proven identities (default "cluster.local"); use the
	// Authority's.
	TrustDomain string
	// Audiences the token must be for, one of them (default ["istio-ca"]).
	Audiences []string
	// Timeout bounds one review (default 5 s); MaxConcurrent bounds the reviews in flight
	// (default 32): beyond it a request is refused at once rather than queued on the API server.
	Timeout       time.Duration
	MaxConcurrent int
	// AllowInsecureTransport accepts tokens on connections without TLS (tests only).
	AllowInsecureTransport bool
}

// KubernetesTokens is authenticator (c): a Kubernetes service-account JWT in
// "authorization: Bearer", proved by a TokenReview. Safe for concurrent use.
type KubernetesTokens struct {
	o   KubernetesOptions
	sem chan struct{}
}

var _ Authenticator = (*KubernetesTokens)(nil)

// NewKubernetesTokens returns the Kubernetes token authenticator.
func NewKubernetesTokens(o KubernetesOptions) (*KubernetesTokens, error) {
	if o.Reviewer == nil {
		return nil, errors.New("checking kubernetes token options: no TokenReviewer")
	}
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if err := validateTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("checking kubernetes token options: %w", err)
	}
	if len(o.Audiences) == 0 {
		o.Audiences = []string{DefaultKubernetesAudience}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultReviewTimeout
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrentReviews
	}
	return &KubernetesTokens{o: o, sem: make(chan struct{}, o.MaxConcurrent)}, nil
}

// Authenticate proves the caller by the service-account token in its "authorization: Bearer"
// gRPC metadata. No bearer value, or a bootstrap token, is ErrNoCredential. A value that is not
// shaped as a JWT (three base64url segments) is refused without asking the API server.
func (k *KubernetesTokens) Authenticate(ctx context.Context) (*Caller, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKubernetesToken, err)
	}
	if token == "" || strings.HasPrefix(token, BootstrapTokenPrefix) {
		return nil, fmt.Errorf("kubernetes token: %w", ErrNoCredential)
	}
	tid := kubeTokenID(token)
	if !jwtShaped(token) {
		return nil, fmt.Errorf("%w: token %s is not a JWT", ErrKubernetesToken, tid)
	}
	if !k.o.AllowInsecureTransport && !overTLS(ctx) {
		return nil, fmt.Errorf("%w: token %s sent over a connection without TLS", ErrKubernetesToken, tid)
	}
	select {
	case k.sem <- struct{}{}:
		defer func() { <-k.sem }()
	default:
		return nil, fmt.Errorf("%w: token %s: %d token reviews in flight, the limit", ErrKubernetesToken, tid, k.o.MaxConcurrent)
	}
	rctx, cancel := context.WithTimeout(ctx, k.o.Timeout)
	defer cancel()
	r, err := k.o.Reviewer.Review(rctx, token, k.o.Audiences)
	if err != nil {
		return nil, fmt.Errorf("%w: token %s: %w", ErrKubernetesToken, tid, err)
	}
	id := Identity{TrustDomain: k.o.TrustDomain, Namespace: r.Namespace, ServiceAccount: r.ServiceAccount}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("%w: token %s: the reviewed service account: %w", ErrKubernetesToken, tid, err)
	}
	cred := "token " + tid
	if r.Pod != "" {
		cred = "pod " + r.Namespace + "/" + r.Pod
	}
	return &Caller{Identity: id, Method: MethodKubernetesToken, Credential: cred}, nil
}

// kubeTokenID names a token in logs without revealing it: the first 6 bytes of its SHA-256, in
// hex.
func kubeTokenID(token string) string { return tokenID(sha256.Sum256([]byte(token))) }

// jwtShaped reports whether token has a JWS compact serialization's shape: three non-empty
// base64url segments separated by dots.
func jwtShaped(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for _, c := range p {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
