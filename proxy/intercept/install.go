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

// Available reports why the iptables tools cannot be run, or nil when they can.
func Available() error {
	for _, name := range []string{"iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"} {
		if _, err := lookPath(name); err != nil {
			return err
		}
	}
	return nil
}

// lookPath finds name on PATH or in /usr/sbin or /sbin (often not on a user's PATH).
func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin/", "/sbin/"} {
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
	// Run runs the tools (default Exec).
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
// rules a previous Install left (installing twice gives the same rules). Each family is applied
// atomically by iptables-restore --noflush; other rules of the nat table are kept.
func Install(ctx context.Context, c Config, o Options) error {
	o = o.defaults()
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

// Uninstall removes every rule and chain Install created in the current network namespace, for
// each family, and nothing else. It succeeds when there is nothing to remove.
func Uninstall(ctx context.Context, o Options) error {
	o = o.defaults()
	var errs []error
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
