// Package httppath normalizes request paths the way Envoy's HTTP connection manager does before
// any filter or route sees them, with the options Istio's MeshConfig pathNormalization selects:
//
//   - Canonicalize is normalize_path (Istio's BASE): percent-encoded unreserved characters
//     (ALPHA, DIGIT, "-", ".", "_", "~") are decoded once, backslashes become slashes, and "."
//     and ".." segments are resolved as RFC 3986 section 5.2.4 describes;
//   - MergeSlashes is merge_slashes (MERGE_SLASHES);
//   - UnescapeSlashes is path_with_escaped_slashes_action UNESCAPE_AND_FORWARD
//     (DECODE_AND_MERGE_SLASHES): %2F and %5C, in either case, become "/" and "\".
//
// Envoy applies them in the order escaped slashes, normalize_path, merge_slashes (Normalize does
// exactly that), to the path only: the query is never changed. The result is what routing,
// authorization and the upstream request all see. The functions take and return the path
// without its query; they allocate only when they change something.
package httppath

import (
	"errors"
	"strings"

	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Errors of Canonicalize and NormalizeURI; the connection manager answers them with 400.
var (
	// ErrEscapedSlash is a path with %2F or %5C under REJECT_REQUEST.
	ErrEscapedSlash = errors.New("path contains an escaped slash")
	// ErrNotAbsolute is a path that does not start with "/".
	ErrNotAbsolute = errors.New("path does not start with /")
	// ErrNUL is a path containing %00 (or a raw NUL), which Envoy (and so Istio) always rejects.
	ErrNUL = errors.New("path contains %00")
)

// Options select the normalizations of one connection manager.
type Options struct {
	// Canonicalize is normalize_path.
	Canonicalize bool
	// MergeSlashes is merge_slashes.
	MergeSlashes bool
	// UnescapeSlashes decodes %2F and %5C first (UNESCAPE_AND_FORWARD).
	UnescapeSlashes bool
	// RejectEscapedSlashes refuses a path with %2F or %5C (REJECT_REQUEST).
	RejectEscapedSlashes bool
}

// OptionsFor returns the path options of a connection manager's configuration.
func OptionsFor(m *hcmv3.HttpConnectionManager) Options {
	a := m.GetPathWithEscapedSlashesAction()
	return Options{
		Canonicalize:         m.GetNormalizePath().GetValue(),
		MergeSlashes:         m.GetMergeSlashes(),
		UnescapeSlashes:      a == hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD,
		RejectEscapedSlashes: a == hcmv3.HttpConnectionManager_REJECT_REQUEST,
	}
}

// NormalizeURI applies o to the path of an origin-form request URI ("/path?query#fragment"), as
// the connection manager does before any filter: the fragment, which a client must not send, is
// dropped, the query is kept as it is, and the path is normalized (Normalize).
func NormalizeURI(uri string, o Options) (string, error) {
	if plainURI(uri) {
		return uri, nil // the common case, in one pass
	}
	return normalizeURI(uri, o)
}

// normalizeURI is NormalizeURI without its fast path.
func normalizeURI(uri string, o Options) (string, error) {
	path, query, hasQuery := strings.Cut(uri, "?")
	cut := false // a fragment was dropped
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path, hasQuery, cut = path[:i], false, true
	} else if i := strings.IndexByte(query, '#'); i >= 0 {
		query, cut = query[:i], true
	}
	if o.RejectEscapedSlashes && HasEscapedSlash(path) {
		return "", ErrEscapedSlash
	}
	norm, err := Normalize(path, o)
	switch {
	case err != nil:
		return "", err
	case norm == path && !cut:
		return uri, nil // the common case: nothing to rebuild
	case hasQuery:
		return norm + "?" + query, nil
	}
	return norm, nil
}

// UpperMethod reports whether a method has no lower-case letters: Istio's normalization refuses
// the others with 400, since "get" is not GET to an authorization policy.
func UpperMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return false
		}
	}
	return true
}

// Normalize applies o to path in Envoy's order. A path with %00 is refused whatever o says.
func Normalize(path string, o Options) (string, error) {
	if hasNUL(path) {
		return "", ErrNUL
	}
	if o.UnescapeSlashes {
		path, _ = UnescapeSlashes(path)
	}
	if o.Canonicalize {
		var err error
		if path, err = Canonicalize(path); err != nil {
			return "", err
		}
	}
	if o.MergeSlashes {
		path = MergeSlashes(path)
	}
	return path, nil
}

// hasNUL reports whether path contains a NUL byte or %00.
func hasNUL(p string) bool {
	if strings.IndexByte(p, 0) >= 0 {
		return true
	}
	for i := strings.IndexByte(p, '%'); i >= 0 && i+2 < len(p); {
		if p[i+1] == '0' && p[i+2] == '0' {
			return true
		}
		j := strings.IndexByte(p[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// HasEscapedSlash reports whether path contains %2F or %5C in either case.
func HasEscapedSlash(p string) bool {
	for i := 0; i+2 < len(p); i++ {
		if p[i] == '%' && isEscapedSlash(p[i+1], p[i+2]) {
			return true
		}
	}
	return false
}

func isEscapedSlash(a, b byte) bool {
	return (a == '2' && (b == 'f' || b == 'F')) || (a == '5' && (b == 'c' || b == 'C'))
}

// UnescapeSlashes decodes %2F to "/" and %5C to "\" (either case) and reports whether it found
// any. Other escapes are kept.
func UnescapeSlashes(p string) (string, bool) {
	if !HasEscapedSlash(p) {
		return p, false
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isEscapedSlash(p[i+1], p[i+2]) {
			if p[i+1] == '2' {
				b.WriteByte('/')
			} else {
				b.WriteByte('\\')
			}
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String(), true
}

// MergeSlashes replaces every run of slashes with one.
func MergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// Canonicalize is Envoy's normalize_path: it decodes percent-encoded unreserved characters once
// (so %2E is a dot and "%2e%2e" a ".." segment, while %252e stays as it is), turns backslashes
// into slashes, percent-encodes bytes that may not appear in a path (controls, space, non-ASCII,
// and a "%" that starts no valid escape),
// and removes dot segments without ever climbing above the root. A trailing "." or ".." segment
// leaves a trailing slash, as RFC 3986's algorithm does.
func Canonicalize(p string) (string, error) {
	if p == "" || (p[0] != '/' && p[0] != '\\') {
		return "", ErrNotAbsolute
	}
	if hasNUL(p) {
		return "", ErrNUL
	}
	if isCanonical(p) {
		return p, nil
	}
	// Pass 1: character-level canonicalization into buf.
	buf := make([]byte, 0, len(p)+8)
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			buf = append(buf, '/')
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(d) {
				buf = append(buf, d)
			} else {
				buf = append(buf, p[i:i+3]...) // other escapes are kept, case and all
			}
			i += 2
		case c == '%':
			// A "%" that starts no escape is encoded: left alone it could join decoded
			// characters into a new escape ("%7%30" would become "%70"), which the
			// application would decode to a path that authorization never saw.
			buf = append(buf, "%25"...)
		case needsEscape(c):
			buf = append(buf, '%', hexDigit[c>>4], hexDigit[c&15])
		default:
			buf = append(buf, c)
		}
	}
	return removeDots(string(buf)), nil
}

// isCanonical reports whether Canonicalize would return p unchanged: the common case, checked
// without allocating.
func isCanonical(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' || c == '%' || needsEscape(c):
			return false
		case c == '.' && p[i-1] == '/':
			// "/." starts a dot segment unless more follows before the next slash.
			rest := p[i+1:]
			if rest == "" || rest[0] == '/' || (rest[0] == '.' && (len(rest) == 1 || rest[1] == '/')) {
				return false
			}
		}
	}
	return true
}

// removeDots removes "." and ".." segments from an absolute path.
func removeDots(p string) string {
	if !strings.Contains(p, "/.") {
		return p
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, seg := range segs {
		last := i == len(segs)-1
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

const hexDigit = "0123456789ABCDEF"

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved is RFC 3986's unreserved set.
func isUnreserved(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// plainURI reports whether every Options leaves uri as it is, looking at each byte once: an
// absolute path of bytes that need no escaping and are neither "%" nor "\\" (so no NUL, escape
// or fragment), with no "//" and no "/." (dot segments, and names that only look like them,
// take the full path), then, after a "?", a query without "#".
func plainURI(uri string) bool {
	if uri == "" || uri[0] != '/' {
		return false
	}
	for i := 0; i < len(uri); i++ {
		switch c := uri[i]; pathClass[c] {
		case pathPlain:
		case pathSlash:
			if i+1 < len(uri) && (uri[i+1] == '/' || uri[i+1] == '.') {
				return false
			}
		case pathQuery:
			return strings.IndexByte(uri[i+1:], '#') < 0
		default:
			return false
		}
	}
	return true
}

// Classes of path bytes for plainURI.
const (
	pathOther = iota // anything plainURI leaves to the full normalization
	pathPlain
	pathSlash
	pathQuery
)

var pathClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch b := byte(c); {
		case b == '/':
			t[c] = pathSlash
		case b == '?':
			t[c] = pathQuery
		case b == '%' || b == '\\' || needsEscape(b):
			t[c] = pathOther
		default:
			t[c] = pathPlain
		}
	}
	return t
}()

// needsEscape reports bytes that a canonical path carries percent-encoded: controls, space,
// DEL, non-ASCII, and the characters a URL parser escapes in paths (" < > ` { }).
func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' || c == '}' || c == '#'
}
