// Package nametable is the wire format of the DNS name table straitd sends each sidecar: the
// names the proxy may resolve (its Sidecar scope) and their addresses. It is the contract between
// controlplane/translate (which encodes it) and proxy/dns (which decodes it), as
// istio.networking.nds.v1.NameTable is between istiod and istio-agent.
//
// go-control-plane does not carry Istio's NDS type, so the table travels as an ECDS resource (an
// envoy.config.core.v3.TypedExtensionConfig, whose type the ADS server and its cache already know)
// named Name, whose typed_config is an xds.type.v3.TypedStruct with type_url TypeURL and a
// google.protobuf.Struct value:
//
//	{"hosts": {"reviews.default.svc.cluster.local": {"ips": ["240.240.12.7"],
//	                                                "altHosts": ["reviews", "reviews.default", "reviews.default.svc"]}}}
//
// An Envoy never requests it: Envoy asks ECDS only for names its listeners reference.
package nametable

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Name is the resource name of the name table, the only ECDS resource a sidecar asks for when
// its DNS proxy is on.
const Name = "strait.nametable"

// TypeURL identifies the table inside its TypedStruct.
const TypeURL = "type.strait.io/strait.dns.v1.NameTable"

// Limits on a decoded table, so that a bad resource cannot make the proxy allocate without bound.
const (
	MaxHosts    = 100000
	MaxIPs      = 64 // per host
	MaxAltHosts = 8  // per host
)

// Host is one name of the table with its addresses and the other names that resolve to them.
type Host struct {
	IPs      []string // IPv4 and IPv6 addresses
	AltHosts []string // short names valid from the proxy's namespace
}

// Table maps a fully qualified name (without trailing dot) to its entry.
type Table map[string]Host

// Encode returns the table as its ECDS resource. Its encoding is deterministic for equal tables.
func Encode(t Table) (*corev3.TypedExtensionConfig, error) {
	hosts := make(map[string]any, len(t))
	for name, h := range t {
		ips := make([]any, len(h.IPs))
		for i, ip := range h.IPs {
			ips[i] = ip
		}
		entry := map[string]any{"ips": ips}
		if len(h.AltHosts) > 0 {
			alts := make([]any, len(h.AltHosts))
			for i, a := range h.AltHosts {
				alts[i] = a
			}
			entry["altHosts"] = alts
		}
		hosts[name] = entry
	}
	v, err := structpb.NewStruct(map[string]any{"hosts": hosts})
	if err != nil {
		return nil, fmt.Errorf("encoding name table: %w", err)
	}
	a, err := anypb.New(&xdstypev3.TypedStruct{TypeUrl: TypeURL, Value: v})
	if err != nil {
		return nil, fmt.Errorf("encoding name table: %w", err)
	}
	return &corev3.TypedExtensionConfig{Name: Name, TypedConfig: a}, nil
}

// Decode parses a name table resource. Every address must parse; names are returned as sent.
func Decode(tec *corev3.TypedExtensionConfig) (Table, error) {
	if tec.GetName() != Name {
		return nil, fmt.Errorf("name table: resource name %q, want %q", tec.GetName(), Name)
	}
	var ts xdstypev3.TypedStruct
	if err := tec.GetTypedConfig().UnmarshalTo(&ts); err != nil {
		return nil, fmt.Errorf("name table: typed_config: %w", err)
	}
	if ts.GetTypeUrl() != TypeURL {
		return nil, fmt.Errorf("name table: typed_config.type_url %q, want %q", ts.GetTypeUrl(), TypeURL)
	}
	hosts := ts.GetValue().GetFields()["hosts"].GetStructValue().GetFields()
	if len(hosts) > MaxHosts {
		return nil, fmt.Errorf("name table: %d hosts, at most %d", len(hosts), MaxHosts)
	}
	out := make(Table, len(hosts))
	names := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f := hosts[name].GetStructValue().GetFields()
		ips, err := stringList(f["ips"], MaxIPs)
		if err != nil {
			return nil, fmt.Errorf("name table: host %q: ips: %w", name, err)
		}
		for _, ip := range ips {
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("name table: host %q: %w", name, err)
			}
		}
		alts, err := stringList(f["altHosts"], MaxAltHosts)
		if err != nil {
			return nil, fmt.Errorf("name table: host %q: altHosts: %w", name, err)
		}
		out[name] = Host{IPs: ips, AltHosts: alts}
	}
	return out, nil
}

func stringList(v *structpb.Value, limit int) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l := v.GetListValue()
	if l == nil {
		return nil, errors.New("want a list")
	}
	if len(l.GetValues()) > limit {
		return nil, fmt.Errorf("%d items, at most %d", len(l.GetValues()), limit)
	}
	out := make([]string, 0, len(l.GetValues()))
	for _, s := range l.GetValues() {
		str, ok := s.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, errors.New("want strings")
		}
		out = append(out, str.StringValue)
	}
	return out, nil
}
