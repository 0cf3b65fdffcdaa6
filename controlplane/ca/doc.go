// Package ca is straitd's certificate authority: it holds the mesh's signing key and trust
// bundle, signs workload certificates for SPIFFE identities, and serves Istio's CSR API
// (istio.v1.auth.IstioCertificateService/CreateCertificate) to callers that an Authenticator has
// proved.
//
// The package is self-contained: it owns no listener and reads no flags. straitd builds an
// Authority with New, the authenticators (NewCertificateAuthenticator, NewBootstrapTokens), a
// Service with NewService, and registers the Service on the gRPC server of its TLS port (15012),
// whose tls.Config comes from ServerTLSConfig.
//
// Files by concern:
//
//	identity.go     Identity and the SPIFFE ID format (strict parsing, name rules)
//	pem.go          defensive PEM, CSR and key parsing with size limits
//	keys.go         which keys are accepted (workload and CA), key generation
//	files.go        atomic, owner-only file writes and bounded reads
//	authority.go    Authority: the signing state, trust bundle, options
//	selfsigned.go   the self-signed root: creation, persistence, root rotation
//	plugin.go       plug-in certificates in Istio's cacerts layout (intermediate CA)
//	sign.go         workload certificate signing
//	serving.go      straitd's own serving certificate and server tls.Config
//	authn.go        the Authenticator interface and Caller
//	certificate.go  authenticator (a): the caller's current mesh certificate
//	bootstrap.go    authenticator (b): bootstrap tokens minted by straitd
//	kubernetes.go   authenticator (c): the seam for Kubernetes service-account tokens
//	service.go      the gRPC CSR service
//
// The CA signs only what an Authenticator proved: the identity in a workload certificate comes
// from the authenticated caller, never from the CSR, and a request that names another identity is
// refused.
package ca
