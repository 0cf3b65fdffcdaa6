package ca

import "context"

// Authenticator (c), the Kubernetes service-account token, is not implemented here: it belongs
// to the Kubernetes issue, and this package must not link client-go. This file fixes its seam.
//
// Contract for the implementation (a type in this file, say KubernetesTokens, implementing
// Authenticator):
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

// TokenReviewer is the dependency KubernetesTokens will take: the Kubernetes TokenReview API,
// implemented over client-go in controlplane/registry/kube or a sibling package (not here).
// Review returns the namespace and service account of a valid token for one of audiences, or an
// error if the API server refuses it. It must be safe for concurrent use.
type TokenReviewer interface {
	Review(ctx context.Context, token string, audiences []string) (namespace, serviceAccount string, err error)
}
