package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/spf13/cobra"
)

func (pc *proxyConfig) bootstrapCmd() *cobra.Command {
	var f pcFlags
	cmd := &cobra.Command{
		Use:     "bootstrap PROXY",
		Aliases: []string{"b"},
		Short:   "Show a proxy's bootstrap: node ID, xDS server and admin address; -o json|yaml: the whole bootstrap section",
		RunE: sectionRunE(pc, &f, "bootstrap", func(d *configDump) *adminv3.BootstrapConfigDump { return d.bootstrap },
			func(b *adminv3.BootstrapConfigDump, src *pcSource) error {
				return writeBootstrap(pc.g.stdout, b, src.admin)
			}),
	}
	addCommonFlags(cmd, &f)
	cmd.Flags().Lookup("output").Usage = "output format: short (node ID, xDS server, admin address), json or yaml (the bootstrap section)"
	return cmd
}

// writeBootstrap prints the short form of a bootstrap: who the proxy is and where it connects.
// admin is the admin address the dump was read from ("" for a file), shown when the bootstrap
// does not name its own.
func writeBootstrap(w io.Writer, b *adminv3.BootstrapConfigDump, admin string) error {
	boot := b.GetBootstrap()
	n := boot.GetNode()
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", k, v)
	}
	row("Node ID", n.GetId())
	row("Cluster", n.GetCluster())
	agent := strings.TrimSpace(n.GetUserAgentName() + " " + n.GetUserAgentVersion())
	row("Proxy", agent)
	ads := boot.GetDynamicResources().GetAdsConfig()
	var servers []string
	for _, g := range ads.GetGrpcServices() {
		switch {
		case g.GetGoogleGrpc() != nil:
			servers = append(servers, g.GetGoogleGrpc().GetTargetUri())
		case g.GetEnvoyGrpc() != nil:
			servers = append(servers, "cluster "+g.GetEnvoyGrpc().GetClusterName())
		}
	}
	xdsServer := strings.Join(servers, ", ")
	if xdsServer != "" && ads != nil {
		xdsServer += " (" + ads.GetApiType().String() + ")"
	}
	row("xDS server", xdsServer)
	adminAddr := admin
	if sa := boot.GetAdmin().GetAddress().GetSocketAddress(); sa != nil {
		adminAddr = net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
	}
	row("Admin address", adminAddr)
	if md := n.GetMetadata().GetFields(); md != nil {
		for _, k := range []string{"NAMESPACE", "SERVICE_ACCOUNT", "INTERCEPTION_MODE"} {
			if v := md[k].GetStringValue(); v != "" {
				row(k[:1]+strings.ReplaceAll(strings.ToLower(k[1:]), "_", " "), v)
			}
		}
	}
	return tw.Flush()
}

// logLevels are the levels `proxy-config log --level` accepts: Envoy's names, which the proxy's
// /logging maps onto its own four.
var logLevels = []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}

func (pc *proxyConfig) logCmd() *cobra.Command {
	var level, socket string
	cmd := &cobra.Command{
		Use:   "log PROXY [--level LEVEL]",
		Short: "Show or change a proxy's log level (its admin /logging)",
		Long: `log reads a proxy's log level, or sets it with --level, through the proxy's admin /logging endpoint
and prints its answer as Envoy does ("active loggers: ...").

strait-proxy serves /logging only on its admin socket, to the proxy's own user and root (a local
user who is not the proxy's must not change it). The socket's path is read from the proxy's
/server_info, or given with --admin-socket; run this command as the proxy's user or root. A proxy
without a socket (an Envoy) is asked on its admin address.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lv, err := parseLogLevel(level)
			if err != nil {
				return err
			}
			t, err := pc.resolve(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if socket == "" {
				socket = pc.adminSocket(cmd.Context(), t.admin)
			}
			body, err := pc.logging(cmd.Context(), t.admin, socket, lv)
			if err != nil {
				return err
			}
			_, err = io.WriteString(pc.g.stdout, body)
			return err
		},
	}
	cmd.Flags().StringVar(&level, "level", "", "set the level: "+strings.Join(logLevels, ", ")+` (or "strait:LEVEL"); none: show the current level`)
	cmd.Flags().StringVar(&socket, "admin-socket", "", "the proxy's admin socket `PATH` (default: what its /server_info reports)")
	return cmd
}

// parseLogLevel checks a --level value: LEVEL or LOGGER:LEVEL with the proxy's one logger
// ("strait"; Envoy's "default" too, as istioctl writes it).
func parseLogLevel(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	lv := strings.ToLower(s)
	if logger, l, ok := strings.Cut(lv, ":"); ok {
		if logger != "strait" && logger != "default" {
			return "", fmt.Errorf("unknown logger %q: strait-proxy has one logger, strait", logger)
		}
		lv = l
	}
	for _, ok := range logLevels {
		if lv == ok {
			return lv, nil
		}
	}
	return "", fmt.Errorf("unknown log level %q: want one of %s", s, strings.Join(logLevels, ", "))
}

// adminSocket asks the proxy's /server_info where its admin socket is ("" when it has none or
// does not say).
func (pc *proxyConfig) adminSocket(ctx context.Context, admin string) string {
	b, err := pc.adminGet(ctx, admin, "/server_info")
	if err != nil {
		return ""
	}
	var info struct {
		AdminSocket string `json:"admin_socket"`
	}
	if json.Unmarshal(b, &info) != nil {
		return ""
	}
	return info.AdminSocket
}

// logging asks /logging (POST with ?level= to change it) on the admin socket, or on the admin
// address when socket is "".
func (pc *proxyConfig) logging(ctx context.Context, admin, socket, level string) (string, error) {
	client, base, where := pc.client, "http://"+admin, "the proxy admin at "+admin
	if socket != "" {
		client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			},
		}}
		base, where = "http://localhost", "the proxy's admin socket "+socket
	}
	method, path := http.MethodGet, "/logging"
	if level != "" {
		method, path = http.MethodPost, "/logging?"+url.Values{"level": {level}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return "", fmt.Errorf("building the /logging request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking %s for /logging (run as the proxy's user or root): %w", where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading /logging from %s: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %s for /logging: %s", where, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
