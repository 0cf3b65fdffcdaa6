package ca

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// tokenContext is an incoming context over TLS carrying the given authorization values.
func tokenContext(values ...string) context.Context {
	ctx := tlsPeerContext()
	md := metadata.MD{}
	for _, v := range values {
		md.Append("authorization", v)
	}
	return metadata.NewIncomingContext(ctx, md)
}

func TestBootstrapTokens(t *testing.T) {
	clock := newFakeClock()
	b, err := NewBootstrapTokens(BootstrapOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := b.Mint("default", "ratings", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, BootstrapTokenPrefix) || len(tok.Token) < 40 || tok.Identity != testID || !tok.Expires.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("minted %+v", tok)
	}
	if strings.Contains(tok.Token, tok.ID) {
		t.Fatal("the token's ID reveals part of the token")
	}
	other, _ := b.Mint("default", "ratings", 0)
	if other.Token == tok.Token {
		t.Fatal("two mints, one token")
	}

	c, err := b.Authenticate(tokenContext("Bearer " + tok.Token))
	if err != nil || c.Identity != testID || c.Method != MethodBootstrapToken || c.Credential != "token "+tok.ID {
		t.Fatalf("Authenticate = %+v, %v", c, err)
	}
	// Reusable until expiry (not one-time by default).
	if _, err := b.Authenticate(tokenContext("bearer " + tok.Token)); err != nil {
		t.Fatalf("second use, lower-case scheme: %v", err)
	}

	tests := []struct {
		name   string
		ctx    context.Context
		target error
	}{
		{"no metadata", tlsPeerContext(), ErrNoCredential},
		{"another scheme", tokenContext("Basic " + tok.Token), ErrNoCredential},
		{"a JWT (Kubernetes token)", tokenContext("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"), ErrNoCredential},
		{"unknown token", tokenContext("Bearer " + BootstrapTokenPrefix + "AAAA"), ErrTokenUnknown},
		{"token with one byte changed", tokenContext("Bearer " + flipLast(tok.Token)), ErrTokenUnknown},
		{"two authorization values", tokenContext("Bearer "+tok.Token, "Bearer "+tok.Token), ErrBadToken},
		{"oversized", tokenContext("Bearer " + BootstrapTokenPrefix + strings.Repeat("a", 9000)), ErrBadToken},
		{"without TLS", metadata.NewIncomingContext(peer.NewContext(context.Background(), &peer.Peer{}), metadata.Pairs("authorization", "Bearer "+tok.Token)), ErrTokenInsecure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Authenticate(tc.ctx); !errors.Is(err, tc.target) {
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
		})
	}

	clock.Add(time.Hour)
	if _, err := b.Authenticate(tokenContext("Bearer " + tok.Token)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("after expiry: %v", err)
	}
	if !b.Revoke(other.Token) || b.Revoke(other.Token) {
		t.Error("Revoke")
	}
}

func TestBootstrapTokenMint(t *testing.T) {
	clock := newFakeClock()
	b, _ := NewBootstrapTokens(BootstrapOptions{Now: clock.Now, TrustDomain: "example.org", MaxTTL: 2 * time.Hour, MaxPending: 2})
	for _, bad := range [][2]string{{"", "sa"}, {"ns", ""}, {"NS", "sa"}, {"ns", "sa/x"}, {"ns", "sa\x00"}} {
		if _, err := b.Mint(bad[0], bad[1], 0); err == nil {
			t.Errorf("Mint(%q, %q) accepted", bad[0], bad[1])
		}
	}
	tok, err := b.Mint("ns", "sa", 5*time.Hour)
	if err != nil || tok.Expires.Sub(clock.Now()) != 2*time.Hour || tok.Identity.SPIFFEID() != "spiffe://example.org/ns/ns/sa/sa" {
		t.Fatalf("capped mint: %+v, %v", tok, err)
	}
	if _, err := b.Mint("ns", "sa", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Mint("ns", "sa", time.Minute); err == nil {
		t.Fatal("minted beyond MaxPending")
	}
	clock.Add(time.Minute) // the short token expires and is pruned
	if _, err := b.Mint("ns", "sa", time.Minute); err != nil {
		t.Fatalf("mint after pruning: %v", err)
	}
}

func TestBootstrapTokenOneTime(t *testing.T) {
	b, _ := NewBootstrapTokens(BootstrapOptions{OneTime: true})
	tok, _ := b.Mint("default", "ratings", 0)
	// Concurrent uses: exactly one succeeds.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Authenticate(tokenContext("Bearer " + tok.Token)); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, ErrTokenUsed) {
				t.Errorf("reuse: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d uses of a one-time token succeeded", ok)
	}
}

func flipLast(s string) string {
	if s[len(s)-1] == 'A' {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}
