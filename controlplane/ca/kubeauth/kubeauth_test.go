package kubeauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// TestReviewer reviews tokens minted by a real kube-apiserver's TokenRequest API: a token for
// istio-ca names its service account (and its pod when bound to one); a token for another
// audience, of a deleted service account, of a deleted pod, and garbage are refused without the
// token in the error.
func TestReviewer(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := kubernetes.NewForConfigOrDie(c.Config)
	core := client.CoreV1()
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "gone"} {
		if _, err := core.ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod, err := core.Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1"},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "web", Image: "web"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(sa, audience string, pod *corev1.Pod) string {
		t.Helper()
		exp := int64(600)
		spec := authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp}
		if pod != nil {
			spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
		}
		tr, err := core.ServiceAccounts("shop").CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	r := NewReviewer(client)
	aud := []string{ca.DefaultKubernetesAudience}

	got, err := r.Review(ctx, token("web", "istio-ca", nil), aud)
	if err != nil || got != (ca.ReviewedToken{Namespace: "shop", ServiceAccount: "web"}) {
		t.Fatalf("unbound token: %+v, %v", got, err)
	}
	bound := token("web", "istio-ca", pod)
	got, err = r.Review(ctx, bound, aud)
	if err != nil || got != (ca.ReviewedToken{Namespace: "shop", ServiceAccount: "web", Pod: "web-1"}) {
		t.Fatalf("pod-bound token: %+v, %v", got, err)
	}
	// One of several audiences is enough.
	if _, err := r.Review(ctx, token("web", "istio-ca", nil), []string{"other", "istio-ca"}); err != nil {
		t.Errorf("a token for one of two audiences: %v", err)
	}

	refused := map[string]string{
		"another audience":          token("web", "https://kubernetes.default.svc.cluster.local", nil),
		"a deleted service account": token("gone", "istio-ca", nil),
		"a deleted pod":             bound,
		"garbage":                   "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
	}
	if err := core.ServiceAccounts("shop").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := core.Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	for name, tok := range refused {
		// The API server sees deletions through its informers: allow it a moment.
		testenv.WaitFor(t, name+" refused", 15*time.Second, func() bool {
			_, err := r.Review(ctx, tok, aud)
			return err != nil
		})
		_, err := r.Review(ctx, tok, aud)
		if !errors.Is(err, ErrRefused) || strings.Contains(err.Error(), tok) {
			t.Errorf("%s: %v, want ErrRefused without the token", name, err)
		}
	}
	if _, err := r.Review(ctx, "x", nil); err == nil {
		t.Error("a review without audiences: accepted")
	}
}
