package install

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/strait-mesh/strait/controlplane/ca"
)

// CACertsSecret is the Secret holding the mesh CA in Istio's plug-in layout (Istio's cacerts):
// every straitd replica mounts it and signs with the same intermediate.
const CACertsSecret = "cacerts"

// FieldManager is the server-side apply field manager of `strait install`.
const FieldManager = "strait-install"

// Apply applies objs with server-side apply, in order, as FieldManager (forcing ownership of the
// fields it sets). With dryRun the API server validates and admits each object without storing
// it (kubectl apply --server-side --dry-run=server).
func Apply(ctx context.Context, cfg *rest.Config, objs []runtime.Object, dryRun bool) error {
	rc, err := newResources(cfg)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
			if err != nil {
				return err
			}
			u = &unstructured.Unstructured{Object: m}
		} else {
			u = u.DeepCopy()
		}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		gvk := u.GroupVersionKind()
		api, err := rc.of(u)
		if err != nil {
			return err
		}
		data, err := json.Marshal(u)
		if err != nil {
			return err
		}
		if _, err := api.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}

// resources finds the API of an object's kind, as kubectl does (discovery, cached).
type resources struct {
	client dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newResources(cfg *rest.Config) (*resources, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &resources{client: client, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// of returns the API of u's kind, in u's namespace when the kind is namespaced.
func (rc *resources) of(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	mapping, err := rc.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		// A kind whose CRD was just created (or removed): rediscover once.
		rc.mapper.Reset()
		if mapping, err = rc.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return rc.client.Resource(mapping.Resource).Namespace(u.GetNamespace()), nil
	}
	return rc.client.Resource(mapping.Resource), nil
}

// EnsureCACerts creates the cacerts Secret in namespace unless it exists: a new root (10 years)
// and an intermediate CA (5 years) under it, for trustDomain, in Istio's plug-in layout. An
// existing Secret (a plug-in CA of the operator's, or one an earlier install made) is kept.
func EnsureCACerts(ctx context.Context, cfg *rest.Config, namespace, trustDomain string) (created bool, err error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, fmt.Errorf("kubernetes client: %w", err)
	}
	if _, err := cs.CoreV1().Secrets(namespace).Get(ctx, CACertsSecret, metav1.GetOptions{}); err == nil {
		return false, nil
	} else if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("reading Secret %s/%s: %w", namespace, CACertsSecret, err)
	}
	data, err := NewCACerts(trustDomain, time.Now())
	if err != nil {
		return false, err
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: CACertsSecret, Namespace: namespace,
		Labels: map[string]string{PartOfLabel: PartOf}}, Type: corev1.SecretTypeOpaque, Data: data}
	if _, err := cs.CoreV1().Secrets(namespace).Create(ctx, sec, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("creating Secret %s/%s: %w", namespace, CACertsSecret, err)
	}
	return true, nil
}

// NewCACerts returns a new root and intermediate CA in Istio's plug-in layout (ca-cert.pem,
// ca-key.pem, cert-chain.pem, root-cert.pem).
func NewCACerts(trustDomain string, now time.Time) (map[string][]byte, error) {
	newKey := func() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	serial := func() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)) }
	rootKey, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{Organization: []string{trustDomain}, CommonName: "Strait root CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating the root: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	if sn, err = serial(); err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{Organization: []string{trustDomain}, CommonName: "Strait intermediate CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, root, &caKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating the intermediate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
	return map[string][]byte{
		ca.PluginCACert:    certPEM,
		ca.PluginCAKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		ca.PluginCertChain: append(append([]byte{}, certPEM...), rootPEM...),
		ca.PluginRootCert:  rootPEM,
	}, nil
}
