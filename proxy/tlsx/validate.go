package tlsx

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// validation is a compiled CertificateValidationContext: the trust anchors and SAN matchers a peer
// certificate must satisfy.
type validation struct {
	roots *x509.CertPool   // nil: no chain verification (Envoy accepts any peer cert then)
	typed []sanMatcher     // match_typed_subject_alt_names: any one must match
	any   []matcher.String // match_subject_alt_names (deprecated): matches DNS, URI, email or IP SANs
}

type sanKind int

const (
	sanDNS sanKind = iota
	sanURI
	sanEmail
	sanIP
)

type sanMatcher struct {
	kind sanKind
	m    matcher.String
}

// sanMatchOptions are the SAN matchers' choices: regular expressions have no size limit and
// google_re2 is ignored; ignore_case with safe_regex is refused; ignore_case lower-cases with
// strings.ToLower (Unicode) rather than Envoy's ASCII-only folding. SANs are ASCII (Go's x509
// parser refuses others), so only a pattern with non-ASCII letters can tell the difference.
var sanMatchOptions = matcher.Options{FoldUnicode: true}

func compileStringMatch(sm *matcherv3.StringMatcher, path string) (matcher.String, error) {
	return matcher.CompileString(path, sm, sanMatchOptions)
}

// matchDNS matches a DNS SAN. As Envoy does, an exact matcher also matches a wildcard SAN
// ("*.example.com" matches exact "a.example.com", one label only).
func matchDNS(m *matcher.String, san string) bool {
	if m.Match(san) {
		return true
	}
	want, exact := m.Exact()
	if !exact || !strings.HasPrefix(san, "*.") {
		return false
	}
	i := strings.IndexByte(want, '.')
	return i > 0 && strings.EqualFold(want[i:], san[1:])
}

func compileValidation(vc *tlsv3.CertificateValidationContext, path string) (*validation, error) {
	if err := xdsfield.Check(vc, path, "trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names", "trust_chain_verification"); err != nil {
		return nil, err
	}
	v := &validation{}
	if vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_VERIFY_TRUST_CHAIN {
		return nil, fmt.Errorf("%s.trust_chain_verification: only VERIFY_TRUST_CHAIN is supported", path)
	}
	if vc.GetTrustedCa() != nil {
		b, err := readDataSource(vc.GetTrustedCa(), path+".trusted_ca")
		if err != nil {
			return nil, err
		}
		if v.roots, err = parseCAs(b, path+".trusted_ca"); err != nil {
			return nil, err
		}
	}
	for i, sm := range vc.GetMatchTypedSubjectAltNames() {
		p := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", path, i)
		if err := xdsfield.Check(sm, p, "san_type", "matcher"); err != nil {
			return nil, err
		}
		var k sanKind
		switch sm.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS:
			k = sanDNS
		case tlsv3.SubjectAltNameMatcher_URI:
			k = sanURI
		case tlsv3.SubjectAltNameMatcher_EMAIL:
			k = sanEmail
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			k = sanIP
		default:
			return nil, fmt.Errorf("%s.san_type %s is not supported", p, sm.GetSanType())
		}
		m, err := compileStringMatch(sm.GetMatcher(), p+".matcher")
		if err != nil {
			return nil, err
		}
		v.typed = append(v.typed, sanMatcher{kind: k, m: m})
	}
	for i, sm := range vc.GetMatchSubjectAltNames() {
		m, err := compileStringMatch(sm, fmt.Sprintf("%s.match_subject_alt_names[%d]", path, i))
		if err != nil {
			return nil, err
		}
		v.any = append(v.any, m)
	}
	return v, nil
}

// errNoTrustedCA is Envoy's rule: SAN matching without a trust anchor proves nothing.
var errNoTrustedCA = errors.New("subject alt name matching requires trusted_ca")

func (v *validation) check() error {
	if v.roots == nil && (len(v.typed) > 0 || len(v.any) > 0) {
		return errNoTrustedCA
	}
	return nil
}

// verify checks a peer chain (leaf first) against the trust anchors and SAN matchers.
func (v *validation) verify(certs []*x509.Certificate) error {
	if v.roots == nil {
		return nil
	}
	if len(certs) == 0 {
		return errors.New("peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("verifying peer certificate chain: %w", err)
	}
	if err := checkSVID(leaf); err != nil {
		return err
	}
	if len(v.typed) == 0 && len(v.any) == 0 {
		return nil
	}
	if v.matchSANs(leaf) {
		return nil
	}
	return fmt.Errorf("peer certificate SANs %s match none of the configured matchers", describeSANs(leaf))
}

func (v *validation) matchSANs(c *x509.Certificate) bool {
	for i := range v.typed {
		sm := &v.typed[i]
		switch sm.kind {
		case sanDNS:
			for _, s := range c.DNSNames {
				if matchDNS(&sm.m, s) {
					return true
				}
			}
		case sanURI:
			for _, u := range c.URIs {
				if sm.m.Match(u.String()) {
					return true
				}
			}
		case sanEmail:
			for _, s := range c.EmailAddresses {
				if sm.m.Match(s) {
					return true
				}
			}
		case sanIP:
			for _, ip := range c.IPAddresses {
				if sm.m.Match(ip.String()) {
					return true
				}
			}
		}
	}
	for i := range v.any {
		m := &v.any[i]
		for _, s := range c.DNSNames {
			if matchDNS(m, s) {
				return true
			}
		}
		for _, u := range c.URIs {
			if m.Match(u.String()) {
				return true
			}
		}
		for _, s := range c.EmailAddresses {
			if m.Match(s) {
				return true
			}
		}
		for _, ip := range c.IPAddresses {
			if m.Match(ip.String()) {
				return true
			}
		}
	}
	return false
}

func describeSANs(c *x509.Certificate) string {
	var s []string
	for _, u := range c.URIs {
		s = append(s, "URI:"+u.String())
	}
	for _, d := range c.DNSNames {
		s = append(s, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		s = append(s, "IP:"+net.IP(ip).String())
	}
	if len(s) == 0 {
		return "[]"
	}
	return "[" + strings.Join(s, " ") + "]"
}

// validator yields the validation to apply at handshake time: fixed, or built from an SDS secret
// merged with combined_validation_context.default_validation_context.
type validator struct {
	static   *validation
	name     string
	defaults *tlsv3.CertificateValidationContext
	secrets  Secrets
	cache    atomic.Pointer[validationCache]
}

type validationCache struct {
	secret *tlsv3.Secret
	v      *validation
	err    error
}

func (vr *validator) get() (*validation, error) {
	if vr.static != nil {
		return vr.static, nil
	}
	sec := vr.secrets.Secret(vr.name)
	if sec == nil {
		return nil, fmt.Errorf("looking up validation secret %q: %w", vr.name, errNoSecret)
	}
	if c := vr.cache.Load(); c != nil && c.secret == sec {
		return c.v, c.err
	}
	c := &validationCache{secret: sec}
	if vc := sec.GetValidationContext(); vc == nil {
		c.err = fmt.Errorf("secret %q is not a validation_context", vr.name)
	} else {
		// As Envoy does, the default context is merged into the dynamic one: singular fields set in
		// the default win, repeated fields (SAN matchers) are appended.
		merged := proto.Clone(vc).(*tlsv3.CertificateValidationContext)
		if vr.defaults != nil {
			proto.Merge(merged, vr.defaults)
		}
		c.v, c.err = compileValidation(merged, "secret "+vr.name+".validation_context")
		if c.err == nil {
			c.err = c.v.check()
		}
	}
	vr.cache.Store(c)
	return c.v, c.err
}

// compileValidator compiles validation_context, validation_context_sds_secret_config or
// combined_validation_context. It returns nil when the context has none (no peer validation).
func compileValidator(ctx *tlsv3.CommonTlsContext, s Secrets) (*validator, error) {
	switch vt := ctx.GetValidationContextType().(type) {
	case nil:
		return nil, nil
	case *tlsv3.CommonTlsContext_ValidationContext:
		v, err := compileValidation(vt.ValidationContext, "common_tls_context.validation_context")
		if err != nil {
			return nil, err
		}
		if err := v.check(); err != nil {
			return nil, fmt.Errorf("common_tls_context.validation_context: %w", err)
		}
		return &validator{static: v}, nil
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		p := "common_tls_context.validation_context_sds_secret_config"
		if err := checkSDS(vt.ValidationContextSdsSecretConfig, p, s); err != nil {
			return nil, err
		}
		return &validator{name: vt.ValidationContextSdsSecretConfig.GetName(), secrets: s}, nil
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		p := "common_tls_context.combined_validation_context"
		cv := vt.CombinedValidationContext
		if err := xdsfield.Check(cv, p, "default_validation_context", "validation_context_sds_secret_config"); err != nil {
			return nil, err
		}
		if cv.GetValidationContextSdsSecretConfig() == nil {
			return nil, fmt.Errorf("%s.validation_context_sds_secret_config is required", p)
		}
		if err := checkSDS(cv.GetValidationContextSdsSecretConfig(), p+".validation_context_sds_secret_config", s); err != nil {
			return nil, err
		}
		if d := cv.GetDefaultValidationContext(); d != nil {
			// Compile once now so that a bad matcher is rejected with the config, not per handshake.
			if _, err := compileValidation(d, p+".default_validation_context"); err != nil {
				return nil, err
			}
		}
		return &validator{name: cv.GetValidationContextSdsSecretConfig().GetName(), defaults: cv.GetDefaultValidationContext(), secrets: s}, nil
	default:
		return nil, fmt.Errorf("common_tls_context: validation context type %T is not supported", vt)
	}
}

// checkSVID enforces the SPIFFE X.509-SVID rules a mesh identity rests on: a certificate that
// carries a spiffe:// URI SAN carries exactly one URI SAN, and it is a well-formed SPIFFE ID
// (lower-case trust domain of letters, digits, '.', '-', '_'; a path of non-empty segments of
// letters, digits, '.', '-', '_', none "." or ".."; no user, port, query or fragment). Otherwise
// which of two identities a policy sees would depend on the reader.
func checkSVID(c *x509.Certificate) error {
	spiffe := false
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			spiffe = true
		}
	}
	if !spiffe {
		return nil
	}
	if len(c.URIs) != 1 {
		return fmt.Errorf("peer certificate has %d URI SANs: a SPIFFE ID must be its only one", len(c.URIs))
	}
	if !ValidSPIFFEID(c.URIs[0].String()) {
		return fmt.Errorf("peer certificate URI SAN %q is not a valid SPIFFE ID", c.URIs[0].String())
	}
	return nil
}

// ValidSPIFFEID reports whether id is a SPIFFE ID as the SPIFFE standard defines it:
// spiffe://TRUST-DOMAIN/PATH with the character sets of checkSVID.
func ValidSPIFFEID(id string) bool {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return false
	}
	td, path, _ := strings.Cut(rest, "/")
	if td == "" || len(id) > 2048 {
		return false
	}
	for i := 0; i < len(td); i++ {
		if c := td[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	if path == "" {
		return !strings.HasSuffix(rest, "/")
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
