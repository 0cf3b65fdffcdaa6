package ca

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain used when none is configured (Istio's default, and
// MeshConfig's default trustDomain).
const DefaultTrustDomain = "cluster.local"

// Limits on the parts of a SPIFFE ID. The trust domain limit is SPIFFE's; namespaces are
// Kubernetes DNS-1123 labels and service accounts DNS-1123 subdomains.
const (
	maxTrustDomainLen    = 255
	maxNamespaceLen      = 63
	maxServiceAccountLen = 253
	maxSPIFFEIDLen       = 2048 // SPIFFE's limit on a whole ID
)

// Identity is a workload identity: spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>.
// The zero value is not a valid identity; use Validate or ParseSPIFFEID.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// SPIFFEID returns the identity's SPIFFE ID. It is exact only for an identity that passes
// Validate.
func (id Identity) SPIFFEID() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// String returns the SPIFFE ID.
func (id Identity) String() string { return id.SPIFFEID() }

// URL returns the SPIFFE ID as a URL, the form x509 templates take.
func (id Identity) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate reports whether every part of the identity follows its naming rule: the trust domain
// SPIFFE's (lowercase letters, digits, '.', '-', '_'), the namespace a DNS-1123 label and the
// service account a DNS-1123 subdomain.
func (id Identity) Validate() error {
	if err := validateTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := validateNamespace(id.Namespace); err != nil {
		return err
	}
	return validateServiceAccount(id.ServiceAccount)
}

// ErrInvalidSPIFFEID is wrapped by every error of ParseSPIFFEID.
var ErrInvalidSPIFFEID = errors.New("invalid SPIFFE ID")

// ParseSPIFFEID parses a workload SPIFFE ID of the exact form
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. It is deliberately strict: no
// percent-encoding, port, user info, query, fragment, upper case, empty or extra path segments,
// and no byte outside each part's character set (so no NUL, CR, LF or whitespace). The same
// identity has exactly one accepted spelling, so two IDs compare equal as strings if and only if
// they name the same identity.
func ParseSPIFFEID(s string) (Identity, error) {
	fail := func(why string) (Identity, error) {
		return Identity{}, fmt.Errorf("%w %q: %s", ErrInvalidSPIFFEID, truncate(s, 128), why)
	}
	if len(s) > maxSPIFFEIDLen {
		return fail("too long")
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return fail(`scheme must be "spiffe://"`)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return fail("no path")
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return fail(`path must be "/ns/<namespace>/sa/<service-account>"`)
	}
	id := Identity{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return fail(err.Error())
	}
	return id, nil
}

func validateTrustDomain(td string) error {
	if td == "" {
		return errors.New("empty trust domain")
	}
	if len(td) > maxTrustDomainLen {
		return fmt.Errorf("trust domain longer than %d bytes", maxTrustDomainLen)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(isLowerAlnum(c) || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: byte %q not allowed (lowercase letters, digits, '.', '-', '_')", truncate(td, 64), c)
		}
	}
	return nil
}

func validateNamespace(ns string) error {
	if err := dnsLabel(ns, maxNamespaceLen); err != nil {
		return fmt.Errorf("namespace %q: %w", truncate(ns, 64), err)
	}
	return nil
}

func validateServiceAccount(sa string) error {
	if sa == "" || len(sa) > maxServiceAccountLen {
		return fmt.Errorf("service account %q: must be 1 to %d bytes", truncate(sa, 64), maxServiceAccountLen)
	}
	for _, label := range strings.Split(sa, ".") {
		if err := dnsLabel(label, 63); err != nil {
			return fmt.Errorf("service account %q: %w", truncate(sa, 64), err)
		}
	}
	return nil
}

// dnsLabel checks a DNS-1123 label: 1..max bytes of [a-z0-9-], starting and ending alphanumeric.
func dnsLabel(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("must be 1 to %d bytes", max)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return fmt.Errorf("byte %q not allowed (lowercase letters, digits, '-')", c)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return errors.New("must start and end with a letter or digit")
	}
	return nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// truncate shortens s for error messages, so hostile input cannot blow up logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
