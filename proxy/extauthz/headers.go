package extauthz

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// Action is how a HeaderOp changes a header.
type Action uint8

const (
	// Set replaces every value of the header, or adds the header.
	Set Action = iota
	// Append joins the value to the header's existing values with "," (Envoy's appendCopy), or
	// adds the header.
	Append
	// Add adds the value as one more field line of the header.
	Add
	// AddIfAbsent adds the header only when it is absent.
	AddIfAbsent
	// OverwriteIfExists replaces the header's values only when it is present.
	OverwriteIfExists
)

// HeaderOp is one header change asked for by the authorization service. Name is lower case.
type HeaderOp struct {
	Name, Value string
	Action      Action
}

// QueryParam is a query parameter to set on the request (unescaped key and value).
type QueryParam struct{ Key, Value string }

// ApplyHeaders applies ops to h in order and reports whether any changed h. It serves both the
// upstream request's headers and the downstream response's.
func ApplyHeaders(h *httpmsg.Header, ops []HeaderOp) (changed bool) {
	for _, op := range ops {
		if applyHeader(h, op) {
			changed = true
		}
	}
	return changed
}

func applyHeader(h *httpmsg.Header, op HeaderOp) bool {
	present := h.Has(op.Name)
	switch op.Action {
	case Set:
		h.Set(op.Name, op.Value)
	case Append:
		if !present {
			h.Add(op.Name, op.Value)
			return true
		}
		var b strings.Builder
		for i := h.Index(op.Name, 0); i >= 0; i = h.Index(op.Name, i+1) {
			_, v := h.Field(i)
			b.Write(v)
			b.WriteByte(',')
		}
		b.WriteString(op.Value)
		h.Set(op.Name, b.String())
	case Add:
		h.Add(op.Name, op.Value)
	case AddIfAbsent:
		if present {
			return false
		}
		h.Add(op.Name, op.Value)
	case OverwriteIfExists:
		if !present {
			return false
		}
		h.Set(op.Name, op.Value)
	default:
		return false
	}
	return true
}

// RemoveHeaders removes the named (lower-case) headers from h and reports whether any was there.
func RemoveHeaders(h *httpmsg.Header, names []string) (changed bool) {
	for _, n := range names {
		if h.Del(n) > 0 {
			changed = true
		}
	}
	return changed
}

// MutateQuery returns rawQuery with set applied (every occurrence of a key replaced by one
// key=value, in place of the first; new keys appended) and the keys in remove deleted. Keys
// compare after unescaping; untouched parameters keep their encoding. changed reports a
// difference.
func MutateQuery(rawQuery string, set []QueryParam, remove []string) (out string, changed bool) {
	if len(set) == 0 && len(remove) == 0 {
		return rawQuery, false
	}
	var parts []string
	if rawQuery != "" {
		parts = strings.Split(rawQuery, "&")
	}
	keyOf := func(p string) string {
		k, _, _ := strings.Cut(p, "=")
		if u, err := url.QueryUnescape(k); err == nil {
			return u
		}
		return k
	}
	for _, r := range remove {
		kept := parts[:0]
		for _, p := range parts {
			if keyOf(p) != r {
				kept = append(kept, p)
			}
		}
		parts = kept
	}
	for _, s := range set {
		enc := url.QueryEscape(s.Key) + "=" + url.QueryEscape(s.Value)
		kept, done := parts[:0], false
		for _, p := range parts {
			if keyOf(p) != s.Key {
				kept = append(kept, p)
			} else if !done {
				kept, done = append(kept, enc), true
			}
		}
		parts = kept
		if !done {
			parts = append(parts, enc)
		}
	}
	out = strings.Join(parts, "&")
	return out, out != rawQuery
}

// validName reports whether name is a header field name net/http can send.
func validName(name string) bool { return httpguts.ValidHeaderFieldName(name) }

// validValue reports whether v is a header field value net/http can send (no CR, LF, NUL or
// other control characters but tab).
func validValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }

// forbidden reports whether the authorization service may not set, remove or pass on this
// header (lower case): the request's target and framing, and connection-specific headers.
func forbidden(name string) bool {
	if strings.HasPrefix(name, ":") {
		return true
	}
	switch name {
	case "host", "content-length", "transfer-encoding", "te", "trailer", "connection", "keep-alive",
		"proxy-connection", "upgrade", "proxy-authenticate":
		return true
	}
	return false
}

// sanitize replaces each byte of s that is not part of valid UTF-8 with '!' (Envoy's
// MessageUtil::sanitizeUtf8String), so that s can be a protobuf string.
func sanitize(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			b = append(b, '!')
			i++
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
	}
	return string(b)
}

// opsFromOptions converts a reply's HeaderValueOptions (see the package doc for append).
// forRequest selects how append adds to an existing header: joined with "," on a request,
// as another field line on a response. Forbidden names are skipped; invalid ones are skipped
// or, when strict, reported.
func opsFromOptions(opts []*corev3.HeaderValueOption, forRequest, strict bool) (ops []HeaderOp, invalid bool) {
	for _, o := range opts {
		h := o.GetHeader()
		if h == nil {
			continue
		}
		name := strings.ToLower(h.GetKey())
		value := h.GetValue()
		if value == "" && len(h.GetRawValue()) > 0 {
			value = string(h.GetRawValue())
		}
		if !validName(name) || !validValue(value) {
			if strict {
				return nil, true
			}
			continue
		}
		if forbidden(name) {
			continue
		}
		op := HeaderOp{Name: name, Value: value, Action: Set}
		switch {
		case o.GetAppend() != nil:
			if o.GetAppend().GetValue() {
				op.Action = Add
				if forRequest {
					op.Action = Append
				}
			}
		case o.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
			op.Action = AddIfAbsent
		case o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			op.Action = OverwriteIfExists
		}
		ops = append(ops, op)
	}
	return ops, false
}

// removals filters a reply's headers_to_remove: pseudo-headers, Host and the framing headers
// are never removed, nor are invalid names.
func removals(names []string) []string {
	var out []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || !validName(n) || forbidden(n) {
			continue
		}
		out = append(out, n)
	}
	return out
}
