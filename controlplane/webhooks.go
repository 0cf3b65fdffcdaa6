package controlplane

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/controlplane/admission"
	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/controlplane/inject"
)

// WebhookOptions configure straitd's admission webhooks (Istio's 15017): the sidecar injector
// (/inject) and config validation (/validate).
type WebhookOptions struct {
	// Listen is the TLS address of the webhooks; "" disables them. They need the CA (for their
	// serving certificate).
	Listen string
	// ProxyImage is the sidecar image the injector adds.
	ProxyImage string
	// Revision is the control-plane revision the injector serves ("" is the default one).
	Revision string
	// Namespace is straitd's own namespace (default istio-system): its Service's DNS names are in
	// the serving certificate and name the default CA address of injected sidecars.
	Namespace string
	// CAAddress is where injected sidecars reach the CA and xDS (default
	// istiod[-REVISION].NAMESPACE.svc:15012).
	CAAddress string
	// InjectorConfig and ValidatorConfig name the MutatingWebhookConfiguration and
	// ValidatingWebhookConfiguration whose CA bundle straitd keeps current (with Kubernetes); ""
	// leaves them alone. The validator's failure policy is set to Fail once straitd serves.
	InjectorConfig, ValidatorConfig string
}

// serviceName is straitd's Service name for a revision (Istio's istiod, istiod-REVISION).
func (w WebhookOptions) serviceName() string {
	if w.Revision == "" || w.Revision == "default" {
		return "istiod"
	}
	return "istiod-" + w.Revision
}

func (w WebhookOptions) namespace() string {
	if w.Namespace == "" {
		return "istio-system"
	}
	return w.Namespace
}

// webhookServer is the running webhook listener.
type webhookServer struct {
	srv *http.Server
	ln  net.Listener
}

// newWebhookServer binds the webhook address with a serving certificate from the CA for the
// Service's DNS names. kcfg, when set, lets the injector read namespaces' labels; without it only
// the pods' own labels select injection.
func newWebhookServer(o WebhookOptions, mp *meshPort, mesh *meshconfig.MeshConfig, kcfg *rest.Config, log *slog.Logger) (*webhookServer, error) {
	if o.Listen == "" {
		return nil, nil
	}
	if mp == nil {
		return nil, errors.New("webhooks: they need the CA (the mesh port) for their serving certificate")
	}
	if o.ProxyImage == "" {
		return nil, errors.New("webhooks: --proxy-image is required for sidecar injection")
	}
	svc, ns := o.serviceName(), o.namespace()
	sc, err := ca.NewServingCertificate(mp.authority, ca.ServingOptions{
		DNSNames: []string{svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local", svc, "localhost"},
		IPs:      servingIPs(o.Listen),
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: serving certificate: %w", err)
	}
	caAddr := o.CAAddress
	if caAddr == "" {
		caAddr = svc + "." + ns + ".svc:15012"
	}
	wh := &inject.Webhook{Logger: log, Config: inject.Config{
		Image:          o.ProxyImage,
		Revision:       o.Revision,
		CAAddress:      caAddr,
		CAServerName:   svc + "." + ns + ".svc",
		TrustDomain:    mesh.GetTrustDomain(),
		Mesh:           mesh,
		NativeSidecars: true,
		Resources:      inject.DefaultResources(),
	}}
	if kcfg != nil {
		client, err := kubernetes.NewForConfig(kcfg)
		if err != nil {
			return nil, fmt.Errorf("webhooks: kubernetes client: %w", err)
		}
		wh.Namespaces = func(ctx context.Context, name string) (map[string]string, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			n, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return n.Labels, nil
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/inject", wh)
	mux.Handle("/inject/", wh) // Istio's /inject/:ENV... paths
	mux.Handle("/validate", admission.Handler(admission.Validate, log))
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("webhooks: listen: %w", err)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: sc.GetCertificate}
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return &webhookServer{srv: srv, ln: tls.NewListener(ln, tlsCfg)}, nil
}

// caBundle is the PEM of the CA's trust bundle: what the API server verifies the webhooks with.
func caBundle(mp *meshPort) []byte {
	var out []byte
	for _, c := range mp.authority.TrustBundle() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// patchWebhookConfigs keeps the webhook configurations' CA bundles current: it sets them now and
// again every interval until ctx ends (a configuration re-applied by `strait install` loses its
// bundle). Errors are logged and retried.
func patchWebhookConfigs(ctx context.Context, o WebhookOptions, kcfg *rest.Config, bundle []byte, log *slog.Logger) {
	client, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		log.Error("webhooks: kubernetes client", "error", err)
		return
	}
	api := client.AdmissionregistrationV1()
	patch := func() error {
		var errs []error
		if o.InjectorConfig != "" {
			cur, err := api.MutatingWebhookConfigurations().Get(ctx, o.InjectorConfig, metav1.GetOptions{})
			if err == nil {
				changed := false
				for i := range cur.Webhooks {
					if string(cur.Webhooks[i].ClientConfig.CABundle) != string(bundle) {
						cur.Webhooks[i].ClientConfig.CABundle, changed = bundle, true
					}
				}
				if changed {
					_, err = api.MutatingWebhookConfigurations().Update(ctx, cur, metav1.UpdateOptions{FieldManager: "straitd"})
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("MutatingWebhookConfiguration %s: %w", o.InjectorConfig, err))
			}
		}
		if o.ValidatorConfig != "" {
			cur, err := api.ValidatingWebhookConfigurations().Get(ctx, o.ValidatorConfig, metav1.GetOptions{})
			if err == nil {
				changed := false
				fail := admissionregistrationv1.Fail
				for i := range cur.Webhooks {
					h := &cur.Webhooks[i]
					if string(h.ClientConfig.CABundle) != string(bundle) || h.FailurePolicy == nil || *h.FailurePolicy != fail {
						h.ClientConfig.CABundle, h.FailurePolicy, changed = bundle, &fail, true
					}
				}
				if changed {
					_, err = api.ValidatingWebhookConfigurations().Update(ctx, cur, metav1.UpdateOptions{FieldManager: "straitd"})
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("ValidatingWebhookConfiguration %s: %w", o.ValidatorConfig, err))
			}
		}
		return errors.Join(errs...)
	}
	wait := time.Second // until the first success (the configurations may not exist yet)
	for {
		if err := patch(); err != nil {
			log.Warn("webhooks: keeping the CA bundle current", "error", err)
		} else {
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
