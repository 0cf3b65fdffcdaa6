package ratelimit

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// ByMaxValues is max_dynamic_descriptors of a Local rule with by: the distinct values (client
// addresses, header values) each proxy keeps a bucket for, per combination of present by
// attributes; past it the least recently seen value's bucket is dropped and that value starts
// again with a full budget (Envoy's default of 20 suits a handful of tenants, not clients).
const ByMaxValues = 10000

// remoteAddressKey is the descriptor key of Envoy's remote_address action.
const remoteAddressKey = "remote_address"

// byEntry is what one by attribute adds to a rule's descriptor: the action that produces its
// entry, the entry's key, and whether a request may lack it (a header: the entry is then left
// out, skip_if_absent).
type byEntry struct {
	action   *routev3.RateLimit_Action
	key      string
	optional bool
}

// byEntries returns the entries of a rule's by attributes (validated: remote.ip or
// request.headers[NAME]), in order. A header's entry has the attribute as its key.
func byEntries(by []string) []byEntry {
	var out []byEntry
	for _, a := range by {
		if a == config.RateLimitByRemoteIP {
			out = append(out, byEntry{key: remoteAddressKey, action: &routev3.RateLimit_Action{
				ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}}})
			continue
		}
		k, err := config.ParseConditionKey(a)
		if err != nil || k.Attribute != config.AttrRequestHeaders {
			continue // refused by validation
		}
		out = append(out, byEntry{key: a, optional: true, action: &routev3.RateLimit_Action{
			ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
				HeaderName: k.Names[0], DescriptorKey: a, SkipIfAbsent: true}}}})
	}
	return out
}

// byShapes returns the key lists that by entries can append to a rule's descriptor: one per
// combination of present optional entries (the mandatory ones always there), in order; a single
// empty list without by. Each is a budget per distinct value list: requests without a header
// share the budget of the other attributes' values (all of them one budget when none is left).
func byShapes(entries []byEntry) [][]string {
	shapes := [][]string{nil}
	for _, e := range entries {
		next := make([][]string, 0, 2*len(shapes))
		for _, s := range shapes {
			with := append(append([]string(nil), s...), e.key)
			next = append(next, with)
			if e.optional {
				next = append(next, s)
			}
		}
		shapes = next
	}
	return shapes
}
