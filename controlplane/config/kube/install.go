package kube

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/controlplane/config/kube/crds"
)

// crdResource is the API of CustomResourceDefinitions. They are handled as unstructured objects,
// which spares straitd the apiextensions module.
var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates or updates the CustomResourceDefinitions of every kind Strait reads
// (package crds) and waits until the API server serves them (condition Established), or until
// ctx is done.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	defs, err := crds.Resources()
	if err != nil {
		return err
	}
	api := client.Resource(crdResource)
	for _, d := range defs {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(d.JSON); err != nil {
			return fmt.Errorf("CustomResourceDefinition %s: %w", d.Name(), err)
		}
		_, err := api.Create(ctx, obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := api.Get(ctx, d.Name(), metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("reading CustomResourceDefinition %s: %w", d.Name(), gerr)
			}
			obj.SetResourceVersion(cur.GetResourceVersion())
			_, err = api.Update(ctx, obj, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("installing CustomResourceDefinition %s: %w", d.Name(), err)
		}
	}
	for _, d := range defs {
		for {
			cur, err := api.Get(ctx, d.Name(), metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("reading CustomResourceDefinition %s: %w", d.Name(), err)
			}
			if established(cur) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CustomResourceDefinition %s not established: %w", d.Name(), ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// established reports whether a CustomResourceDefinition has the condition Established=True.
func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
