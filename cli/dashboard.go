package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// dashboardPath is where straitd serves its dashboard (controlplane/dashboard.Path).
const dashboardPath = "/dashboard/"

// errNoBrowser says that this machine has no browser to open (a headless machine).
var errNoBrowser = errors.New("no browser found")

// openBrowser starts the user's browser on url without waiting for it; errNoBrowser when there
// is none. A variable so that tests replace it.
var openBrowser = func(url string) error {
	name, args, err := browserCommand(runtime.GOOS, os.Getenv, exec.LookPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(name, append(args, url)...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }() // the CLI may exit first; the browser goes on
	return nil
}

// browserCommand picks the program that opens a URL: $BROWSER, else the system's opener
// (xdg-open where a display exists, open on macOS, rundll32 on Windows).
func browserCommand(goos string, getenv func(string) string, lookPath func(string) (string, error)) (string, []string, error) {
	if b := strings.TrimSpace(getenv("BROWSER")); b != "" {
		if p, err := lookPath(b); err == nil {
			return p, nil, nil
		}
	}
	switch goos {
	case "darwin":
		return "open", nil, nil
	case "windows":
		return "rundll32", []string{"url.dll,FileProtocolHandler"}, nil
	}
	if getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" {
		return "", nil, fmt.Errorf("%w: no display (DISPLAY and WAYLAND_DISPLAY are unset)", errNoBrowser)
	}
	p, err := lookPath("xdg-open")
	if err != nil {
		return "", nil, fmt.Errorf("%w: xdg-open is not installed", errNoBrowser)
	}
	return p, nil, nil
}

// newDashboard returns `strait dashboard`, istioctl dashboard's counterpart: straitd serves the
// mesh's live service graph itself (no Kiali or Prometheus), so the command checks that straitd
// answers, prints the page's URL and opens it in a browser.
func newDashboard(g *globals) *cobra.Command {
	var browser, noBrowser bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Open straitd's live service graph of the mesh in a browser (istioctl dashboard kiali)",
		Long: `dashboard prints the URL of the mesh dashboard that straitd serves on its HTTP address
(--straitd) and opens it in a browser. The page shows the workloads and services and the traffic
between them (requests per second, 5xx share, p50/p99 latency, TCP bytes per second, mutual TLS),
computed from Istio's standard metrics that straitd scrapes from each connected proxy, and what
configuration applies to a clicked service. On a machine without a browser it prints the URL only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			if _, err := fetch(ctx, g.addr, dashboardPath+"api/graph"); err != nil {
				return fmt.Errorf("opening the dashboard: %w", err)
			}
			base := g.addr
			if !strings.Contains(base, "://") {
				base = "http://" + base
			}
			url := strings.TrimRight(base, "/") + dashboardPath
			fmt.Fprintf(g.stdout, "Strait dashboard: %s\n", url)
			if !browser || noBrowser {
				return nil
			}
			if err := openBrowser(url); err != nil {
				fmt.Fprintf(g.stderr, "not opening a browser (%v); open the URL above\n", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&browser, "browser", true, "open the dashboard in a browser (--browser=false, or --no-browser, only prints the URL)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the URL")
	return cmd
}
