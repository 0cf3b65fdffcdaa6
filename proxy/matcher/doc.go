// Package matcher owns Envoy's string and header matching for the proxy: it compiles
// envoy.type.matcher.v3.StringMatcher and RegexMatcher and envoy.config.route.v3.HeaderMatcher
// into values whose Match does not allocate, and it is the one place that decides what
// exact/prefix/suffix/contains/safe_regex, ignore_case, invert_match, present_match,
// range_match and treat_missing_header_as_empty mean. Routes (proxy/route), RBAC (proxy/authz)
// and SAN validation (proxy/tlsx) use it.
//
// Where those users differ — the regular-expression limits, whether ignore_case with safe_regex
// is refused, how ignore_case folds, two legacy header-matcher details — the difference is an
// Options field the user sets, so each keeps its behaviour and the difference stays visible in
// one place. Where a header's value comes from (an http.Request, RBAC's request view) is the
// user's business: Header.Match takes the value.
//
// Regular expressions are RE2 (Go's regexp, linear time). A safe_regex must match the whole
// input, as in Envoy. Errors name the offending field; unsupported fields are refused with
// xdsfield.Check, so the update carrying them is NACKed.
package matcher
