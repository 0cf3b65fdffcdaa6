package kubeenv_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// TestControllerManager checks the harness end to end: the kubeconfig works, the API server
// stores objects, and the controller manager derives an EndpointSlice from a Service and the
// default ServiceAccount of a new namespace.
func TestControllerManager(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{ControllerManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Objects(t).Create(ctx, `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
`); err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	slices := client.Resource(schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}).Namespace("bookinfo")
	accounts := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}).Namespace("bookinfo")
	for {
		list, err := slices.List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=reviews"})
		if err != nil {
			t.Fatal(err)
		}
		_, saErr := accounts.Get(ctx, "default", metav1.GetOptions{})
		if len(list.Items) == 1 && saErr == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no EndpointSlice for the Service (%d) or no default ServiceAccount (%v)", len(list.Items), saErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
