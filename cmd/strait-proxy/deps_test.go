package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanDependencies keeps the proxy free of control-plane dependencies: it must not link
// client-go, bbolt, the Prometheus client or anything under controlplane/.
func TestLeanDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"k8s.io/client-go", "go.etcd.io/bbolt", "github.com/prometheus/client_golang", "github.com/strait-mesh/strait/controlplane"}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("strait-proxy links %s", pkg)
			}
		}
	}
}

func TestMetaFromEnv(t *testing.T) {
	m := metaFromEnv([]string{"ISTIO_META_CLUSTER_ID=Kubernetes", "STRAIT_META_NETWORK=net1", "HOME=/root", "ISTIO_META_=x"})
	if len(m) != 2 || m["CLUSTER_ID"] != "Kubernetes" || m["NETWORK"] != "net1" {
		t.Fatalf("meta = %v", m)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10, "1000": 1000, "10B": 10, "off": 1<<63 - 1} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "12MB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}
