package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/intercept"
)

// TestIptablesDryRun checks that `iptables install --dry-run` parses its flags into the rules it
// prints, for both families, and changes nothing (it needs no root).
func TestIptablesDryRun(t *testing.T) {
	cmd := iptablesCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"install", "--dry-run", "--backend", "iptables", "--proxy-uid", "2000", "--proxy-gid", "2001",
		"--include-inbound-ports", "9080,8080", "--exclude-outbound-cidrs", "10.0.0.0/8,fd00::/8",
		"--exclude-outbound-ports", "5432"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	c := intercept.Config{ProxyUID: 2000, ProxyGID: 2001, InboundPorts: []string{"9080", "8080"},
		IncludeOutboundCIDRs: []string{"*"}, ExcludeOutboundCIDRs: []string{"10.0.0.0/8", "fd00::/8"},
		ExcludeOutboundPorts: []uint16{5432}}
	for _, fam := range []intercept.Family{intercept.IPv4, intercept.IPv6} {
		want, err := intercept.Rules(c, fam)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run output lacks the %s rules:\n%s\nwant:\n%s", fam, out.String(), want)
		}
	}
	for _, bad := range [][]string{
		{"install", "--dry-run", "--exclude-outbound-cidrs", "10.0.0.0/33"},
		{"install", "--dry-run", "--exclude-inbound-ports", "70000"},
		{"install", "--dry-run", "--include-inbound-ports", "x"},
		{"install", "--dry-run", "--backend", "ebpf"},
		{"uninstall", "--dry-run", "--backend", ""},
	} {
		cmd := iptablesCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(bad)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// TestIptablesBackendFlag checks --backend: nftables prints the nft tables of the same flags,
// uninstall names what it would delete, and auto logs its choice on stderr.
func TestIptablesBackendFlag(t *testing.T) {
	run := func(args ...string) (string, string) {
		t.Helper()
		cmd := iptablesCmd()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String(), errOut.String()
	}
	out, _ := run("install", "--dry-run", "--backend", "nftables", "--redirect-dns", "--exclude-inbound-ports", "22", "--ipv4-only")
	want, err := intercept.NFTRules(intercept.Config{RedirectDNS: true, ExcludeInboundPorts: []uint16{22}}, intercept.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, want) || strings.Contains(out, "table ip6") {
		t.Errorf("nftables dry run:\n%s\nwant only:\n%s", out, want)
	}
	out, _ = run("uninstall", "--dry-run", "--backend", "nftables")
	if !strings.Contains(out, "table ip istio-proxy-nat") || !strings.Contains(out, "table ip6 istio-proxy-nat") || strings.Contains(out, "STRAIT_") {
		t.Errorf("nftables uninstall dry run:\n%s", out)
	}
	out, _ = run("uninstall", "--dry-run")
	if !strings.Contains(out, "STRAIT_OUTPUT") || !strings.Contains(out, "istio-proxy-nat") {
		t.Errorf("auto uninstall dry run should name both backends' objects:\n%s", out)
	}
	out, logged := run("install", "--dry-run")
	chosen, why, err := intercept.SelectBackend(intercept.BackendAuto)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged, "backend "+string(chosen)+": "+why) {
		t.Errorf("auto did not log its choice %s: %q", chosen, logged)
	}
	if (chosen == intercept.BackendNFTables) != strings.Contains(out, "table ip istio-proxy-nat") {
		t.Errorf("auto chose %s but printed:\n%s", chosen, out)
	}
}
