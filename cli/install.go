package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/kube/crds"
	"github.com/strait-mesh/strait/controlplane/install"
	"github.com/strait-mesh/strait/internal/version"
)

// newInstall is `strait install`: Strait's control plane on Kubernetes, as `istioctl install`.
func newInstall(g *globals) *cobra.Command {
	var kubeconfig, revision, registry, meshConfig string
	var dryRun, noGateway bool
	var replicas int32
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Strait's control plane on Kubernetes (or print its manifests with --dry-run)",
		Long: `install applies, with server-side apply, the namespace istio-system, Istio's CRDs, straitd (as
istiod: Deployment, Services, RBAC, the sidecar injector and validation webhooks) and an ingress
gateway, and creates the mesh CA (Secret cacerts, Istio's plug-in layout) unless one exists.
--revision installs a second control plane beside the default one, selected by istio.io/rev.
--dry-run prints the manifests instead (the CA Secret is not printed: it holds a private key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mesh, err := config.LoadMeshConfig(meshConfig)
			if err != nil {
				return err
			}
			tag := version.Get().Version
			objs, err := install.Manifests(install.Options{Revision: revision, Replicas: replicas, Mesh: mesh,
				ControlPlaneImage: registry + "/straitd:" + tag, ProxyImage: registry + "/proxy:" + tag,
				IngressGateway: !noGateway, CRDs: crdDocs()})
			if err != nil {
				return err
			}
			if dryRun {
				y, err := install.YAML(objs)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "# Strait %s; the Secret %s/%s (the mesh CA) is created at install time unless it exists.\n", tag, "istio-system", install.CACertsSecret)
				_, err = g.stdout.Write(y)
				return err
			}
			cfg, err := kubeClientConfig(kubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			if err := install.Apply(ctx, cfg, objs, false); err != nil {
				return err
			}
			created, err := install.EnsureCACerts(ctx, cfg, "istio-system", mesh.GetTrustDomain())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "✔ Strait %s installed (%d objects", tag, len(objs))
			if created {
				fmt.Fprintf(g.stdout, "; a new mesh CA in Secret istio-system/%s", install.CACertsSecret)
			}
			fmt.Fprintln(g.stdout, ")")
			fmt.Fprintln(g.stdout, "  Next: kubectl label namespace default istio-injection=enabled")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&revision, "revision", "", "install a control plane of this revision beside the default one (istio.io/rev)")
	f.StringVar(&registry, "registry", "strait", "container registry of the straitd and proxy images")
	f.StringVar(&meshConfig, "mesh-config", "", "MeshConfig YAML stored in the istio ConfigMap (default: Istio's defaults)")
	f.BoolVar(&dryRun, "dry-run", false, "print the manifests instead of applying them")
	f.BoolVar(&noGateway, "no-ingress-gateway", false, "leave out istio-ingressgateway")
	f.Int32Var(&replicas, "replicas", 2, "straitd replicas")
	return cmd
}

// kubeClientConfig reads the kubeconfig as kubectl does: the file given, else $KUBECONFIG, else
// ~/.kube/config.
func kubeClientConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// crdDocs are Istio's and Strait's CustomResourceDefinitions, one YAML document each.
func crdDocs() [][]byte {
	var out [][]byte
	for _, d := range crds.Documents() {
		out = append(out, []byte(d))
	}
	return out
}
