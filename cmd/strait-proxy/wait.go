package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/proxy/admin"
)

// waitCmd is `strait-proxy wait`: the postStart hook that holds an application container until
// its sidecar is ready (Istio's holdApplicationUntilProxyStarts without native sidecars).
func waitCmd() *cobra.Command {
	var url string
	var timeout, period time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until the proxy answers ready on its health port (for a postStart hook)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return admin.WaitReady(ctx, url, period)
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:15021/healthz/ready", "readiness URL to poll")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long")
	cmd.Flags().DurationVar(&period, "period", 200*time.Millisecond, "time between attempts")
	return cmd
}
