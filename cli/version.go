package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/version"
)

// meshVersions is `strait version`'s answer: this CLI's build, straitd's and each connected
// proxy's, in the shape of istioctl version's -o json.
type meshVersions struct {
	Client       version.Info   `json:"clientVersion"`
	ControlPlane *version.Info  `json:"meshVersion,omitempty"`
	DataPlane    []proxyVersion `json:"dataPlaneVersion,omitempty"`
	// Unreachable says why straitd could not be asked ("" when it was).
	Unreachable string `json:"controlPlaneUnreachable,omitempty"`
}

// proxyVersion is one connected proxy's version as straitd reports it.
type proxyVersion struct {
	ID      string `json:"ID"`
	Version string `json:"IstioVersion"`
}

// newVersion returns `strait version`: istioctl version's report.
func newVersion(g *globals) *cobra.Command {
	var output string
	var remote bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of strait, straitd and every connected proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := meshVersions{Client: version.Get()}
			if remote {
				if err := v.fetch(cmd, g.addr); err != nil {
					v.Unreachable = err.Error()
				}
			}
			switch output {
			case "json":
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			case "yaml":
				b, err := yaml.Marshal(v)
				if err != nil {
					return err
				}
				_, err = g.stdout.Write(b)
				return err
			case "", "short":
				v.write(g.stdout)
				return nil
			}
			return fmt.Errorf("-o %q: want json or yaml", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: lines)")
	cmd.Flags().BoolVar(&remote, "remote", true, "also ask straitd for its version and its proxies' (--remote=false: this CLI only)")
	return cmd
}

// fetch asks straitd for its version and its proxies'.
func (v *meshVersions) fetch(cmd *cobra.Command, addr string) error {
	b, err := fetch(cmd.Context(), addr, "/version")
	if err != nil {
		return err
	}
	var cp version.Info
	if err := json.Unmarshal(b, &cp); err != nil {
		return fmt.Errorf("reading straitd's /version: %w", err)
	}
	v.ControlPlane = &cp
	b, err = fetch(cmd.Context(), addr, "/debug/syncz")
	if err != nil {
		return err
	}
	var proxies []struct {
		Proxy   string `json:"proxy"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &proxies); err != nil {
		return fmt.Errorf("reading straitd's /debug/syncz: %w", err)
	}
	for _, p := range proxies {
		pv := p.Version
		if pv == "" {
			pv = "unknown"
		}
		v.DataPlane = append(v.DataPlane, proxyVersion{ID: p.Proxy, Version: pv})
	}
	return nil
}

// write prints istioctl version's lines: client, control plane, and the data plane versions
// with how many proxies run each.
func (v *meshVersions) write(w io.Writer) {
	fmt.Fprintf(w, "client version: %s\n", v.Client)
	switch {
	case v.Unreachable != "":
		fmt.Fprintf(w, "control plane version: unknown (%s)\n", v.Unreachable)
		return
	case v.ControlPlane == nil:
		return
	}
	fmt.Fprintf(w, "control plane version: %s\n", v.ControlPlane)
	count := map[string]int{}
	for _, p := range v.DataPlane {
		count[p.Version]++
	}
	if len(count) == 0 {
		fmt.Fprintln(w, "data plane version: none (no proxies connected)")
		return
	}
	vs := make([]string, 0, len(count))
	for ver, n := range count {
		vs = append(vs, fmt.Sprintf("%s (%d proxies)", ver, n))
	}
	sort.Strings(vs)
	fmt.Fprintf(w, "data plane version: %s\n", strings.Join(vs, ", "))
}
