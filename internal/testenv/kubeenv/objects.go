package kubeenv

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Objects creates, updates and deletes objects of any kind the API server serves, given as YAML,
// as `kubectl create|replace|delete -f` would. It looks kinds up in the API server's discovery
// on each call, so kinds of CRDs installed in between are found.
type Objects struct {
	client dynamic.Interface
	disc   discovery.DiscoveryInterface
}

// Objects returns a client for the cluster's objects.
func (c *Cluster) Objects(t testing.TB) *Objects {
	t.Helper()
	client, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	return &Objects{client: client, disc: disc}
}

// Parse splits a YAML stream into objects, skipping empty documents.
func Parse(data string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range splitYAML(data) {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if string(js) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// splitYAML splits a YAML stream on its "---" lines.
func splitYAML(data string) []string {
	var docs []string
	var cur []string
	for _, line := range strings.Split(data, "\n") {
		if config.IsDocumentSeparator(line) {
			docs = append(docs, strings.Join(cur, "\n"))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, strings.Join(cur, "\n"))
}

// resource finds the API resource of an object and whether it is namespaced.
func (o *Objects) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(o.disc))
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk, u.GetName(), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return o.client.Resource(m.Resource), nil
	}
	if u.GetNamespace() == "" {
		u.SetNamespace("default")
	}
	return o.client.Resource(m.Resource).Namespace(u.GetNamespace()), nil
}

// Create creates each object of the YAML stream, and the namespaces they are in when missing,
// and returns the objects as created.
func (o *Objects) Create(ctx context.Context, data string) ([]*unstructured.Unstructured, error) {
	objs, err := Parse(data)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, u := range objs {
		api, err := o.resource(u)
		if err != nil {
			return out, err
		}
		if ns := u.GetNamespace(); ns != "" {
			if err := o.ensureNamespace(ctx, ns); err != nil {
				return out, err
			}
		}
		created, err := api.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"})
		if err != nil {
			return out, fmt.Errorf("creating %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		out = append(out, created)
	}
	return out, nil
}

// Replace replaces each object of the YAML stream with its new content (the objects must exist).
func (o *Objects) Replace(ctx context.Context, data string) error {
	return o.each(data, func(api dynamic.ResourceInterface, u *unstructured.Unstructured) error {
		cur, err := api.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		u.SetResourceVersion(cur.GetResourceVersion())
		_, err = api.Update(ctx, u, metav1.UpdateOptions{FieldValidation: "Strict"})
		return err
	})
}

// Get reads the current version of each object of the YAML stream (only their kinds, namespaces
// and names count).
func (o *Objects) Get(ctx context.Context, data string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	err := o.each(data, func(api dynamic.ResourceInterface, u *unstructured.Unstructured) error {
		cur, err := api.Get(ctx, u.GetName(), metav1.GetOptions{})
		out = append(out, cur)
		return err
	})
	return out, err
}

// Delete deletes each object of the YAML stream; objects already gone are fine.
func (o *Objects) Delete(ctx context.Context, data string) error {
	return o.each(data, func(api dynamic.ResourceInterface, u *unstructured.Unstructured) error {
		if err := api.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
}

// each calls f with each object of the YAML stream and its API, naming the object in f's error.
func (o *Objects) each(data string, f func(dynamic.ResourceInterface, *unstructured.Unstructured) error) error {
	objs, err := Parse(data)
	if err != nil {
		return err
	}
	for _, u := range objs {
		api, err := o.resource(u)
		if err != nil {
			return err
		}
		if err := f(api, u); err != nil {
			return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}

// ensureNamespace creates a namespace unless it exists.
func (o *Objects) ensureNamespace(ctx context.Context, name string) error {
	api := o.client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"})
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if _, err := api.Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}
