// Package agent is strait-proxy's in-process agent for workload identity: what Istio's
// pilot-agent does for Envoy, without a second process. It
//
//   - generates an ECDSA P-256 private key in memory (a new one for every certificate; no key is
//     ever written to disk) and a CSR whose only URI SAN is the workload's SPIFFE ID;
//   - obtains a certificate from straitd's CA over Istio's CSR API
//     (istio.v1.auth.IstioCertificateService/CreateCertificate on port 15012, TLS): the first call
//     proves the workload with a bootstrap token ("authorization: Bearer <token>"), later calls by
//     presenting the current certificate as the TLS client certificate;
//   - renews at half of the certificate's lifetime (with jitter), retries with capped exponential
//     backoff while the CA is unreachable, keeps serving the current certificate meanwhile, and
//     warns in the log when the certificate nears its expiry or has expired;
//   - serves the certificate and the trust bundle as Istio's SDS secrets "default" and "ROOTCA",
//     both as crypto/tls values (for tls.Config callbacks, read lock-free per handshake, so a new
//     certificate applies to the next handshake without a config swap) and as Envoy Secrets (for
//     tlsx's SDS lookups).
//
// The trust bundle starts as the one the agent is given (a PEM file or bytes, the same roots that
// authenticate straitd's serving certificate) and is then replaced by the roots of every CA
// response, so a root rotation (new root added, old root removed) reaches the proxy with its next
// renewal; UpdateRoots accepts a ROOTCA pushed by other means (xDS).
//
// The package talks to the control plane only over gRPC: it must not import controlplane/...
// (strait-proxy must not link it); its tests run the real CA.
//
// Files by concern:
//
//	agent.go     Agent, Options, the run loop
//	identity.go  the SPIFFE ID, key and CSR
//	client.go    the CSR API client: connection, credentials, one call
//	response.go  checking a CA response: leaf, chain, roots
//	bundle.go    PEM trust bundles: parsing, the ROOTCA state, UpdateRoots
//	schedule.go  renewal time, backoff, expiry warnings
//	secrets.go   the SDS view: secret names, tls callbacks, Envoy Secrets, Subscribe
package agent
