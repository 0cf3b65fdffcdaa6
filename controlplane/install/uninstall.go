package install

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/controlplane/leader"
)

// Labels of everything `strait install` creates (and the straitd Deployment's selector, with
// istio.io/rev).
const (
	PartOfLabel = "app.kubernetes.io/part-of"
	PartOf      = "strait"
)

// rootCertConfigMap is the ConfigMap straitd writes in every namespace (controlplane's
// RootCertConfigMap; the control plane package is not imported here).
const rootCertConfigMap = "istio-ca-root-cert"

// UninstallOptions choose what Uninstall removes.
type UninstallOptions struct {
	// Namespace of the control plane (default istio-system).
	Namespace string
	// Revision to remove ("" or "default" is the default one).
	Revision string
	// Purge removes every revision found in Namespace, and the objects they share.
	Purge bool
	// DryRun lists what would be removed and removes nothing.
	DryRun bool
	// CRDs are the CustomResourceDefinitions `strait install` installs (removed with the last
	// revision or Purge).
	CRDs [][]byte
}

// Removed names an object Uninstall removed (or, with DryRun, would remove).
type Removed struct {
	Kind, Namespace, Name string
}

func (r Removed) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Uninstall removes what `strait install` created for a revision, as `istioctl uninstall`: its
// webhook configurations, ingress gateway, straitd Deployment, Service, PodDisruptionBudget,
// RBAC, ServiceAccount and istio ConfigMap, and the revision's lease. Objects are found by the
// names Manifests gives them and removed only when they carry Strait's label (PartOfLabel), so
// that an istiod of the same name is never touched. When no Strait revision is left in the
// namespace after removing this revision's straitd (or with Purge, which removes every
// revision) the shared objects go too: the CRDs
// (and with them every Istio object of the cluster), the mesh CA Secret cacerts when `strait
// install` created it, the status lease and the istio-ca-root-cert ConfigMaps. The namespace
// itself is kept, as istioctl keeps it. Uninstall is idempotent: what is gone already is
// skipped.
func Uninstall(ctx context.Context, cfg *rest.Config, o UninstallOptions) ([]Removed, error) {
	var err error
	if o.Namespace, o.Revision, err = placement(o.Namespace, o.Revision); err != nil {
		return nil, err
	}
	rc, err := newResources(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	u := uninstaller{o: o, rc: rc, cs: cs}
	installed, err := u.revisions(ctx)
	if err != nil {
		return nil, err
	}
	revisions := []string{o.Revision}
	if o.Purge {
		for _, r := range installed {
			if !slices.Contains(revisions, r) {
				revisions = append(revisions, r)
			}
		}
	}
	for _, rev := range revisions {
		if err := u.revision(ctx, rev); err != nil {
			return u.removed, err
		}
	}
	left, err := u.revisions(ctx)
	if err != nil {
		return u.removed, err
	}
	if o.DryRun {
		left = slices.DeleteFunc(left, func(r string) bool { return slices.Contains(revisions, r) })
	}
	// Without --purge the shared objects go only with the last revision this run removed: a
	// cluster where Strait is not installed keeps its CRDs (Istio's, perhaps) and their objects.
	if o.Purge || (len(left) == 0 && slices.Contains(installed, o.Revision)) {
		if err := u.shared(ctx); err != nil {
			return u.removed, err
		}
	}
	return u.removed, nil
}

// uninstaller removes objects and records what it removed.
type uninstaller struct {
	o       UninstallOptions
	rc      *resources
	cs      kubernetes.Interface
	removed []Removed
}

// revisions lists the Strait revisions installed in the namespace (their straitd Deployments).
func (u *uninstaller) revisions(ctx context.Context) ([]string, error) {
	deps, err := u.cs.AppsV1().Deployments(u.o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: PartOfLabel + "=" + PartOf})
	if err != nil {
		return nil, fmt.Errorf("listing straitd Deployments in %s: %w", u.o.Namespace, err)
	}
	var revs []string
	for _, d := range deps.Items {
		r := d.Labels["istio.io/rev"]
		if r == "default" {
			r = ""
		}
		if d.Name == (builder{o: Options{Revision: r}}).name("istiod") { // not the gateway
			revs = append(revs, r)
		}
	}
	return revs, nil
}

// revision removes one revision's objects, in the reverse order of installation (the webhooks
// before straitd, so that no pod creation waits on a webhook that is going away).
func (u *uninstaller) revision(ctx context.Context, rev string) error {
	objs, err := Manifests(Options{Namespace: u.o.Namespace, Revision: rev, ControlPlaneImage: "-", ProxyImage: "-", IngressGateway: true})
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range slices.Backward(objs) {
		if _, ns := obj.(*corev1.Namespace); ns {
			continue
		}
		errs = append(errs, u.remove(ctx, obj, true))
	}
	errs = append(errs, u.lease(ctx, leader.RevisionLease(rev)))
	return errors.Join(errs...)
}

// shared removes what every revision shares.
func (u *uninstaller) shared(ctx context.Context) error {
	var errs []error
	for i, doc := range u.o.CRDs {
		c, err := crd(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("CRD document %d: %w", i, err))
			continue
		}
		errs = append(errs, u.remove(ctx, c, false))
	}
	sec := &corev1.Secret{TypeMeta: tm("v1", "Secret"), ObjectMeta: metav1.ObjectMeta{Name: CACertsSecret, Namespace: u.o.Namespace}}
	errs = append(errs, u.remove(ctx, sec, true)) // an operator's own plug-in CA has no Strait label and stays
	errs = append(errs, u.lease(ctx, leader.StatusLease))
	cms, err := u.cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + rootCertConfigMap,
		LabelSelector: "istio.io/config=true"})
	if err != nil {
		errs = append(errs, fmt.Errorf("listing the %s ConfigMaps: %w", rootCertConfigMap, err))
	} else {
		for _, cm := range cms.Items {
			cm.TypeMeta = tm("v1", "ConfigMap")
			errs = append(errs, u.remove(ctx, &cm, false))
		}
	}
	return errors.Join(errs...)
}

// lease removes a lease of straitd's (created by straitd, so without Strait's label).
func (u *uninstaller) lease(ctx context.Context, name string) error {
	l := &unstructured.Unstructured{}
	l.SetAPIVersion("coordination.k8s.io/v1")
	l.SetKind("Lease")
	l.SetNamespace(u.o.Namespace)
	l.SetName(name)
	return u.remove(ctx, l, false)
}

// remove deletes obj when it exists (and, when ours, carries Strait's label).
func (u *uninstaller) remove(ctx context.Context, obj runtime.Object, ours bool) error {
	var m map[string]any
	if un, ok := obj.(*unstructured.Unstructured); ok {
		m = un.Object
	} else {
		var err error
		if m, err = runtime.DefaultUnstructuredConverter.ToUnstructured(obj); err != nil {
			return err
		}
	}
	want := &unstructured.Unstructured{Object: m}
	api, err := u.rc.of(want)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil // the kind is gone (its CRD removed): so are its objects
		}
		return err
	}
	r := Removed{Kind: want.GetKind(), Namespace: want.GetNamespace(), Name: want.GetName()}
	cur, err := api.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", r, err)
	}
	if ours && cur.GetLabels()[PartOfLabel] != PartOf {
		return nil // not Strait's: someone else's object of the same name
	}
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr(cur.GetUID())}}
	if u.o.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	background := metav1.DeletePropagationBackground
	opts.PropagationPolicy = &background
	if err := api.Delete(ctx, r.Name, opts); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing %s: %w", r, err)
	}
	u.removed = append(u.removed, r)
	return nil
}
