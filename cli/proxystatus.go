package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newProxyStatus(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "Show each connected proxy's xDS sync status (SYNCED, STALE, NOT SENT)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := fetch(cmd.Context(), g.addr, "/debug/syncz")
			if err != nil {
				return err
			}
			switch output {
			case "json", "yaml":
				return writeRaw(g.stdout, output, body)
			case "", "table", "short":
				return printSyncz(g.stdout, body)
			}
			return fmt.Errorf("unknown output format %q: want json or yaml (default: table)", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output `FORMAT`: json or yaml (default: table)")
	return cmd
}

func fetch(ctx context.Context, addr, path string) ([]byte, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(addr, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("contacting straitd at %s (is it running?): %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("straitd answered %s for %s: %s", resp.Status, path, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// syncStatus is the part of one /debug/syncz entry the table shows.
type syncStatus struct {
	ProxyID      string `json:"proxy"`
	ControlPlane string `json:"controlPlane"`
	Protocol     string `json:"protocol"`
	Types        map[string]struct {
		Status string `json:"status"`
	} `json:"types"` // CDS/LDS/EDS/RDS → SYNCED | STALE | NOT SENT
	LastNack *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"lastNack"`
}

func printSyncz(w io.Writer, body []byte) error {
	var entries []syncStatus
	if err := json.Unmarshal(body, &entries); err != nil {
		return fmt.Errorf("reading /debug/syncz: %w", err)
	}
	if len(entries) == 0 {
		_, err := io.WriteString(w, "No proxies connected.\n")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCDS\tLDS\tEDS\tRDS\tPROTOCOL\tCONTROL PLANE")
	for _, e := range entries {
		st := func(t string) string {
			if v, ok := e.Types[t]; ok && v.Status != "" {
				return v.Status
			}
			return "NOT SENT"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ProxyID, st("CDS"), st("LDS"), st("EDS"), st("RDS"), e.Protocol, e.ControlPlane)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range entries {
		stale := false
		for _, t := range e.Types {
			stale = stale || t.Status == "STALE"
		}
		if n := e.LastNack; n != nil && stale {
			fmt.Fprintf(w, "\n%s rejected %s: %s\n", e.ProxyID, n.Type, n.Message)
		}
	}
	return nil
}
