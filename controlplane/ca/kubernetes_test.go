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

// stubReviewer answers reviews from a table of tokens; it is the API server for unit tests (the
// real one is in controlplane/ca/kubeauth's tests).
type stubReviewer struct {
	mu        sync.Mutex
	tokens    map[string]ReviewedToken
	calls     int
	audiences []string
	deadline  bool
	block     chan struct{} // when set, Review waits on it
}

func (s *stubReviewer) Review(ctx context.Context, token string, audiences []string) (ReviewedToken, error) {
	s.mu.Lock()
	s.calls++
	s.audiences = audiences
	_, s.deadline = ctx.Deadline()
	r, ok := s.tokens[token]
	block := s.block
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	if !ok {
		return ReviewedToken{}, errors.New("the API server refused the token: invalid bearer token")
	}
	return r, nil
}

const (
	testJWT      = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	otherJWT     = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.c2lnbmF0dXJl"
	badNSJWT     = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ6In0.c2lnbmF0dXJl"
	unboundJWT   = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3In0.c2lnbmF0dXJl"
	unknownToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2In0.c2lnbmF0dXJl"
)

func TestKubernetesTokens(t *testing.T) {
	rev := &stubReviewer{tokens: map[string]ReviewedToken{
		testJWT:    {Namespace: "default", ServiceAccount: "ratings", Pod: "ratings-v1-abc"},
		badNSJWT:   {Namespace: "Not_A_Namespace", ServiceAccount: "x"},
		unboundJWT: {Namespace: "default", ServiceAccount: "ratings"},
	}}
	k, err := NewKubernetesTokens(KubernetesOptions{Reviewer: rev})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Authenticate(tokenContext("Bearer " + testJWT))
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity != testID || c.Method != MethodKubernetesToken || c.Credential != "pod default/ratings-v1-abc" {
		t.Fatalf("caller %+v", c)
	}
	if len(rev.audiences) != 1 || rev.audiences[0] != "istio-ca" || !rev.deadline {
		t.Errorf("review asked for audiences %q (deadline %v), want [istio-ca] with a deadline", rev.audiences, rev.deadline)
	}
	c, err = k.Authenticate(tokenContext("bearer " + unboundJWT))
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity != testID || !strings.HasPrefix(c.Credential, "token ") || strings.Contains(c.Credential, unboundJWT) {
		t.Fatalf("caller of an unbound token %+v", c)
	}

	calls := rev.calls
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"no metadata", tlsPeerContext(), ErrNoCredential},
		{"another scheme", tokenContext("Basic " + testJWT), ErrNoCredential},
		{"a bootstrap token", tokenContext("Bearer " + BootstrapTokenPrefix + "abc"), ErrNoCredential},
		{"two authorization values", tokenContext("Bearer "+testJWT, "Bearer "+testJWT), ErrKubernetesToken},
		{"oversized", tokenContext("Bearer " + testJWT + strings.Repeat("a", 9000)), ErrKubernetesToken},
		{"garbage", tokenContext("Bearer not-a-jwt"), ErrKubernetesToken},
		{"four segments", tokenContext("Bearer a.b.c.d"), ErrKubernetesToken},
		{"empty segment", tokenContext("Bearer a..c"), ErrKubernetesToken},
		{"without TLS", metadata.NewIncomingContext(peer.NewContext(context.Background(), &peer.Peer{}), metadata.Pairs("authorization", "Bearer "+testJWT)), ErrKubernetesToken},
	} {
		_, err := k.Authenticate(tc.ctx)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testJWT) {
			t.Errorf("%s: the error reveals the token: %v", tc.name, err)
		}
	}
	if rev.calls != calls {
		t.Errorf("%d reviews for requests refused before asking the API server", rev.calls-calls)
	}

	for name, tok := range map[string]string{"unknown": unknownToken, "invalid namespace": badNSJWT} {
		_, err := k.Authenticate(tokenContext("Bearer " + tok))
		if !errors.Is(err, ErrKubernetesToken) || errors.Is(err, ErrNoCredential) || strings.Contains(err.Error(), tok) {
			t.Errorf("%s token: %v, want a refusal that does not reveal it", name, err)
		}
	}

	// Bootstrap tokens and Kubernetes tokens share one list: each leaves the other's alone.
	b, err := NewBootstrapTokens(BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bt, err := b.Mint("default", "ratings", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]Authenticator{{b, k}, {k, b}} {
		for tok, method := range map[string]string{bt.Token: MethodBootstrapToken, testJWT: MethodKubernetesToken} {
			c, err := Authenticate(tokenContext("Bearer "+tok), order)
			if err != nil || c.Method != method {
				t.Errorf("%T first: %s token: %+v, %v", order[0], method, c, err)
			}
		}
	}
}

// TestKubernetesTokensBounded: reviews beyond MaxConcurrent are refused at once, not queued.
func TestKubernetesTokensBounded(t *testing.T) {
	rev := &stubReviewer{tokens: map[string]ReviewedToken{testJWT: {Namespace: "default", ServiceAccount: "ratings"}}, block: make(chan struct{})}
	k, err := NewKubernetesTokens(KubernetesOptions{Reviewer: rev, MaxConcurrent: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := k.Authenticate(tokenContext("Bearer " + testJWT))
		done <- err
	}()
	for i := 0; ; i++ {
		rev.mu.Lock()
		n := rev.calls
		rev.mu.Unlock()
		if n == 1 {
			break
		}
		if i == 10000 {
			t.Fatal("the first review did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := k.Authenticate(tokenContext("Bearer " + otherJWT)); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Errorf("a second concurrent review: %v, want refused as over the limit", err)
	}
	close(rev.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewKubernetesTokensOptions(t *testing.T) {
	if _, err := NewKubernetesTokens(KubernetesOptions{}); err == nil {
		t.Error("no reviewer: accepted")
	}
	if _, err := NewKubernetesTokens(KubernetesOptions{Reviewer: &stubReviewer{}, TrustDomain: "bad/domain"}); err == nil {
		t.Error("invalid trust domain: accepted")
	}
}
