package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/strait-mesh/strait/internal/grpclite"
)

// ErrRefused is wrapped by the error of a CSR call that the CA answered with a refusal
// (Unauthenticated, PermissionDenied, InvalidArgument, FailedPrecondition): retrying the same
// credential will not help. The wrapped gRPC status is kept: grpclite.CodeOf(err) reads it.
var ErrRefused = errors.New("the CA refused the certificate request")

// ErrNoCredential is returned when the agent has neither a valid certificate nor a bootstrap
// token to prove its identity with.
var ErrNoCredential = errors.New("no credential for the CA: no valid certificate and no bootstrap token")

// maxTokenSize bounds a bootstrap token file (straitd's tokens are ~50 bytes; the CA reads at most
// 8 KiB of authorization metadata).
const maxTokenSize = 8 << 10

// maxResponseSize bounds a CSR response message.
const maxResponseSize = 4 << 20

// caClient makes CSR calls to straitd's CA. Every call uses a new connection: the CA
// authenticates a renewal by the client certificate of the connection's handshake, so a
// connection opened with the bootstrap token (no certificate) or with an older certificate must
// not be reused. One call every few hours makes the handshake cost irrelevant.
type caClient struct {
	target     string
	serverName string
	token      string // bootstrap token, or
	tokenFile  string // a file holding it, read at each use
}

// credential is how one call proves the workload: a certificate or a bootstrap token.
type credential struct {
	cert  *tls.Certificate // presented as the TLS client certificate
	token string           // sent as "authorization: Bearer <token>"
}

func (c credential) method() string {
	if c.cert != nil {
		return "certificate"
	}
	return "bootstrap-token"
}

// bootstrapToken returns the configured token ("" if none). A token file is read at every use,
// so an operator can put a new token in place for a workload whose certificate expired.
func (c *caClient) bootstrapToken() (string, error) {
	if c.tokenFile == "" {
		return c.token, nil
	}
	st, err := os.Stat(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("reading the bootstrap token: %w", err)
	}
	if st.Size() > maxTokenSize {
		return "", fmt.Errorf("reading the bootstrap token: %s is larger than %d bytes", c.tokenFile, maxTokenSize)
	}
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("reading the bootstrap token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// createCertificate sends one CSR and returns the response's cert_chain. roots authenticate the
// CA's serving certificate (for serverName). Refusals wrap ErrRefused.
func (c *caClient) createCertificate(ctx context.Context, csrPEM []byte, validitySeconds int64, roots *x509.CertPool, cred credential) ([]string, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: c.serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cred.cert == nil {
				return &tls.Certificate{}, nil // no certificate: the token proves the caller
			}
			return cred.cert, nil
		},
	}
	conn, err := grpclite.Dial(c.target, grpclite.Options{TLS: cfg, MaxReceive: maxResponseSize})
	if err != nil {
		return nil, fmt.Errorf("connecting to the CA at %s: %w", c.target, err)
	}
	defer conn.Close()
	var md grpclite.Metadata
	if cred.token != "" {
		md = grpclite.Metadata{"authorization": {"Bearer " + cred.token}}
	}
	resp, err := conn.InvokeRaw(ctx, createCertificateMethod, md, encodeCSRRequest(csrPEM, validitySeconds))
	if err != nil {
		switch grpclite.CodeOf(err) {
		case grpclite.Unauthenticated, grpclite.PermissionDenied, grpclite.InvalidArgument, grpclite.FailedPrecondition:
			return nil, fmt.Errorf("%w (authenticated by %s): %w", ErrRefused, cred.method(), err)
		}
		return nil, fmt.Errorf("calling the CA at %s: %w", c.target, err)
	}
	chain, err := decodeCSRResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("the CA at %s: %w", c.target, err)
	}
	return chain, nil
}

// checkToken refuses a token that cannot be sent as one metadata value.
func checkToken(tok string) error {
	if len(tok) > maxTokenSize || bytes.ContainsAny([]byte(tok), "\x00\r\n") {
		return errors.New("bootstrap token: too long or holds control characters")
	}
	return nil
}
