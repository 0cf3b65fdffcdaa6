package extauthz

// This file holds what the HTTP (check.go, grpc.go) and network (network.go) checks share.

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// metadataNamespaces compiles the metadata_context_namespaces of the filter at path: each must
// be non-empty.
func metadataNamespaces(path string, nss []string) ([]string, error) {
	var out []string
	for i, ns := range nss {
		if ns == "" {
			return nil, fmt.Errorf("%s.metadata_context_namespaces[%d]: empty", path, i)
		}
		out = append(out, ns)
	}
	return out, nil
}

// metadataContext is the CheckRequest's metadata_context: the dynamic metadata that get (nil:
// none) returns for each of namespaces, nil when none has any.
func metadataContext(namespaces []string, get func(namespace string) *structpb.Struct) *corev3.Metadata {
	if get == nil {
		return nil
	}
	var md *corev3.Metadata
	for _, ns := range namespaces {
		if s := get(ns); s != nil {
			if md == nil {
				md = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
			}
			md.FilterMetadata[ns] = s
		}
	}
	return md
}

// withTimeout is ctx bounded by the check's timeout d, or ctx itself when d is not positive.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return ctx, func() {}
}
