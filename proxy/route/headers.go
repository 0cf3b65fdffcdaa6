package route

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// RequestInfo is what header value formatters (%DOWNSTREAM_REMOTE_ADDRESS% and friends) and
// hash policies may read about the downstream connection. l7 fills it once per request.
type RequestInfo struct {
	Remote   netip.AddrPort // downstream peer (after x-forwarded-for processing)
	Local    netip.AddrPort // address the connection was accepted on (original destination)
	Protocol string         // "HTTP/1.1" or "HTTP/2"
}

type appendAction uint8

const (
	appendOrAdd appendAction = iota
	addIfAbsent
	overwriteOrAdd
	overwriteIfExists
)

type fmtPart struct {
	lit  string
	verb string // empty for a literal part
	arg  string // header name for %REQ(...)%
}

type headerAdd struct {
	key       string
	parts     []fmtPart
	action    appendAction
	keepEmpty bool
}

// HeaderOps is a compiled set of header removals and additions at one level (route
// configuration, virtual host, route, or weighted cluster). The zero value does nothing.
type HeaderOps struct {
	remove []string
	add    []headerAdd
}

// Empty reports whether the ops change nothing.
func (o *HeaderOps) Empty() bool { return o == nil || len(o.remove) == 0 && len(o.add) == 0 }

var supportedVerbs = map[string]bool{
	"DOWNSTREAM_REMOTE_ADDRESS":              true,
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": true,
	"DOWNSTREAM_LOCAL_ADDRESS":               true,
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":  true,
	"DOWNSTREAM_LOCAL_PORT":                  true,
	"PROTOCOL":                               true,
	"REQ":                                    true,
}

// parseFormat splits an Envoy header value into literal and %VERB% parts. Unknown verbs are an
// error: a header the proxy would fill wrongly must not be accepted.
func parseFormat(field, v string) ([]fmtPart, error) {
	var parts []fmtPart
	for v != "" {
		i := strings.IndexByte(v, '%')
		if i < 0 {
			parts = append(parts, fmtPart{lit: v})
			break
		}
		if i > 0 {
			parts = append(parts, fmtPart{lit: v[:i]})
		}
		v = v[i+1:]
		if strings.HasPrefix(v, "%") { // "%%" is a literal percent sign
			parts = append(parts, fmtPart{lit: "%"})
			v = v[1:]
			continue
		}
		j := strings.IndexByte(v, '%')
		if j < 0 {
			return nil, fmt.Errorf("%s: unterminated %% in header value", field)
		}
		verb, arg := v[:j], ""
		if k := strings.IndexByte(verb, '('); k >= 0 && strings.HasSuffix(verb, ")") {
			verb, arg = verb[:k], verb[k+1:len(verb)-1]
		}
		if !supportedVerbs[verb] {
			return nil, xdsfield.Unsupported(field, "header value command %%%s%%", v[:j])
		}
		if verb == "REQ" {
			if arg == "" {
				return nil, fmt.Errorf("%s: %%REQ()%% needs a header name", field)
			}
			arg = headerKey(arg)
		}
		parts = append(parts, fmtPart{verb: verb, arg: arg})
		v = v[j+1:]
	}
	return parts, nil
}

func compileHeaderOps(field string, add []*corev3.HeaderValueOption, remove []string) (HeaderOps, error) {
	var ops HeaderOps
	for _, k := range remove {
		if !httpguts.ValidHeaderFieldName(strings.TrimPrefix(k, ":")) {
			return ops, fmt.Errorf("%s: invalid header name %q to remove", field, k)
		}
		ops.remove = append(ops.remove, headerKey(k))
	}
	for i, a := range add {
		f := fmt.Sprintf("%s.request_headers_to_add[%d]", field, i)
		if err := xdsfield.Check(a, f, "header", "append", "append_action", "keep_empty_value"); err != nil {
			return ops, err
		}
		h := a.GetHeader()
		if err := xdsfield.Check(h, f+".header", "key", "value", "raw_value"); err != nil {
			return ops, err
		}
		if strings.HasPrefix(h.GetKey(), ":") || strings.EqualFold(h.GetKey(), "host") || !httpguts.ValidHeaderFieldName(h.GetKey()) {
			return ops, xdsfield.Unsupported(f+".header.key", "header %q cannot be set", h.GetKey())
		}
		val := h.GetValue()
		if len(h.GetRawValue()) > 0 {
			val = string(h.GetRawValue())
		}
		if !httpguts.ValidHeaderFieldValue(val) {
			return ops, fmt.Errorf("%s.header.value: invalid header value", f)
		}
		parts, err := parseFormat(f+".header.value", val)
		if err != nil {
			return ops, err
		}
		act := appendAction(a.GetAppendAction())
		if a.GetAppend() != nil { // deprecated field wins when set
			if a.GetAppend().GetValue() {
				act = appendOrAdd
			} else {
				act = overwriteOrAdd
			}
		}
		ops.add = append(ops.add, headerAdd{key: headerKey(h.GetKey()), parts: parts, action: act, keepEmpty: a.GetKeepEmptyValue()})
	}
	return ops, nil
}

func compileResponseHeaderOps(field string, add []*corev3.HeaderValueOption, remove []string) (HeaderOps, error) {
	ops, err := compileHeaderOps(field, add, remove)
	if err != nil {
		return ops, fmt.Errorf("response headers: %w", err)
	}
	return ops, nil
}

func (a *headerAdd) value(req Request, info *RequestInfo) string {
	if len(a.parts) == 1 && a.parts[0].verb == "" {
		return a.parts[0].lit
	}
	var b strings.Builder
	for _, p := range a.parts {
		switch p.verb {
		case "":
			b.WriteString(p.lit)
		case "DOWNSTREAM_REMOTE_ADDRESS":
			if info != nil && info.Remote.IsValid() {
				b.WriteString(info.Remote.String())
			}
		case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
			if info != nil && info.Remote.IsValid() {
				b.WriteString(info.Remote.Addr().String())
			}
		case "DOWNSTREAM_LOCAL_ADDRESS":
			if info != nil && info.Local.IsValid() {
				b.WriteString(info.Local.String())
			}
		case "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
			if info != nil && info.Local.IsValid() {
				b.WriteString(info.Local.Addr().String())
			}
		case "DOWNSTREAM_LOCAL_PORT":
			if info != nil && info.Local.IsValid() {
				fmt.Fprint(&b, info.Local.Port())
			}
		case "PROTOCOL":
			if info != nil {
				b.WriteString(info.Protocol)
			}
		case "REQ":
			if req != nil {
				if v, ok := lentHeaderValue(req, p.arg); ok {
					b.WriteString(v)
				}
			}
		}
	}
	return b.String()
}

// Apply removes and adds headers in h. req (may be nil) and info feed %REQ()% and address
// commands. It is called on the request path; literal-only values do not allocate beyond the
// header slice itself.
func (o *HeaderOps) Apply(h *httpmsg.Header, req Request, info *RequestInfo) {
	if o == nil {
		return
	}
	for _, k := range o.remove {
		h.Del(k)
	}
	for i := range o.add {
		a := &o.add[i]
		v := a.value(req, info)
		if v == "" && !a.keepEmpty {
			continue
		}
		switch a.action {
		case appendOrAdd:
			h.Add(a.key, v)
		case addIfAbsent:
			if !h.Has(a.key) {
				h.Add(a.key, v)
			}
		case overwriteOrAdd:
			h.Set(a.key, v)
		case overwriteIfExists:
			if h.Has(a.key) {
				h.Set(a.key, v)
			}
		}
	}
}

// CompileResponseHeaderOps compiles response headers to add (with Envoy's %VERB% formatters) of
// a filter config at field, for filters outside this package (the global rate limit filter's
// response_headers_to_add).
func CompileResponseHeaderOps(field string, add []*corev3.HeaderValueOption) (HeaderOps, error) {
	return compileResponseHeaderOps(field, add, nil)
}
