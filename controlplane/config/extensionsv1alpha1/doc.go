// Package extensionsv1alpha1 holds Strait's own API kinds of group extensions.strait.io, version
// v1alpha1, as protobuf messages so that they fit config.Object's Spec: RateLimit, the
// first-class rate limit policy (docs/ratelimit.md). ratelimit.pb.go is generated from
// ratelimit.proto; see its header.
package extensionsv1alpha1
