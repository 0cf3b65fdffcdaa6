// Package kubeauth is the Kubernetes side of straitd's CA: the TokenReview client that proves a
// service-account token for ca.KubernetesTokens. It lives beside controlplane/ca, which must not
// link client-go, rather than in a registry package: it authenticates callers and discovers
// nothing.
package kubeauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/ca"
)

// Keys of a TokenReview's status.user.extra that name the pod a token is bound to.
const extraPodName = "authentication.kubernetes.io/pod-name"

// serviceAccountPrefix starts the user name of a service account's token.
const serviceAccountPrefix = "system:serviceaccount:"

// ErrRefused is wrapped by Review's error when the API server does not authenticate the token
// (as opposed to failing to answer).
var ErrRefused = errors.New("the API server refused the token")

// Reviewer implements ca.TokenReviewer with the authentication.k8s.io/v1 TokenReview API. It needs
// permission to create tokenreviews. Safe for concurrent use.
type Reviewer struct {
	client kubernetes.Interface
}

var _ ca.TokenReviewer = (*Reviewer)(nil)

// NewReviewer returns a Reviewer over client.
func NewReviewer(client kubernetes.Interface) *Reviewer { return &Reviewer{client: client} }

// Review asks the API server whether token is a valid service-account token for one of
// audiences (checked again on the answer: the API server's status.audiences must hold one) and
// returns its service account and the pod it is bound to. Errors never hold the token.
func (r *Reviewer) Review(ctx context.Context, token string, audiences []string) (ca.ReviewedToken, error) {
	if len(audiences) == 0 {
		return ca.ReviewedToken{}, errors.New("token review: no audience given")
	}
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return ca.ReviewedToken{}, fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		// %.256s bounds the quoted message (the API server's, which should not hold the token:
		// it is removed in case).
		return ca.ReviewedToken{}, fmt.Errorf("%w: %.256s", ErrRefused, strings.ReplaceAll(msg, token, "<token>"))
	}
	if !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(audiences, a) }) {
		return ca.ReviewedToken{}, fmt.Errorf("%w: the token is for audiences %q, not one of %q", ErrRefused, st.Audiences, audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return ca.ReviewedToken{}, fmt.Errorf("%w: user %.256q is not a service account", ErrRefused, st.User.Username)
	}
	out := ca.ReviewedToken{Namespace: ns, ServiceAccount: sa}
	if pods := st.User.Extra[extraPodName]; len(pods) == 1 {
		out.Pod = pods[0]
	}
	return out, nil
}
