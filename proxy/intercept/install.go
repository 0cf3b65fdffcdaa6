package intercept

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs one iptables tool (iptables, ip6tables, iptables-save, ip6tables-save,
// iptables-restore, ip6tables-restore) with args and stdin, and returns its standard output.
// Exec is the real one; tests may substitute their own.
type Runner func(ctx context.Context, stdin string, name string, args ...string) (string, error)

// Available reports why Install cannot work here with the auto backend, or nil when it can: the
// iptables tools run, or else nftables can be programmed through netlink.
func Available() error {
	ipt := IPTablesAvailable()
	if ipt == nil {
		return nil
	}
	if err := NFTAvailable(); err != nil {
		return fmt.Errorf("no backend: %w; %w", ipt, err)
	}
	return nil
}

// IPTablesAvailable reports why the iptables tools cannot be run, or nil when they can.
func IPTablesAvailable() error {
	for _, name := range []string{"iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"} {
		if _, err := lookPath(name); err != nil {
			return err
		}
	}
	return nil
}

// sbinDirs are searched after PATH (tests empty it).
var sbinDirs = []string{"/usr/sbin/", "/sbin/"}

// lookPath finds name on PATH or in /usr/sbin or /sbin (often not on a user's PATH).
func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range sbinDirs {
		if p, err := exec.LookPath(dir + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("finding %s (Debian package iptables): %w", name, err)
}

// Exec runs the named program from PATH (or /usr/sbin, /sbin).
func Exec(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	path, err := lookPath(name)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// tool returns the iptables program name of a family with suffix ("", "-save", "-restore").
func tool(fam Family, suffix string) string {
	if fam == IPv6 {
		return "ip6tables" + suffix
	}
	return "iptables" + suffix
}

// Options say how Install and Uninstall run.
type Options struct {
	// Families to change (default both IPv4 and IPv6).
	Families []Family
	// Backend programs the rules (default BackendAuto).
	Backend Backend
	// Run runs the iptables tools (default Exec).
	Run Runner
}

func (o Options) defaults() Options {
	if len(o.Families) == 0 {
		o.Families = []Family{IPv4, IPv6}
	}
	if o.Run == nil {
		o.Run = Exec
	}
	return o
}

// Install applies c's rules in the current network namespace for each family, replacing any
// rules a previous Install left (installing twice gives the same rules), with o's backend (auto:
// see SelectBackend).
//
// The iptables backend applies each family atomically by iptables-restore --noflush; other rules
// of the nat table are kept. The nftables backend replaces its own table (NFTable) of every
// family in one netlink transaction; other tables are kept.
func Install(ctx context.Context, c Config, o Options) error {
	o = o.defaults()
	backend, _, err := SelectBackend(o.Backend)
	if err != nil {
		return err
	}
	if backend == BackendNFTables {
		var plans []Plan
		for _, fam := range o.Families {
			p, err := BuildPlan(c, fam)
			if err != nil {
				return err
			}
			plans = append(plans, p)
		}
		return nftInstall(plans)
	}
	for _, fam := range o.Families {
		rules, err := Rules(c, fam)
		if err != nil {
			return err
		}
		if err := uninstall(ctx, fam, o.Run); err != nil {
			return err
		}
		if _, err := o.Run(ctx, rules, tool(fam, "-restore"), "--noflush"); err != nil {
			return fmt.Errorf("installing %s rules: %w", fam, err)
		}
	}
	return nil
}

// Uninstall removes every rule, chain and table Install created in the current network
// namespace, for each family, and nothing else. It succeeds when there is nothing to remove.
// With the auto backend it removes what either backend installed: the nftables table when
// nftables can be programmed, and the iptables chains when the iptables tools are there.
func Uninstall(ctx context.Context, o Options) error {
	o = o.defaults()
	backend := o.Backend
	if backend == "" {
		backend = BackendAuto
	}
	if _, _, err := SelectBackend(backend); err != nil {
		return err
	}
	var errs []error
	if backend == BackendNFTables || (backend == BackendAuto && NFTAvailable() == nil) {
		if err := nftUninstall(o.Families); err != nil {
			errs = append(errs, err)
		}
	}
	if backend == BackendNFTables || (backend == BackendAuto && IPTablesAvailable() != nil) {
		return errors.Join(errs...)
	}
	for _, fam := range o.Families {
		if err := uninstall(ctx, fam, o.Run); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ours reports whether chain is one Install creates.
func ours(chain string) bool {
	for _, c := range Chains {
		if c == chain {
			return true
		}
	}
	return false
}

// uninstall deletes the jumps into our chains from other chains, then flushes and deletes our
// chains, reading the current rules from iptables-save.
func uninstall(ctx context.Context, fam Family, run Runner) error {
	saved, err := run(ctx, "", tool(fam, "-save"), "-t", "nat")
	if err != nil {
		return fmt.Errorf("reading %s nat rules: %w", fam, err)
	}
	var deletes []string
	present := map[string]bool{}
	for _, line := range strings.Split(saved, "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, ":"); ok {
			if n, _, _ := strings.Cut(name, " "); ours(n) {
				present[n] = true
			}
			continue
		}
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			continue
		}
		chain, spec, _ := strings.Cut(rest, " ")
		if ours(chain) {
			continue // flushed below
		}
		fields := strings.Fields(spec)
		for i := 0; i+1 < len(fields); i++ {
			if (fields[i] == "-j" || fields[i] == "-g") && ours(fields[i+1]) {
				deletes = append(deletes, "-D "+chain+" "+spec)
				break
			}
		}
	}
	if len(deletes) == 0 && len(present) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, d := range deletes {
		b.WriteString(d + "\n")
	}
	for _, c := range Chains {
		if present[c] {
			fmt.Fprintf(&b, "-F %s\n", c)
		}
	}
	for _, c := range Chains {
		if present[c] {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
	}
	b.WriteString("COMMIT\n")
	if _, err := run(ctx, b.String(), tool(fam, "-restore"), "--noflush"); err != nil {
		return fmt.Errorf("removing %s rules: %w", fam, err)
	}
	return nil
}

// Installed reports whether any chain of ours exists in the family's nat table.
func Installed(ctx context.Context, fam Family, run Runner) (bool, error) {
	if run == nil {
		run = Exec
	}
	saved, err := run(ctx, "", tool(fam, "-save"), "-t", "nat")
	if err != nil {
		return false, fmt.Errorf("reading %s nat rules: %w", fam, err)
	}
	for _, c := range Chains {
		if strings.Contains(saved, ":"+c+" ") || strings.Contains(saved, " "+c+"\n") {
			return true, nil
		}
	}
	return false, nil
}
