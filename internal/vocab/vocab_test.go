package vocab

import (
	"strconv"
	"testing"
)

func TestRetryConditions(t *testing.T) {
	seen := map[string]bool{}
	var all RetryOn
	for _, c := range RetryConditions() {
		if seen[c.Name] || c.On == 0 || all&c.On != 0 {
			t.Errorf("%q: duplicate name or bit", c.Name)
		}
		seen[c.Name] = true
		all |= c.On
		if got, ok := LookupRetryCondition(c.Name); !ok || got != c {
			t.Errorf("LookupRetryCondition(%q) = %v, %v", c.Name, got, ok)
		}
	}
	if on, err := ParseRetryOn(all.String()); err != nil || on != all {
		t.Errorf("ParseRetryOn(String()) = %v, %v; want %v", on, err, all)
	}
	c := RetryConditions()
	c[0].Name = "changed"
	if RetryConditions()[0].Name != "5xx" {
		t.Error("RetryConditions returns the package's own array")
	}
}

func TestParseRetryOn(t *testing.T) {
	on, err := ParseRetryOn(" 5xx, ,reset-before-request,unavailable ")
	if err != nil || on != Retry5xx|RetryResetBeforeRequest|RetryGrpcUnavailable {
		t.Errorf("got %v, %v", on, err)
	}
	if _, err := ParseRetryOn("5xx,reset-after-request"); err == nil {
		t.Error("unknown condition accepted")
	}
	if got := RetryOnList(RetryConnectFailure, RetryGrpcUnavailable, RetryGrpcCancelled); got != "connect-failure,unavailable,cancelled" {
		t.Errorf("RetryOnList = %q", got)
	}
}

func TestGRPCStatusRetryOn(t *testing.T) {
	for status, want := range map[string]RetryOn{
		"1": RetryGrpcCancelled, "4": RetryGrpcDeadlineExceeded, "8": RetryGrpcResourceExhausted,
		"13": RetryGrpcInternal, "14": RetryGrpcUnavailable, "0": 0, "2": 0, "-1": 0, "x": 0, "": 0,
	} {
		if got := GRPCStatusRetryOn(status); got != want {
			t.Errorf("GRPCStatusRetryOn(%q) = %v, want %v", status, got, want)
		}
	}
	for _, c := range RetryConditions() {
		if c.GRPC() != (c.On >= RetryGrpcCancelled) {
			t.Errorf("%q: GRPC() = %v", c.Name, c.GRPC())
		}
	}
}

func TestClusterNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want ClusterName
		ok   bool
	}{
		{OutboundClusterName(9080, "v1", "reviews.default.svc.cluster.local"), ClusterName{Outbound, 9080, "v1", "reviews.default.svc.cluster.local"}, true},
		{OutboundClusterName(80, "", "a.b"), ClusterName{Outbound, 80, "", "a.b"}, true},
		{InboundClusterName(9080), ClusterName{Inbound, 9080, "", ""}, true},
		{PassthroughCluster, ClusterName{}, false},
		{"outbound|x||a", ClusterName{}, false},
		{"outbound|80|a", ClusterName{}, false},
		{"sideways|80||a", ClusterName{}, false},
	} {
		got, ok := ParseClusterName(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseClusterName(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
		if ok && got.String() != tc.name {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.name)
		}
	}
	if InboundClusterName(9080) != "inbound|9080||" || OutboundClusterName(9080, "", "h") != "outbound|9080||h" {
		t.Error("cluster names differ from Istio's")
	}
}

func TestPorts(t *testing.T) {
	for _, p := range ProxyListenPorts() {
		if !ReservedPort(uint32(p)) {
			t.Errorf("proxy port %d not reserved", p)
		}
	}
	for _, p := range []uint32{DebugPort, DNSPort} {
		if !ReservedPort(p) {
			t.Errorf("port %d not reserved", p)
		}
	}
	if ReservedPort(8080) || ReservedPort(XDSPlaintextPort) {
		t.Error("a workload or control-plane port is reserved")
	}
}

func TestGRPCStatus(t *testing.T) {
	for s, want := range map[string]int{"OK": 0, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16, "14": 14, "0": 0,
		"17": -1, "-1": -1, "unavailable": -1, "": -1} {
		code, ok := GRPCStatus(s)
		if want < 0 && ok || want >= 0 && (!ok || code != uint32(want)) {
			t.Errorf("GRPCStatus(%q) = %d, %v; want %d", s, code, ok, want)
		}
	}
	for _, c := range RetryConditions() {
		if c.GRPC() {
			if code, ok := GRPCStatus(strconv.Itoa(c.GRPCStatus)); !ok || grpcStatusNames[code] == "" {
				t.Errorf("%s: grpc-status %d unknown", c.Name, c.GRPCStatus)
			}
		}
	}
}
