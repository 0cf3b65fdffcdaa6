package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// caRootsPath is straitd's admin API of the CA's roots (controlplane.CARootsPath).
const caRootsPath = "/apis/v1/ca/roots"

// caRoot and caRootsResponse are the roots API's answer (controlplane.CARoot and
// controlplane.CARootsResponse; the CLI does not link the control plane).
type caRoot struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	State       string    `json:"state"` // signing, staged or trusted
}

type caRootsResponse struct {
	Mode        string   `json:"mode"`
	TrustDomain string   `json:"trustDomain"`
	Roots       []caRoot `json:"roots"`
	Changed     *caRoot  `json:"changed,omitempty"`
}

// maxCAResponseBytes bounds an answer of the roots API.
const maxCAResponseBytes = 1 << 20

// caRequestTimeout bounds one call to the roots API.
const caRequestTimeout = 30 * time.Second

func newCA(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Inspect the mesh CA's roots and rotate them",
		Long: `ca lists the roots straitd's CA signs with and trusts, and rotates them (self-signed CA only):

  1. strait ca stage-root       a new root joins the trust bundle; the current root keeps signing.
                                Each proxy trusts the new root after its next certificate renewal.
  2. strait ca activate-root    once every proxy trusts it, the new root signs; the old one stays
                                trusted. Each proxy gets a certificate of the new root at its next renewal.
  3. strait ca remove-root FP   once no certificate of the old root is in use any more, remove it.

Every command needs straitd's admin token (--admin-token-file).`,
	}
	cmd.AddCommand(newCARoots(g), newCAStageRoot(g), newCAActivateRoot(g), newCARemoveRoot(g))
	return cmd
}

func newCARoots(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "roots",
		Short: "List the CA's roots: fingerprint, state (signing, staged, trusted), subject, validity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkCAOutput(output); err != nil {
				return err
			}
			resp, err := g.caCall(cmd.Context(), "strait ca roots", http.MethodGet, caRootsPath)
			if err != nil {
				return err
			}
			if output == "json" {
				return printCAJSON(g.stdout, resp)
			}
			return printCARoots(g.stdout, resp.Roots)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: table)")
	return cmd
}

func newCAStageRoot(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "stage-root",
		Short: "Create a new root: trusted by the mesh, not yet signing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkCAOutput(output); err != nil {
				return err
			}
			resp, err := g.caCall(cmd.Context(), "strait ca stage-root", http.MethodPost, caRootsPath+"/stage")
			if err != nil {
				return err
			}
			if output == "json" {
				return printCAJSON(g.stdout, resp)
			}
			r := changedRoot(resp)
			fmt.Fprintf(g.stdout, "staged root %s (%s, valid until %s): trusted, not yet signing.\n",
				r.Fingerprint, r.Subject, r.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(g.stdout, "Proxies trust it after their next certificate renewal (half a certificate lifetime);\nthen run: strait ca activate-root\n")
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: text)")
	return cmd
}

func newCAActivateRoot(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "activate-root",
		Short: "Make the staged root the signing root; the previous root stays trusted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkCAOutput(output); err != nil {
				return err
			}
			resp, err := g.caCall(cmd.Context(), "strait ca activate-root", http.MethodPost, caRootsPath+"/activate")
			if err != nil {
				return err
			}
			if output == "json" {
				return printCAJSON(g.stdout, resp)
			}
			r := changedRoot(resp)
			fmt.Fprintf(g.stdout, "activated root %s: it signs workload certificates from now on.\n", r.Fingerprint)
			for _, old := range resp.Roots {
				if old.State == "trusted" {
					fmt.Fprintf(g.stdout, "Root %s stays trusted; once every proxy holds a certificate of the new root and the\ncertificates of the old one have expired, run: strait ca remove-root %s\n", old.Fingerprint, old.Fingerprint)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: text)")
	return cmd
}

func newCARemoveRoot(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "remove-root FINGERPRINT",
		Short: "Remove a retired (or discard a staged) root from the trust bundle",
		Long: "remove-root removes the root with that SHA-256 fingerprint (as `strait ca roots` lists it) from the trust\n" +
			"bundle: a retired root once no certificate it signed is in use, or a staged root that is discarded.\n" +
			"The signing root cannot be removed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkCAOutput(output); err != nil {
				return err
			}
			resp, err := g.caCall(cmd.Context(), "strait ca remove-root", http.MethodDelete, caRootsPath+"/"+url.PathEscape(args[0]))
			if err != nil {
				return err
			}
			if output == "json" {
				return printCAJSON(g.stdout, resp)
			}
			r := changedRoot(resp)
			fmt.Fprintf(g.stdout, "removed root %s (%s) from the trust bundle; proxies drop it at their next certificate renewal.\n", r.Fingerprint, r.State)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: text)")
	return cmd
}

func checkCAOutput(output string) error {
	if output != "" && output != "json" {
		return fmt.Errorf("--output %q: want json (or nothing for the default)", output)
	}
	return nil
}

// changedRoot is the root a change acted on; straitd always names it.
func changedRoot(resp caRootsResponse) caRoot {
	if resp.Changed != nil {
		return *resp.Changed
	}
	return caRoot{Fingerprint: "(not named by straitd)"}
}

// caCall sends one roots API request with straitd's admin token and decodes the answer. A
// refusal for the token is explained (adminToken.explain); other errors carry straitd's message.
func (g *globals) caCall(ctx context.Context, command, method, path string) (caRootsResponse, error) {
	var out caRootsResponse
	tok, err := g.loadAdminToken()
	if err != nil {
		return out, err
	}
	base := g.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimRight(base, "/")
	ctx, cancel := context.WithTimeout(ctx, caRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return out, fmt.Errorf("%s: building request: %w", command, err)
	}
	if tok.token != "" {
		req.Header.Set("Authorization", "Bearer "+tok.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, fmt.Errorf("%s: contacting straitd at %s (is it running?): %w", command, base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCAResponseBytes))
	if err != nil {
		return out, fmt.Errorf("%s: reading straitd's answer: %w", command, err)
	}
	if resp.StatusCode != http.StatusOK {
		var er embedded.ErrorResponse
		if json.Unmarshal(data, &er) != nil || len(er.Errors) == 0 {
			er.Errors = []string{fmt.Sprintf("straitd answered %s: %s", resp.Status, bytes.TrimSpace(data))}
		}
		apiErr := &embedded.APIError{Status: resp.StatusCode, Errors: er.Errors}
		if embedded.IsUnauthorized(apiErr) {
			return out, tok.explain(command, apiErr)
		}
		return out, fmt.Errorf("%s: %w", command, apiErr)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("%s: decoding straitd's answer: %w", command, err)
	}
	return out, nil
}

// printCARoots writes the roots as a table, in straitd's order (signing, staged, trusted).
func printCARoots(w io.Writer, roots []caRoot) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tSTATE\tSUBJECT\tNOT BEFORE\tNOT AFTER")
	for _, r := range roots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Fingerprint, r.State, r.Subject,
			r.NotBefore.UTC().Format(time.RFC3339), r.NotAfter.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func printCAJSON(w io.Writer, v caRootsResponse) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("rendering json: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
