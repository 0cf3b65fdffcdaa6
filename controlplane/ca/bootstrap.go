package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// BootstrapTokenPrefix starts every bootstrap token, so the token is recognisable (in a leaked
// log, to a secret scanner) and the bootstrap Authenticator can leave other bearer tokens (a
// Kubernetes service-account JWT) to other Authenticators.
const BootstrapTokenPrefix = "sbt1."

// Defaults for BootstrapOptions.
const (
	DefaultBootstrapTTL        = time.Hour
	DefaultBootstrapMaxTTL     = 24 * time.Hour
	DefaultBootstrapMaxPending = 10000
)

// Errors of bootstrap token verification; each wraps ErrBadToken.
var (
	ErrBadToken      = errors.New("bootstrap token refused")
	ErrTokenUnknown  = fmt.Errorf("%w: unknown token", ErrBadToken)
	ErrTokenExpired  = fmt.Errorf("%w: token expired", ErrBadToken)
	ErrTokenUsed     = fmt.Errorf("%w: one-time token already used", ErrBadToken)
	ErrTokenInsecure = fmt.Errorf("%w: token sent over a connection without TLS", ErrBadToken)
)

// BootstrapOptions configure BootstrapTokens.
type BootstrapOptions struct {
	// TrustDomain is the trust domain of minted identities (default "cluster.local"); use the
	// Authority's.
	TrustDomain string
	// DefaultTTL is a token's lifetime when Mint is given none (default 1 h); MaxTTL caps it
	// (default 24 h).
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	// OneTime makes every token valid for one successful authentication only. The token is spent
	// when it authenticates, before the CSR is signed, so two concurrent uses cannot both pass; a
	// client whose CSR is then refused needs a new token.
	OneTime bool
	// MaxPending bounds the tokens held (expired ones are pruned first); Mint fails beyond it
	// (default 10000).
	MaxPending int
	// AllowInsecureTransport accepts tokens on connections without TLS (tests, a development
	// plaintext port). Off by default: a bearer token in cleartext is a stolen identity.
	AllowInsecureTransport bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// BootstrapToken is a minted token.
type BootstrapToken struct {
	// Token is the secret to hand to the workload; it is not stored by straitd (only its hash).
	Token string
	// ID names the token in logs without revealing it.
	ID       string
	Identity Identity
	Expires  time.Time
}

// BootstrapTokens is authenticator (b): short-lived bearer tokens that straitd mints for exactly
// one namespace and service account (through its local admin API, for `strait run`, `strait up`
// and VM installs), presented once by a new workload as gRPC metadata
// "authorization: Bearer <token>" to obtain its first certificate; renewals then use the
// certificate. A token is 256 random bits; straitd keeps only its SHA-256 with the identity and
// expiry, in memory (a restart of straitd invalidates outstanding tokens). Safe for concurrent
// use.
type BootstrapTokens struct {
	o      BootstrapOptions
	mu     sync.Mutex
	tokens map[[sha256.Size]byte]*tokenEntry
}

type tokenEntry struct {
	identity Identity
	expires  time.Time
	used     bool
}

var _ Authenticator = (*BootstrapTokens)(nil)

// NewBootstrapTokens returns an empty token store.
func NewBootstrapTokens(o BootstrapOptions) (*BootstrapTokens, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if err := validateTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("checking bootstrap token options: %w", err)
	}
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = DefaultBootstrapTTL
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultBootstrapMaxTTL
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultBootstrapMaxPending
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &BootstrapTokens{o: o, tokens: make(map[[sha256.Size]byte]*tokenEntry)}, nil
}

// Mint creates a token for spiffe://<trust domain>/ns/<ns>/sa/<sa>, valid for ttl (zero means
// DefaultTTL; capped at MaxTTL). The caller (straitd's admin API) must have authorised the
// request: whoever holds the token obtains that identity.
func (b *BootstrapTokens) Mint(ns, sa string, ttl time.Duration) (BootstrapToken, error) {
	id := Identity{TrustDomain: b.o.TrustDomain, Namespace: ns, ServiceAccount: sa}
	if err := id.Validate(); err != nil {
		return BootstrapToken{}, fmt.Errorf("minting a bootstrap token: %w", err)
	}
	if ttl <= 0 {
		ttl = b.o.DefaultTTL
	}
	ttl = min(ttl, b.o.MaxTTL)
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return BootstrapToken{}, fmt.Errorf("minting a bootstrap token: %w", err)
	}
	token := BootstrapTokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(token))
	now := b.o.Now()

	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.tokens) >= b.o.MaxPending {
		b.pruneLocked(now)
		if len(b.tokens) >= b.o.MaxPending {
			return BootstrapToken{}, fmt.Errorf("minting a bootstrap token: %d unexpired tokens outstanding, the limit", len(b.tokens))
		}
	}
	e := &tokenEntry{identity: id, expires: now.Add(ttl)}
	b.tokens[sum] = e
	return BootstrapToken{Token: token, ID: tokenID(sum), Identity: id, Expires: e.expires}, nil
}

// Verify checks a token and returns the identity it was minted for and its ID. With OneTime the
// token is spent. Errors wrap ErrBadToken.
func (b *BootstrapTokens) Verify(token string) (Identity, string, error) {
	sum := sha256.Sum256([]byte(token))
	id := tokenID(sum)
	now := b.o.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	// The map is keyed by the token's hash, so lookup time reveals nothing usable about a token.
	e, ok := b.tokens[sum]
	switch {
	case !ok:
		return Identity{}, id, ErrTokenUnknown
	case !now.Before(e.expires):
		return e.identity, id, fmt.Errorf("%w at %s", ErrTokenExpired, e.expires.UTC().Format(time.RFC3339))
	case e.used:
		return e.identity, id, ErrTokenUsed
	}
	if b.o.OneTime {
		e.used = true
	}
	return e.identity, id, nil
}

// Revoke forgets a token; it reports whether the token was known.
func (b *BootstrapTokens) Revoke(token string) bool {
	sum := sha256.Sum256([]byte(token))
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.tokens[sum]
	delete(b.tokens, sum)
	return ok
}

// Authenticate proves the caller by the bootstrap token in its "authorization: Bearer" gRPC
// metadata. Metadata without an authorization value, or with a bearer token that is not a
// bootstrap token (no BootstrapTokenPrefix), is ErrNoCredential; several authorization values are
// refused as ambiguous.
func (b *BootstrapTokens) Authenticate(ctx context.Context) (*Caller, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if !strings.HasPrefix(token, BootstrapTokenPrefix) {
		return nil, fmt.Errorf("bootstrap token: %w", ErrNoCredential)
	}
	if !b.o.AllowInsecureTransport && !overTLS(ctx) {
		return nil, ErrTokenInsecure
	}
	id, tid, err := b.Verify(token)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", tid, err)
	}
	return &Caller{Identity: id, Method: MethodBootstrapToken, Credential: "token " + tid}, nil
}

func (b *BootstrapTokens) pruneLocked(now time.Time) {
	for k, e := range b.tokens {
		if !now.Before(e.expires) {
			delete(b.tokens, k)
		}
	}
}

// tokenID is a token's public name: the first 6 bytes of its SHA-256, in hex.
func tokenID(sum [sha256.Size]byte) string { return hex.EncodeToString(sum[:6]) }
