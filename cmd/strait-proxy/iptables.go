package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/proxy/intercept"
)

// iptablesCmd is `strait-proxy iptables install|uninstall`: istio-iptables for the current
// network namespace, with the iptables tools or, without them, nftables programmed through
// netlink (--backend).
func iptablesCmd() *cobra.Command {
	var c intercept.Config
	var dryRun, ipv4Only bool
	var excludeIn, excludeOutPorts string
	var inbound, includeCIDRs, excludeCIDRs, dnsServers, backend string
	parse := func() (intercept.Options, error) {
		b, err := intercept.ParseBackend(backend)
		if err != nil {
			return intercept.Options{}, fmt.Errorf("--backend: %w", err)
		}
		c.InboundPorts = split(inbound)
		c.IncludeOutboundCIDRs = split(includeCIDRs)
		c.ExcludeOutboundCIDRs = split(excludeCIDRs)
		c.DNSServers = split(dnsServers)
		if c.ExcludeInboundPorts, err = ports(excludeIn); err != nil {
			return intercept.Options{}, fmt.Errorf("--exclude-inbound-ports: %w", err)
		}
		if c.ExcludeOutboundPorts, err = ports(excludeOutPorts); err != nil {
			return intercept.Options{}, fmt.Errorf("--exclude-outbound-ports: %w", err)
		}
		o := intercept.Options{Backend: b}
		if ipv4Only {
			o.Families = []intercept.Family{intercept.IPv4}
		}
		return o, c.Validate()
	}
	families := func(o intercept.Options) []intercept.Family {
		if len(o.Families) == 0 {
			return []intercept.Family{intercept.IPv4, intercept.IPv6}
		}
		return o.Families
	}
	// command runs run with the parsed options, or with --dry-run prints what it would do. An
	// automatic backend choice is logged on stderr; uninstall keeps auto (it removes what either
	// backend left).
	command := func(use, short string, dry func(io.Writer, intercept.Options) error, run func(context.Context, intercept.Options) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := parse()
			if err != nil {
				return err
			}
			if use == "install" {
				chosen, why, err := intercept.SelectBackend(o.Backend)
				if err != nil {
					return err
				}
				if why != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "strait-proxy iptables: backend %s: %s\n", chosen, why)
				}
				o.Backend = chosen
			}
			if dryRun {
				return dry(cmd.OutOrStdout(), o)
			}
			return run(cmd.Context(), o)
		}}
	}
	install := command("install", "Redirect this network namespace's TCP traffic to the sidecar (15001 out, 15006 in)",
		func(w io.Writer, o intercept.Options) error {
			for _, fam := range families(o) {
				if o.Backend == intercept.BackendNFTables {
					rules, err := intercept.NFTRules(c, fam)
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "# %s (nftables through netlink, all families in one transaction)\n%s", fam, rules)
					continue
				}
				rules, err := intercept.Rules(c, fam)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "# %s (%s --noflush)\n%s", fam, restoreName(fam), rules)
			}
			return nil
		},
		func(ctx context.Context, o intercept.Options) error { return intercept.Install(ctx, c, o) })
	uninstall := command("uninstall", "Remove every rule and chain `install` created",
		func(w io.Writer, o intercept.Options) error {
			if o.Backend != intercept.BackendNFTables {
				fmt.Fprintf(w, "# would remove the jumps to and the chains %s\n", strings.Join(intercept.Chains, ", "))
			}
			if o.Backend != intercept.BackendIPTables {
				for _, fam := range families(o) {
					fmt.Fprintf(w, "# would delete the nftables table %s %s\n", fam.NFTFamily(), intercept.NFTable)
				}
			}
			return nil
		},
		intercept.Uninstall)
	cmd := &cobra.Command{
		Use:   "iptables",
		Short: "Install or remove traffic interception in the current network namespace (as istio-iptables)",
	}
	f := cmd.PersistentFlags()
	f.BoolVar(&dryRun, "dry-run", false, "print the rules instead of applying them")
	f.BoolVar(&ipv4Only, "ipv4-only", false, "leave IPv6 alone (ip6tables, or the ip6 nftables table)")
	f.StringVar(&backend, "backend", string(intercept.BackendAuto),
		"auto, iptables (iptables-restore) or nftables (netlink, no binaries); auto: iptables when its tools are found (PATH, /usr/sbin, /sbin), else nftables")
	f.IntVar(&c.ProxyUID, "proxy-uid", 1337, "uid of the proxy: its traffic is not redirected")
	f.IntVar(&c.ProxyGID, "proxy-gid", 1337, "gid of the proxy: its traffic is not redirected")
	f.StringVar(&inbound, "include-inbound-ports", "*", "inbound ports to redirect, comma-separated, or *")
	f.StringVar(&excludeIn, "exclude-inbound-ports", "", "inbound ports never redirected, comma-separated (the proxy's own ports always are)")
	f.StringVar(&includeCIDRs, "include-outbound-cidrs", "*", "outbound destinations to redirect, comma-separated CIDRs, or *")
	f.StringVar(&excludeCIDRs, "exclude-outbound-cidrs", "", "outbound destinations never redirected, comma-separated CIDRs")
	f.StringVar(&excludeOutPorts, "exclude-outbound-ports", "", "outbound destination ports never redirected, comma-separated")
	f.BoolVar(&c.RedirectDNS, "redirect-dns", false, "send the application's DNS queries (port 53) to the proxy's DNS port")
	f.StringVar(&dnsServers, "dns-servers", "", "with --redirect-dns: only queries to these addresses, comma-separated (default: any)")
	cmd.AddCommand(install, uninstall)
	return cmd
}

func restoreName(f intercept.Family) string {
	if f == intercept.IPv6 {
		return "ip6tables-restore"
	}
	return "iptables-restore"
}

// split splits a comma-separated list, dropping empty items.
func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ports parses a comma-separated port list.
func ports(s string) ([]uint16, error) {
	var out []uint16
	for _, p := range split(s) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want 1-65535", p)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}
