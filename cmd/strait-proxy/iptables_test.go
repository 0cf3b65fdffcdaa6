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
	cmd.SetArgs([]string{"install", "--dry-run", "--proxy-uid", "2000", "--proxy-gid", "2001",
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
