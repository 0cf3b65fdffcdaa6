package accesslog

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// EnvoyDefaultFormat is Envoy's format when a file access log sets none.
const EnvoyDefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// IstioTextFormat is istiod's default TEXT access log format (MeshConfig accessLogEncoding TEXT
// without accessLogFormat), as in Istio's pilot/pkg/model/telemetry_logging.go.
const IstioTextFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ` +
	`"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% ` +
	`%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% ` +
	`%REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// IstioJSONFormat returns istiod's default JSON access log keys (accessLogEncoding JSON without
// accessLogFormat). Each call returns a new map.
func IstioJSONFormat() map[string]string {
	return map[string]string{
		"start_time":                        "%START_TIME%",
		"route_name":                        "%ROUTE_NAME%",
		"method":                            "%REQ(:METHOD)%",
		"path":                              "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":                          "%PROTOCOL%",
		"response_code":                     "%RESPONSE_CODE%",
		"response_flags":                    "%RESPONSE_FLAGS%",
		"response_code_details":             "%RESPONSE_CODE_DETAILS%",
		"connection_termination_details":    "%CONNECTION_TERMINATION_DETAILS%",
		"bytes_received":                    "%BYTES_RECEIVED%",
		"bytes_sent":                        "%BYTES_SENT%",
		"duration":                          "%DURATION%",
		"upstream_service_time":             "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"x_forwarded_for":                   "%REQ(X-FORWARDED-FOR)%",
		"user_agent":                        "%REQ(USER-AGENT)%",
		"request_id":                        "%REQ(X-REQUEST-ID)%",
		"authority":                         "%REQ(:AUTHORITY)%",
		"upstream_host":                     "%UPSTREAM_HOST%",
		"upstream_cluster":                  "%UPSTREAM_CLUSTER_RAW%",
		"upstream_local_address":            "%UPSTREAM_LOCAL_ADDRESS%",
		"downstream_local_address":          "%DOWNSTREAM_LOCAL_ADDRESS%",
		"downstream_remote_address":         "%DOWNSTREAM_REMOTE_ADDRESS%",
		"requested_server_name":             "%REQUESTED_SERVER_NAME%",
		"upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	}
}

// segment is a literal or a command operator of a template.
type segment struct {
	lit string
	op  *op
}

// template is a compiled format string.
type template []segment

// parseTemplate compiles a format string: literal text and %OPERATOR(ARG):Z% command operators,
// with Envoy's syntax (an operator name of A-Z, 0-9 and _, an argument without ')', an optional
// truncation length). A '%' that starts no valid operator is an error, as in Envoy.
func parseTemplate(s string) (template, error) {
	var t template
	lit := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		j := i + 1
		for j < len(s) && (s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
			j++
		}
		name := s[i+1 : j]
		arg, hasArg := "", false
		if j < len(s) && s[j] == '(' {
			end := j + 1
			for end < len(s) && s[end] != ')' {
				end++
			}
			if end == len(s) {
				return nil, fmt.Errorf("command operator at position %d: missing ')'", i)
			}
			arg, hasArg = s[j+1:end], true
			j = end + 1
		}
		maxLen := 0
		if j < len(s) && s[j] == ':' {
			k := j + 1
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				maxLen = maxLen*10 + int(s[k]-'0')
				if maxLen > 1<<20 {
					return nil, fmt.Errorf("command operator at position %d: truncation length too large", i)
				}
				k++
			}
			if k == j+1 {
				return nil, fmt.Errorf("command operator at position %d: expected a length after ':'", i)
			}
			j = k
		}
		if name == "" || j >= len(s) || s[j] != '%' {
			return nil, fmt.Errorf("position %d: expected a command operator such as %%START_TIME%% after '%%'", i)
		}
		o, err := parseOp(name, arg, hasArg, maxLen)
		if err != nil {
			return nil, err
		}
		if lit < i {
			t = append(t, segment{lit: s[lit:i]})
		}
		t = append(t, segment{op: &o})
		lit = j + 1
		i = j
	}
	if lit < len(s) {
		t = append(t, segment{lit: s[lit:]})
	}
	return t, nil
}

// appendText renders t in text form: missing values as "-" (nothing with omitEmpty).
func (t template) appendText(b []byte, e *Entry, omitEmpty bool) []byte {
	for i := range t {
		sg := &t[i]
		if sg.op == nil {
			b = append(b, sg.lit...)
			continue
		}
		var k valKind
		if b, k = sg.op.appendValue(b, e); k == vMissing && !omitEmpty {
			b = append(b, '-')
		}
	}
	return b
}

// Format is a compiled substitution format (text or JSON). It is immutable and safe for
// concurrent use.
type Format struct {
	text      template
	json      *jsonObject // nil for text formats
	typed     bool        // JSON values typed (numbers, null) rather than all strings
	omitEmpty bool
}

// jsonField is one key of a JSON format: a template, a nested object, or a constant.
type jsonField struct {
	key    []byte // the key, JSON-quoted, with its ':'
	tmpl   template
	obj    *jsonObject
	rawVal []byte // a non-string constant, as JSON
}

type jsonObject struct{ fields []jsonField }

// CompileText compiles a text format string.
func CompileText(s string, omitEmpty bool) (*Format, error) {
	t, err := parseTemplate(s)
	if err != nil {
		return nil, err
	}
	return &Format{text: t, omitEmpty: omitEmpty}, nil
}

// CompileJSON compiles a JSON format dictionary. With typed, operators that are a whole value
// render as JSON numbers or null as Envoy's json_format does; otherwise every value is a string
// (the legacy FileAccessLog.json_format). Keys are written sorted.
func CompileJSON(s *structpb.Struct, typed, omitEmpty bool) (*Format, error) {
	obj, err := compileObject(s, "", 0)
	if err != nil {
		return nil, err
	}
	return &Format{json: obj, typed: typed, omitEmpty: omitEmpty}, nil
}

func compileObject(s *structpb.Struct, path string, depth int) (*jsonObject, error) {
	if depth > 16 {
		return nil, fmt.Errorf("%s: nested too deeply", path)
	}
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	obj := &jsonObject{}
	for _, k := range keys {
		v := s.GetFields()[k]
		f := jsonField{key: append(appendJSONString(nil, k), ':')}
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			t, err := parseTemplate(x.StringValue)
			if err != nil {
				return nil, fmt.Errorf("%s%s: %w", path, k, err)
			}
			f.tmpl = t
		case *structpb.Value_StructValue:
			o, err := compileObject(x.StructValue, path+k+".", depth+1)
			if err != nil {
				return nil, err
			}
			f.obj = o
		default:
			raw, err := json.Marshal(v.AsInterface())
			if err != nil {
				return nil, fmt.Errorf("%s%s: %w", path, k, err)
			}
			f.rawVal = raw
		}
		obj.fields = append(obj.fields, f)
	}
	return obj, nil
}

// scratchPool holds buffers for one JSON value while it is rendered.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Append appends the line for e to b and returns it. JSON lines end with a newline; text lines
// end as the format does.
func (f *Format) Append(b []byte, e *Entry) []byte {
	if f.json == nil {
		return f.text.appendText(b, e, f.omitEmpty)
	}
	sp := scratchPool.Get().(*[]byte)
	b, *sp = f.appendObject(b, (*sp)[:0], f.json, e)
	scratchPool.Put(sp)
	return append(b, '\n')
}

func (f *Format) appendObject(b, scratch []byte, o *jsonObject, e *Entry) ([]byte, []byte) {
	b = append(b, '{')
	first := true
	for i := range o.fields {
		fd := &o.fields[i]
		mark := len(b)
		if !first {
			b = append(b, ',')
		}
		b = append(b, fd.key...)
		switch {
		case fd.obj != nil:
			b, scratch = f.appendObject(b, scratch, fd.obj, e)
		case fd.rawVal != nil:
			b = append(b, fd.rawVal...)
		case len(fd.tmpl) == 1 && fd.tmpl[0].op != nil:
			var k valKind
			scratch, k = fd.tmpl[0].op.appendValue(scratch[:0], e)
			switch {
			case k == vMissing && f.omitEmpty:
				b = b[:mark]
				continue
			case k == vMissing && f.typed:
				b = append(b, "null"...)
			case k == vMissing:
				b = append(b, `"-"`...)
			case f.typed && (k == vNumber || k == vJSON):
				b = append(b, scratch...)
			default:
				b = appendJSONString(b, scratch)
			}
		default:
			scratch = fd.tmpl.appendText(scratch[:0], e, f.omitEmpty)
			b = appendJSONString(b, scratch)
		}
		first = false
	}
	return append(b, '}'), scratch
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString[S []byte | string](b []byte, s S) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
