package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/install"
)

// newUninstall is `strait uninstall`: removes what `strait install` created, as `istioctl
// uninstall`.
func newUninstall(g *globals) *cobra.Command {
	var kubeconfig, revision string
	var dryRun, purge bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove a Strait control plane revision from Kubernetes (--purge: every revision and the CRDs)",
		Long: `uninstall removes what ` + "`strait install`" + ` created for a revision: its webhook
configurations, ingress gateway, straitd (Deployment, Service, PodDisruptionBudget, RBAC,
ServiceAccount, istio ConfigMap) and its lease. Only objects with Strait's label are removed.
When this removes the last Strait revision, or with --purge (every revision), the shared objects
go too: Istio's CRDs — and with them every Istio object in the cluster —, the mesh CA Secret
cacerts if ` + "`strait install`" + ` created it, and the istio-ca-root-cert ConfigMaps. The namespace
istio-system is kept (kubectl delete namespace istio-system removes it). Running it again is
harmless. --dry-run lists what would be removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kubeClientConfig(kubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			removed, err := install.Uninstall(ctx, cfg, install.UninstallOptions{Revision: revision, Purge: purge, DryRun: dryRun, CRDs: crdDocs()})
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			for _, r := range removed {
				fmt.Fprintf(g.stdout, "  %s %s\n", verb, r)
			}
			if err != nil {
				return err
			}
			switch {
			case len(removed) == 0:
				fmt.Fprintln(g.stdout, "✔ nothing to remove: Strait is not installed (for this revision)")
			case dryRun:
				fmt.Fprintf(g.stdout, "✔ dry run: %d objects would be removed\n", len(removed))
			default:
				fmt.Fprintf(g.stdout, "✔ Strait uninstalled (%d objects removed)\n", len(removed))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&revision, "revision", "", "the control plane revision to remove (default: the default revision)")
	f.BoolVar(&purge, "purge", false, "remove every revision and the objects they share, including Istio's CRDs (and so every Istio object)")
	f.BoolVar(&dryRun, "dry-run", false, "list what would be removed, remove nothing")
	return cmd
}
