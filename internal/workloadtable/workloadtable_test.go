package workloadtable

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/ecdstable"
)

func TestRoundTrip(t *testing.T) {
	in := Table{TrustDomains: []string{"cluster.local", "old"}, Workloads: []Workload{
		{Name: "reviews-v1", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"10.0.0.7", "2001:db8::7"},
			App: "reviews", Version: "v1", CanonicalService: "reviews", CanonicalRevision: "v1", Cluster: "east", Sidecar: true},
		{Namespace: "data"},
	}}
	tc, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(Name, tc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("got %+v\nwant %+v", out, in)
	}
	again, _ := Encode(in)
	a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tc)
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again)
	if string(a) != string(b) {
		t.Error("encoding is not deterministic")
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		labels       map[string]string
		name, cs, cr string
	}{
		{map[string]string{"app": "a", "version": "v"}, "w", "a", "v"},
		{map[string]string{"app": "a", "app.kubernetes.io/name": "k", "app.kubernetes.io/version": "2"}, "w", "k", "2"},
		{map[string]string{"service.istio.io/canonical-name": "c", "service.istio.io/canonical-revision": "r", "app": "a"}, "w", "c", "r"},
		{nil, "w", "w", "latest"},
		{nil, "", "", "latest"},
	} {
		if cs, cr := Canonical(tc.labels, tc.name); cs != tc.cs || cr != tc.cr {
			t.Errorf("Canonical(%v, %q) = %q, %q; want %q, %q", tc.labels, tc.name, cs, cr, tc.cs, tc.cr)
		}
	}
}

// typedConfigOf wraps a hand-made value as the table's typed_config.
func typedConfigOf(t *testing.T, v map[string]any) *anypb.Any {
	t.Helper()
	s, err := structpb.NewStruct(v)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := ecdstable.Encode(TypeURL, s)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestDecodeRefuses(t *testing.T) {
	many := make([]any, MaxWorkloads+1)
	for i := range many {
		many[i] = map[string]any{}
	}
	addrs := make([]any, MaxAddresses+1)
	for i := range addrs {
		addrs[i] = "10.0.0.1"
	}
	for _, tc := range []struct {
		v    map[string]any
		want string
	}{
		{map[string]any{"other": 1.0}, `field "other" is not supported`},
		{map[string]any{"workloads": many}, "workloads: 10001, at most 10000"},
		{map[string]any{"workloads": []any{map[string]any{"addresses": addrs}}}, "workloads[0].addresses: 17 items, at most 16"},
		{map[string]any{"workloads": []any{map[string]any{"addresses": []any{"host.example"}}}}, "workloads[0].addresses: ParseAddr"},
		{map[string]any{"workloads": []any{map[string]any{"name": strings.Repeat("x", MaxValueLen+1)}}}, "workloads[0].name: 254 bytes, at most 253"},
		{map[string]any{"workloads": []any{map[string]any{"labels": map[string]any{}}}}, "workloads[0].labels: not supported"},
		{map[string]any{"workloads": []any{map[string]any{"sidecar": "yes"}}}, "workloads[0].sidecar: want a bool"},
		{map[string]any{"workloads": []any{"x"}}, "workloads[0]: want an object"},
		{map[string]any{"trustDomains": "x"}, "trustDomains: want a list"},
	} {
		_, err := Decode(Name, typedConfigOf(t, tc.v))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%.80v): %v, want %q", tc.v, err, tc.want)
		}
	}
	if _, err := Decode("other", typedConfigOf(t, map[string]any{})); err == nil {
		t.Error("another resource name decoded")
	}
	if _, err := Encode(Table{Workloads: make([]Workload, MaxWorkloads+1)}); err == nil {
		t.Error("a table beyond the limit encoded")
	}
}
